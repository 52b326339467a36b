"""The run's ``out`` folder must be one folder for every process that writes there: the learner ranks
(checkpoints), the curator (curation rounds) and the driver (rollouts, metrics). On a cluster that means storage
every node mounts at the same path; a node-local path would scatter a run's files and break its resume. Checked
when the actors start: each writes a marker under ``out`` and the driver must read all of them."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import ray

from rlpost.actors.common import wait
from rlpost.common.errors import UserError


class SharedStorageError(UserError):
    """``out`` is not the same folder for every role that writes there."""


def check_shared_storage(out: str | Path, writers: dict, timeout_s: float = 120.0) -> None:
    """Every actor in ``writers`` (name -> handle) writes a marker into ``out`` (as an absolute path of the
    driver's); raise ``SharedStorageError`` naming each one the driver cannot read back, and its node."""
    folder = Path(out).resolve() / ".rlpost-storage-check" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    try:
        names = list(writers)
        reports = wait([writers[n].__ray_call__.remote(_write_marker, str(folder), n) for n in names],
                       f"shared storage check of {out}", timeout_s)
        problems = []
        for name, report in zip(names, reports):
            marker = folder / name
            if report["error"]:
                problems.append(f"{name} on {report['node_ip']} cannot write there ({report['error']})")
            elif not marker.is_file() or marker.read_text() != report["token"]:
                problems.append(f"{name} on {report['node_ip']} wrote {marker} but the driver on "
                                f"{ray.util.get_node_ip_address()} does not see it")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if problems:
        raise SharedStorageError(f"out: {str(out)!r} is not one folder for every role that writes there:\n  "
                                 + "\n  ".join(problems) + "\n  Put `out` on storage every node mounts at the "
                                 "same path (NFS, a shared volume) and give it as an absolute path")


def _write_marker(_actor, folder: str, name: str) -> dict:
    token = uuid.uuid4().hex
    report = {"node_ip": ray.util.get_node_ip_address(), "token": token, "error": None}
    try:
        path = Path(folder) / name
        path.write_text(token)
        with path.open() as f:  # written through, not just buffered
            os.fsync(f.fileno())
    except OSError as exc:
        report["error"] = f"{exc.__class__.__name__}: {exc}"
    return report
