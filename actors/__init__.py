"""Thin Ray actors around rlpost's core objects. Importing this package pins Ray, vLLM and torch.distributed to
loopback for a local run (Ray reads its settings when it is imported, so this runs before any actor module)."""

import os

from rlpost.common.runtime import LOOPBACK_ENV

for _key, _value in LOOPBACK_ENV.items():
    os.environ.setdefault(_key, _value)
