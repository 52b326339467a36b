"""How a completion's trajectory decoded: the one status type every layer uses (policy decoding, reward inputs,
rollout records and their Parquet log)."""

from __future__ import annotations

from typing import Literal

# ok: a complete trajectory of valid bins; no_trajectory: the completion never opened one (no <|traj_start|>);
# malformed_trajectory: it opened one, but the tokens are not exactly the 2 x 64 valid bins before <|traj_end|>.
DecodeStatus = Literal["ok", "no_trajectory", "malformed_trajectory"]
