"""`rlpost sft CONFIG [key=value ...]` and `rlpost eval CKPT [--split val] ...` (wired by ``add_policy_subcommands``).

Config: a YAML file whose ``model:``, ``sft:`` and ``eval:`` sections are read (other sections of the root run config
are ignored here); dotted overrides after the file (``sft.steps=100 model.size=small``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rlpost.common.errors import UserError
from rlpost.policy.config import PolicyRunConfig

SECTIONS = ("model", "sft", "eval")


def load_policy_config(path: str | None, overrides: list[str] = ()) -> PolicyRunConfig:
    """The policy sections of a YAML run config (+ dotted overrides), validated."""
    from rlpost.common.config import load_config

    return load_config(PolicyRunConfig, path, overrides, sections=SECTIONS)


def _sft(args: argparse.Namespace) -> int:
    if args.task == "judge":  # the reasoning judge (rlpost.judge.sft): its own `judge:` section and overrides
        from rlpost.judge.sft import load_judge_config, run_judge_sft

        config, overrides = args.config, list(args.overrides)
        if config is not None and "=" in config and not Path(config).is_file():  # `--task judge judge.steps=100`
            config, overrides = None, [config, *overrides]
        run_judge_sft(load_judge_config(config, overrides))
        return 0
    if args.config is None:
        raise UserError("a YAML run config is required for --task policy, e.g. `rlpost sft configs/tiny.yaml`")
    from rlpost.apps.evaluate import run_eval
    from rlpost.policy.sft import run_sft

    cfg = load_policy_config(args.config, args.overrides)
    result = run_sft(cfg.model, cfg.sft)
    if not args.no_eval:
        ev = cfg.eval.model_copy(update={"data": cfg.sft.data, "split": cfg.sft.val_split})
        run_eval(result.checkpoint, ev)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from rlpost.apps.evaluate import run_eval

    cfg = load_policy_config(args.config, args.overrides).eval
    update = {k: v for k, v in {"split": args.split, "engine": args.engine, "data": args.data, "out": args.out,
                                "max_scenarios": args.max_scenarios}.items() if v is not None}
    cfg = cfg.model_validate(cfg.model_dump() | update)
    run_eval(args.checkpoint, cfg)
    return 0


def add_policy_subcommands(subparsers) -> None:
    """Register ``sft`` and ``eval`` on an ``argparse`` sub-parser set (``parser.add_subparsers()``)."""
    sft = subparsers.add_parser("sft",
                                help="supervised fine-tuning (CoC + trajectory tokens, flow expert) with DeepSpeed")
    sft.add_argument("config", nargs="?", default=None,
                     help="YAML run config (its model:/sft:/eval: sections; --task judge: its judge: section, "
                          "optional)")
    sft.add_argument("overrides", nargs="*", help="dotted overrides, e.g. sft.steps=100 model.size=small "
                                                  "(--task judge: judge.steps=2000 judge.out=runs/judge)")
    sft.add_argument("--task", choices=("policy", "judge"), default="policy",
                     help="policy: the driving policy (default); judge: distil the 0-5 reasoning rubric into a small "
                          "judge model for the reasoning_critic judge backend (rlpost.judge.sft)")
    sft.add_argument("--no-eval", action="store_true", help="skip the evaluation of the final checkpoint")
    sft.set_defaults(func=_sft)
    ev = subparsers.add_parser("eval", help="ADE/FDE/minADE (token and expert), decision accuracy, consistency, ...")
    ev.add_argument("checkpoint", help="checkpoint folder written by `rlpost sft` (save_pretrained)")
    ev.add_argument("overrides", nargs="*", help="dotted overrides of the eval: section, e.g. eval.num_samples=6")
    ev.add_argument("--config", default=None, help="YAML run config whose eval: section to use")
    ev.add_argument("--split", default=None, help="split to evaluate (default: eval.split = val)")
    ev.add_argument("--engine", choices=("hf", "vllm"), default=None, help="generation engine (default: eval.engine)")
    ev.add_argument("--data", default=None, help="Parquet scenario dataset (default: eval.data)")
    ev.add_argument("--max-scenarios", type=int, default=None, help="cap on evaluated scenarios")
    ev.add_argument("--out", default=None, help="output folder (default: CKPT/eval_<split>)")
    ev.set_defaults(func=_eval)
