"""The README's "Run on your cluster" commands are exactly the ones the multi-node tests run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_command_the_cluster_tests_run_is_in_the_readme():
    spec = importlib.util.spec_from_file_location("loopback_cluster", ROOT / "tests/integration/loopback_cluster.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Run on your cluster"):]
    section = section[:section.index("\n## ", 1)]
    missing = [name for name, command in module.COMMANDS.items() if command not in section]
    assert not missing, f"README 'Run on your cluster' lacks the test's commands {missing}"
