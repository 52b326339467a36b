"""The `rlpost` command line. Each subcommand lives with its component; this file only dispatches."""

from __future__ import annotations

import argparse
import sys
import traceback

from rlpost.common.errors import UserError


def _run_config(args: argparse.Namespace):
    from rlpost.common.config import load_config
    from rlpost.rl.config import RunConfig

    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config:  # `rlpost demo trainer.steps=3`: no file, only overrides
        config, overrides = None, [config, *overrides]
    return load_config(RunConfig, config, overrides)


def _demo(args: argparse.Namespace) -> int:
    """data -> SFT -> GRPO -> report on the embedded tiny CPU defaults (or a given config)."""
    from rlpost.apps.pipeline import run_pipeline
    from rlpost.common.runtime import configure_cpu_runtime

    cfg = _run_config(args)
    configure_cpu_runtime(cfg.sft.threads)
    print(f"rlpost demo: data -> SFT -> GRPO -> report into {cfg.out}")
    run_pipeline(cfg)
    return 0


def _train(args: argparse.Namespace) -> int:
    """GRPO only, from cfg.init_checkpoint or the SFT stage's checkpoint."""
    from rlpost.apps.pipeline import prepare
    from rlpost.apps.report import write_report
    from rlpost.common.runtime import configure_cpu_runtime
    from rlpost.loop.train import train

    cfg = _run_config(args)
    configure_cpu_runtime(1)
    if args.dry_run:
        return _dry_run(cfg)
    prep = prepare(cfg)
    summary = train(cfg, prep.checkpoint, prep.pool, prep.held_out)
    print(f"report: {write_report(cfg.out, summary, {'config': args.config or 'defaults'})}")
    return 0


def _dry_run(cfg) -> int:
    """Reserve the placement of every actor on the configured Ray, print where each one goes, release it."""
    from rlpost.actors.placement import dry_run

    plan = dry_run(cfg)
    print(f"rlpost train --dry-run: {cfg.name} on the Ray at {plan['address']} ({len(plan['nodes'])} nodes)")
    print(f"{'actor':<12} {'node':<10} {'address':<16} resources")
    for row in plan["actors"]:
        resources = " ".join(f"{k}={v:g}" for k, v in row["resources"].items())
        print(f"{row['role'] + ':' + str(row['index']):<12} {(row['node_id'] or '?')[:8]:<10} "
              f"{row['node_ip'] or '?':<16} {resources}")
    print("reward worker, curator: no reservation (0 CPU / curation.num_cpus), any node with room")
    print("placement fits; reserved and released. Not checked: data, checkpoint, Redis, shared storage")
    return 0


def _status(args: argparse.Namespace) -> int:
    """Print a run's live state from Redis: step, policy version, restarts, curation round, last step time, and
    where each actor runs."""
    import datetime
    import json
    import os

    import redis

    from rlpost.common.errors import UnreachableServiceError
    from rlpost.storage.local_redis import URL_ENV
    from rlpost.storage.store import read_run_state

    url = args.redis_url or os.environ.get(URL_ENV)
    if not url:
        raise UnreachableServiceError(f"rlpost status: give the run's Redis with --redis-url (or {URL_ENV})")
    try:
        state = read_run_state(url, args.run)
    except redis.RedisError as exc:
        raise UnreachableServiceError(f"--redis-url: no Redis answers at {url} ({exc})") from None
    except LookupError as exc:
        raise UserError(str(exc)) from None
    if args.json:
        print(json.dumps(state, indent=1))
        return 0
    beat = state.get("heartbeat")
    age = f"{datetime.datetime.now().timestamp() - beat:.0f} s ago" if beat else "never"
    print(f"run {args.run}: {state.get('status', '?')} at step {state.get('step', '-')}, policy version "
          f"{state.get('version', '-')}, curation round {state.get('curation_round', '-')}, last step "
          f"{state.get('step_s', float('nan')):.1f} s, heartbeat {age}")
    print("restarts: " + " ".join(f"{k}={v}" for k, v in (state.get("restarts") or {}).items()))
    for name, where in sorted((state.get("roles") or {}).items()):
        print(f"  {name:<10} node {where['node_id'][:8]} {where['node_ip']:<15} pid {where['pid']:<8} "
              f"{where['state'].lower()} restarts {where['restarts']}")
    return 0


def _experiment(args: argparse.Namespace) -> int:
    from rlpost.apps.curation_study import run_curation_study
    from rlpost.common.runtime import configure_cpu_runtime

    configure_cpu_runtime(1)
    run_curation_study(args.configs, args.seeds, args.out, args.set, report_only=args.report_only,
                       audit_seeds=args.audit_seeds, results=args.results)
    return 0


def _table9(args: argparse.Namespace) -> int:
    from rlpost.apps.table9 import run_table9
    from rlpost.common.runtime import configure_cpu_runtime

    configure_cpu_runtime(1)
    run_table9(args.seeds, args.out, args.config, args.set, args.arms, args.eval_scenarios, args.samples)
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error (exit status 2 as before): the full usage is one ``--help`` away. Each
    (sub)command records its name as ``args.prog``, so an error names the command that failed."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.set_defaults(prog=self.prog)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rlpost", description="GRPO post-training for reasoning driving policies.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of errors in the input too")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, text in (("demo", _demo, "the main job: data -> SFT -> GRPO -> report (tiny CPU defaults)"),
                             ("train", _train, "GRPO on Ray (vLLM rollouts, DeepSpeed learner) from a config")):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument("config", nargs="?", default=None, help="YAML run config (default: the embedded tiny config)")
        cmd.add_argument("overrides", nargs="*", help="dotted overrides, e.g. trainer.steps=5 learner.lr=1e-4")
        cmd.set_defaults(func=func, dry_run=False)
        if name == "train":
            cmd.add_argument("--dry-run", action="store_true",
                             help="reserve the placement on the configured Ray, print the node and resources of "
                                  "every actor, release it and exit")
    status = sub.add_parser("status", help="a run's live state from Redis (step, version, restarts, where each "
                                           "actor runs)")
    status.add_argument("run", help="the run's name (config `name`)")
    status.add_argument("--redis-url", default=None, help="the run's Redis (default: $RLPOST_REDIS_URL)")
    status.add_argument("--json", action="store_true", help="print the raw state as JSON")
    status.set_defaults(func=_status)
    exp = sub.add_parser("experiment", help="analyst experiments").add_subparsers(dest="experiment", required=True)
    cur = exp.add_parser("curation", help="none / random / offline / online-full / online-amortised curation from "
                                          "one SFT checkpoint")
    cur.add_argument("configs", nargs="+", help="one run config per arm, e.g. configs/curation/*.yaml")
    cur.add_argument("--seeds", type=int, default=3, help="seeds per arm (default 3)")
    cur.add_argument("--out", default="runs/curation_study", help="study folder (runs + report.md)")
    cur.add_argument("--set", nargs="*", default=[], help="dotted overrides applied to every arm")
    cur.add_argument("--results", default=None, help="folder for each finished run's record (metrics, summary, "
                     "curation rounds: kilobytes) and the report, e.g. docs/curation_study; a run recorded there is "
                     "not run again (default: the study folder)")
    cur.add_argument("--report-only", action="store_true", help="write the report from the finished runs only")
    cur.add_argument("--audit-seeds", type=int, default=1, help="seeds of an extra online-amortised run with a full "
                     "uncharged re-score per round, for the agreement of amortised scores (default 1)")
    cur.set_defaults(func=_experiment)
    t9 = exp.add_parser("table9", help="AR1 Table-9 reward ablation + does RL reach the flow expert "
                                       "(from one SFT checkpoint)")
    t9.add_argument("--seeds", type=int, default=3, help="seeds per arm (default 3)")
    t9.add_argument("--config", default="configs/table9.yaml", help="base run config every arm starts from")
    t9.add_argument("--out", default="runs/table9", help="experiment folder (runs + report.md + curves.png)")
    t9.add_argument("--set", nargs="*", default=[], help="dotted overrides applied to every arm")
    t9.add_argument("--arms", nargs="*", default=None, help="a subset of the arms (default: all)")
    t9.add_argument("--eval-scenarios", type=int, default=128, help="held-out scenarios in the table (default 128)")
    t9.add_argument("--samples", type=int, default=6, help="samples per held-out scenario, K (default 6, as AR1)")
    t9.set_defaults(func=_table9)
    # Each component registers its own subcommands; imports stay light (heavy ones happen inside the handlers).
    from rlpost.apps.policy_cli import add_policy_subcommands
    from rlpost.rewards.cli import add_rewards_subcommands
    from rlpost.scenarios.cli import add_data_subcommands

    add_data_subcommands(sub)
    add_policy_subcommands(sub)
    add_rewards_subcommands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand. A mistake in the input (:class:`UserError`) prints its message and exits 2; other
    exceptions are the program's and keep their traceback."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        if args.debug:
            traceback.print_exc()
        else:
            print(f"{args.prog}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
