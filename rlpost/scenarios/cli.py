"""``rlpost data build | stats | check``: register with :func:`add_data_subcommands` on an argparse subparsers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _build(args) -> int:
    from rlpost.scenarios.build import build_dataset

    report = build_dataset(args.out, args.n, args.nets, seed=args.seed, workers=args.workers,
                           progress=not args.quiet, duration=args.duration)
    print(f"wrote {report['n_written']} scenarios to {report['path']} in {report['wall_s']} s")
    for r in report["per_net"]:
        print(f"  {r['net']:14s} proposed {r['proposed']:5d}  sim {r['sim_wall_s']:6.1f} s  filters {r['filters']}")
    print("decisions:", json.dumps(report["decisions"]))
    return 0


def _stats(args) -> int:
    from rlpost.scenarios.schema import read_scenarios
    from rlpost.scenarios.stats import dataset_stats, format_stats, plot_stats

    scenarios = read_scenarios(args.path, split=args.split)
    print(format_stats(dataset_stats(scenarios)))
    png = Path(args.png) if args.png else (Path(args.path) if Path(args.path).is_dir() else Path(args.path).parent)
    if png.suffix != ".png":
        png = png / "stats.png"
    print(f"plot: {plot_stats(scenarios, png)}")
    return 0


def _check(args) -> int:
    from rlpost.scenarios.check import validate
    from rlpost.scenarios.schema import read_scenarios

    issues, summary = validate(read_scenarios(args.path, split=args.split))
    for issue in issues[: args.show]:
        print(f"{issue.scenario_id}: {issue.kind}: {issue.detail}")
    print(json.dumps(summary))
    return 1 if summary["failing"] else 0


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def add_data_subcommands(subparsers) -> argparse.ArgumentParser:
    """Add ``data`` with ``build``, ``stats`` and ``check`` to an argparse ``subparsers``; returns the parser."""
    from rlpost.scenarios.nets import DEFAULT_NETS, NETS

    data = subparsers.add_parser("data", help="build, inspect and validate the SUMO scenario dataset")
    sub = data.add_subparsers(dest="data_command", required=True)
    b = sub.add_parser("build", help="simulate shipped SUMO networks and write a labelled Parquet dataset")
    b.add_argument("--out", default="data/scenarios", help="output folder (default: data/scenarios)")
    b.add_argument("--n", type=_positive_int, default=2000, help="number of scenarios (default: 2000)")
    b.add_argument("--nets", nargs="+", default=list(DEFAULT_NETS), metavar="NET", choices=sorted(NETS),
                   help=f"networks (default: {' '.join(DEFAULT_NETS)}; known: {', '.join(sorted(NETS))})")
    b.add_argument("--seed", type=int, default=0, help="build seed (default: 0)")
    b.add_argument("--workers", type=int, default=2, help="parallel simulations (default: 2)")
    b.add_argument("--duration", type=float, default=None, help="seconds simulated per network (default: auto)")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=_build)
    for name, fn, helptext in (("stats", _stats, "print and plot decision, speed and agent histograms"),
                               ("check", _check, "validate labels: causal locality, vague decisions, causal links")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("path", nargs="?", default="data/scenarios", help="dataset folder or .parquet file")
        p.add_argument("--split", choices=("train", "val"), default=None)
        if name == "stats":
            p.add_argument("--png", default=None, help="plot path (default: <dataset folder>/stats.png)")
        else:
            p.add_argument("--show", type=int, default=20, help="issues to print (default: 20)")
        p.set_defaults(func=fn)
    return data
