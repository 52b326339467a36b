"""The `rlpost` command line. Each subcommand lives with its component; this file only dispatches."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    from rlpost.demo import run_demo

    return run_demo(args.out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlpost", description="GRPO post-training for reasoning driving policies.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the main job on the embedded tiny CPU defaults")
    demo.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    demo.set_defaults(func=_demo)
    # Each component registers its own subcommands; imports stay light (heavy ones happen inside the handlers).
    from rlpost.policy.cli import add_policy_subcommands
    from rlpost.rewards.cli import add_rewards_subcommands
    from rlpost.scenarios.cli import add_data_subcommands

    add_data_subcommands(sub)
    add_policy_subcommands(sub)
    add_rewards_subcommands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
