"""The project's judge through a real vLLM OpenAI-compatible server vs in-process (not part of the tests).

1. Train the judge (``run_judge_sft``, the `rlpost sft --task judge` loop; both answer formats) on synthetic
   scenarios, or reuse ``--checkpoint``.
2. Grade held-out pairs in-process (``engine: local``: vLLM in this process, grade tokens only).
3. Start ``python -m vllm.entrypoints.openai.api_server`` on 127.0.0.1 with the checkpoint and grade the same pairs
   through it: completions and chat APIs, grade and reasoning answer formats.
4. Write ``--out`` (JSON): per arm, agreement with the in-process grades, parse-ok share, exact agreement with the
   rubric, seconds.

    OMP_NUM_THREADS=1 .venv/bin/python bench/judge_server.py --minutes 4 --out bench/results/judge_server.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", help="an existing judge checkpoint folder (skip training)")
    ap.add_argument("--work", default="runs/bench_judge_server", help="training output folder")
    ap.add_argument("--minutes", type=float, default=4.0, help="training budget")
    ap.add_argument("--train-scenarios", type=int, default=400)
    ap.add_argument("--val-scenarios", type=int, default=100)
    ap.add_argument("--out", default="bench/results/judge_server.json")
    args = ap.parse_args()

    from rlpost.judge.critic import JudgeCritic
    from rlpost.judge.data import make_pairs, references_from
    from rlpost.judge.serve import serve_judge
    from rlpost.judge.sft import JudgeConfig, run_judge_sft
    from rlpost.rewards.critic_backends import CritiqueRequest
    from rlpost.rewards.synthetic import synthetic_scenarios

    report: dict = {}
    val = synthetic_scenarios(args.val_scenarios, seed=1001)
    if args.checkpoint:
        ckpt = Path(args.checkpoint)
    else:
        cfg = JudgeConfig(out=args.work, max_minutes=args.minutes, eval_vllm=False, eval_every=0)
        result = run_judge_sft(cfg, train=synthetic_scenarios(args.train_scenarios, seed=1000), val=val)
        ckpt = result.checkpoint
        report["training"] = {"steps": result.steps, "train_seconds": round(result.train_seconds, 1),
                              "held_out_exact_vs_rubric_hf": result.agreement["exact"], "config": cfg.model_dump()}
    refs = references_from(val)
    pairs = make_pairs(refs, 5, 20_000, refs)
    reqs = [CritiqueRequest(p.scenario_id, p.candidate, p.reference) for p in pairs]
    rubric = [p.grade for p in pairs]
    report["pairs"] = len(pairs)

    def measure(name: str, critic: JudgeCritic, reference: list[int | None] | None) -> list[int | None]:
        t = time.time()
        grades = critic.grade(reqs)
        secs = time.time() - t
        got = [g.grade if g.status == "ok" else None for g in grades]
        row = {"seconds": round(secs, 1), "ok": sum(g.status == "ok" for g in grades) / len(grades),
               "statuses": {s: sum(g.status == s for g in grades) for s in {g.status for g in grades}},
               "exact_vs_rubric": sum(a == b for a, b in zip(got, rubric)) / len(got)}
        if reference is not None:
            row["agreement_with_in_process"] = sum(a == b for a, b in zip(got, reference)) / len(got)
        bad = [g.details.get("judge_output") for g in grades if g.status != "ok"][:3]
        if bad:
            row["examples_not_ok"] = bad
        report[name] = row
        print(name, json.dumps(row), flush=True)
        return got

    local = measure("in_process_grade", JudgeCritic(model=str(ckpt), engine="local"), None)
    local_r = measure("in_process_reasoning", JudgeCritic(model=str(ckpt), engine="local", answer="reasoning"), local)
    with serve_judge(ckpt, log=Path(args.work) / "vllm_server.log") as url:
        report["server_start_seconds"] = round(url.start_seconds, 1)
        for api in ("completions", "chat"):
            measure(f"server_{api}_grade", JudgeCritic(endpoint=url.base, model=str(ckpt), model_name="judge", api=api,
                                                      timeout_s=300), local)
            measure(f"server_{api}_reasoning", JudgeCritic(endpoint=url.base, model=str(ckpt), model_name="judge",
                                                          api=api, answer="reasoning", timeout_s=300), local_r)
        # The old path (text prompt tokenised by the server, free text, strict parser): for the record.
        measure("server_text_compact_free", JudgeCritic(endpoint=url.base, model_name="judge", prompt="compact",
                                                        timeout_s=300), local)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print("wrote", args.out)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
