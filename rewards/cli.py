"""``rlpost rewards ...`` subcommands: ``list`` the known rewards, ``check`` a plugin against the contract.

    rlpost rewards list
    rlpost rewards check mypkg.rewards:lane_bonus --param bonus=0.2 --min-samples-per-s 100

Wire into the main parser with ``add_rewards_subcommands(subparsers)``; each subcommand sets ``func`` (returns the
exit code: 0 passed, 1 failed; a usage error raises ``UserError``, which the main CLI turns into exit status 2).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import yaml

from rlpost.common.errors import UserError


def _parse_params(items: list[str]) -> dict:
    """``key=value`` pairs; values read as YAML scalars (numbers, booleans, strings, lists)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--param {item!r}: expected key=value")
        out[key] = yaml.safe_load(value)
    return out


def _check(args: argparse.Namespace) -> int:
    from rlpost.rewards.contract import check_reward

    # Like `python -m`, make modules in the current directory importable: a plugin author runs the check from
    # their project folder before packaging anything. Worker processes inherit this sys.path.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())

    params = _parse_params(args.param)
    report = check_reward(args.reward, params=params, batch_size=args.batch_size, n_garbage=args.garbage,
                          min_samples_per_s=args.min_samples_per_s, deadline_s=args.deadline_s)
    if args.json:
        print(json.dumps({"reward": report.reward, "version": report.version, "passed": report.passed,
                          "samples_per_s": report.samples_per_s,
                          "checks": [{"name": c.name, "passed": c.passed, "message": c.message}
                                     for c in report.checks]}, indent=2))
    else:
        print(report.summary())
    return 0 if report.passed else 1


def _list(args: argparse.Namespace) -> int:
    from rlpost.rewards.registry import available_rewards, resolve_reward

    for name, source in available_rewards().items():
        try:
            entry = resolve_reward(name)
            print(f"{name:24s} {source:12s} v{entry.version:8s} {entry.description}")
        except Exception as exc:  # a broken entry point is listed with its error, not hidden
            print(f"{name:24s} {source:12s} (fails to load: {exc})")
    return 0


def add_rewards_subcommands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``rewards list`` and ``rewards check REF`` to the main parser's subparsers; returns the ``rewards``
    parser. Each leaf parser sets ``func(args) -> exit code``."""
    rewards = subparsers.add_parser("rewards", help="list reward functions or check a plugin against the contract")
    sub = rewards.add_subparsers(dest="rewards_command", required=True)
    lister = sub.add_parser("list", help="built-in, registered and entry-point rewards with their versions")
    lister.set_defaults(func=_list)
    check = sub.add_parser("check", help="run the plugin contract test on a reward (name or package.module:function)")
    check.add_argument("reward", help="a reward name or dotted path 'package.module:function'")
    check.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a reward param (repeatable)")
    check.add_argument("--batch-size", type=int, default=48, help="samples per batch (default 48)")
    check.add_argument("--garbage", type=int, default=300, help="broken completions to feed in (default 300)")
    check.add_argument("--min-samples-per-s", type=float, default=50.0, help="speed floor (default 50)")
    check.add_argument("--deadline-s", type=float, default=30.0, help="per-call deadline in the worker (default 30)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(func=_check)
    return rewards
