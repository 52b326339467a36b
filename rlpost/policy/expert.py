"""The flow-matching action expert behind a stop-gradient (docs/design.md §1, π0.5 "knowledge insulation").

A small transformer reads the backbone's prefix hidden states (prompt + trace + ``<|traj_start|>``) through
``detach()`` and predicts the 64×2 *normalised* controls by flow matching (rectified flow):

    x_t = (1 − t)·ε + t·x₁,   ε ~ N(0, I),   target velocity u = x₁ − ε,   loss = ‖f(x_t, t, prefix) − u‖²

Inference integrates dx/dt = f from t = 0 (noise, or zeros for the deterministic "mean" trajectory) to t = 1 with
Euler steps. Because the prefix is detached, the flow loss trains only the expert; the backbone learns from the
token cross-entropy alone (a test checks both directions).

Normalisation (docs/design.md §2, AR1 release statistics): a' = (a − 0.0290)/0.681, κ' = (κ − 0.000269)/0.0261.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

CONTROL_MEAN = (0.0290, 0.000269)
CONTROL_STD = (0.681, 0.0261)
EXPERT_DIR = "action_expert"  # sub-folder of a checkpoint (vLLM only globs the top level's *.safetensors)


def normalise_controls(controls) -> np.ndarray:
    """(…, 64, 2) physical (a [m/s²], κ [1/m]) -> normalised."""
    return (np.asarray(controls, dtype=np.float64) - CONTROL_MEAN) / CONTROL_STD


def denormalise_controls(norm) -> np.ndarray:
    """(…, 64, 2) normalised -> physical (a [m/s²], κ [1/m])."""
    return np.asarray(norm, dtype=np.float64) * CONTROL_STD + CONTROL_MEAN


def _time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, dtype=t.dtype, device=t.device) / half)
    ang = t[:, None] * freqs[None] * 100.0
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1)


class FlowActionExpert(nn.Module):
    """Velocity field f(x_t, t, prefix): action tokens self-attend and cross-attend to the (detached) prefix."""

    def __init__(self, cond_dim: int, hidden_size: int = 128, num_layers: int = 2, num_heads: int = 4,
                 horizon: int = 64, action_dim: int = 2):
        super().__init__()
        self.config = {"cond_dim": cond_dim, "hidden_size": hidden_size, "num_layers": num_layers,
                       "num_heads": num_heads, "horizon": horizon, "action_dim": action_dim}
        self.horizon, self.action_dim, self.hidden = horizon, action_dim, hidden_size
        self.in_proj = nn.Linear(action_dim, hidden_size)
        self.pos = nn.Parameter(torch.randn(horizon, hidden_size) * 0.02)
        self.time_mlp = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.SiLU(),
                                      nn.Linear(hidden_size, hidden_size))
        self.cond_proj = nn.Sequential(nn.LayerNorm(cond_dim), nn.Linear(cond_dim, hidden_size))
        self.blocks = nn.ModuleList(
            nn.TransformerDecoderLayer(hidden_size, num_heads, 4 * hidden_size, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(num_layers))
        self.out = nn.Sequential(nn.LayerNorm(hidden_size), nn.Linear(hidden_size, action_dim))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, prefix: torch.Tensor,
                prefix_mask: torch.Tensor) -> torch.Tensor:
        """x_t (B, H, 2), t (B,), prefix (B, L, cond_dim), prefix_mask (B, L) bool (True = a real token)
        -> (B, H, 2)."""
        h = self.in_proj(x_t) + self.pos[None] + self.time_mlp(_time_embedding(t, self.hidden))[:, None]
        memory = self.cond_proj(prefix)
        pad = ~prefix_mask.bool()
        for block in self.blocks:
            h = block(h, memory, memory_key_padding_mask=pad)
        return self.out(h)

    def flow_loss(self, prefix: torch.Tensor, prefix_mask: torch.Tensor, target: torch.Tensor,
                  time_beta=(1.5, 1.0), generator: torch.Generator | None = None) -> torch.Tensor:
        """Flow-matching loss for normalised target controls ``(B, H, 2)``; the prefix is detached here."""
        prefix = prefix.detach()  # the stop-gradient: nothing of this loss reaches the backbone
        b = target.shape[0]
        beta = torch.distributions.Beta(torch.tensor(float(time_beta[0])), torch.tensor(float(time_beta[1])))
        t = (1.0 - beta.sample((b,))).to(target)  # favour noisy times (t near 0), as π0 does
        noise = torch.randn(target.shape, generator=generator, dtype=target.dtype, device=target.device)
        x_t = (1 - t)[:, None, None] * noise + t[:, None, None] * target
        pred = self(x_t, t, prefix, prefix_mask)
        return ((pred - (target - noise)) ** 2).mean()

    @torch.no_grad()
    def sample(self, prefix: torch.Tensor, prefix_mask: torch.Tensor, num_steps: int = 10,
               noise: torch.Tensor | None = None) -> torch.Tensor:
        """Euler-integrate from ``noise`` (default zeros: the deterministic trajectory) -> normalised (B, H, 2)."""
        b = prefix.shape[0]
        x = noise if noise is not None else prefix.new_zeros(b, self.horizon, self.action_dim)
        for k in range(num_steps):
            t = prefix.new_full((b,), k / num_steps)
            x = x + self(x, t, prefix, prefix_mask) / num_steps
        return x

    # --- persistence --------------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        from safetensors.torch import save_file

        d = Path(directory) / EXPERT_DIR
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(self.config))
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()},
                  str(d / "model.safetensors"))

    @classmethod
    def load(cls, directory: str | Path) -> FlowActionExpert | None:
        """The expert saved in checkpoint ``directory``, or None when it has none."""
        from safetensors.torch import load_file

        d = Path(directory) / EXPERT_DIR
        if not (d / "config.json").exists():
            return None
        expert = cls(**json.loads((d / "config.json").read_text()))
        expert.load_state_dict(load_file(str(d / "model.safetensors")))
        return expert.eval()
