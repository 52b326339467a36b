"""Model factory, the joint backbone + expert module, and checkpoints that transformers and vLLM load directly.

- :func:`build_tokenizer`: the policy tokenizer from a trace corpus (CoC wording tables + dataset traces).
- :func:`build_backbone`: a random-init Qwen2 causal LM from a size preset (``tiny`` for CI, ``small`` for a
  laptop run), untied embeddings (``save_pretrained`` would drop a tied ``lm_head``), or — for GPU use — any local HF
  causal-LM directory (``ModelConfig.path``): its tokenizer is extended with the policy's special, scene and bin
  tokens and its embeddings resized (documented; not exercised in CI).
- :class:`PolicyModel`: backbone + optional flow expert; ``forward`` returns the CE losses (trace, trajectory) and
  the flow loss computed on the backbone's *detached* prefix states.
- :func:`save_policy` / :func:`load_policy`: ``save_pretrained`` + tokenizer + ``phase_rules.json`` +
  ``generation_config.json`` + ``action_expert/`` + ``rlpost_model.json`` (the ModelConfig).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from rlpost.policy.config import SIZE_PRESETS, ModelConfig
from rlpost.policy.constraints import PhaseRules
from rlpost.policy.expert import EXPERT_DIR, FlowActionExpert
from rlpost.policy.scene import scene_vocabulary
from rlpost.policy.tokenizer import PAD, TRAJ_END, PolicyTokenizer

MODEL_CONFIG_FILE = "rlpost_model.json"


def wording_corpus() -> list[str]:
    """Texts covering the CoC vocabulary: rlpost.domain.coc's DECISION_VOCABULARY and the wording tables' phrases."""
    texts: list[str] = []
    try:
        from rlpost.domain import coc_wording as w

        for name in dir(w):
            value = getattr(w, name)
            if name.isupper() and isinstance(value, dict):
                value = [p for v in value.values() for p in (v if isinstance(v, (list, tuple)) else [v])]
            if name.isupper() and isinstance(value, (list, tuple)):
                for p in value:
                    if isinstance(p, str) and "\\" not in p and "(?" not in p:
                        texts.append(p.replace("{d}", "left") + " " + p.replace("{d}", "right"))
    except ImportError:
        pass
    try:
        from rlpost.domain.coc import DECISION_VOCABULARY

        texts += [str(w) for w in DECISION_VOCABULARY]
    except ImportError:
        pass
    import re

    words = sorted({w for t in texts for w in re.findall(r"[A-Za-z]+", t)})
    texts.append(" ".join(w[:1].upper() + w[1:] for w in words))  # sentence-initial forms
    return texts


def build_tokenizer(cfg: ModelConfig, traces: list[str] = ()) -> PolicyTokenizer:
    """The policy tokenizer for ``cfg`` with a trace vocabulary from ``traces`` plus :func:`wording_corpus`."""
    if cfg.path is not None:
        return PolicyTokenizer.extend(cfg.path, scene_vocabulary(), cfg.num_bins, cfg.accel_range, cfg.curvature_range)
    corpus = list(traces) + wording_corpus() + ["left right Left Right . , : ; ( ) - ' 0 1 2 3 4 5 6 7 8 9 m s"]
    return PolicyTokenizer.build(scene_vocabulary(), corpus, cfg.num_bins, cfg.accel_range, cfg.curvature_range)


def build_backbone(cfg: ModelConfig, tok: PolicyTokenizer) -> nn.Module:
    """A causal LM for ``tok``: random-init Qwen2 from ``cfg.size``, or ``cfg.path`` resized to the vocabulary."""
    from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

    if cfg.path is not None:
        model = AutoModelForCausalLM.from_pretrained(cfg.path, dtype=torch.float32)
        if model.get_input_embeddings().weight.shape[0] < tok.vocab_size:
            model.resize_token_embeddings(tok.vocab_size)
        model.config.eos_token_id = tok.id(TRAJ_END)
        model.config.pad_token_id = tok.id(PAD)
        return model
    preset = SIZE_PRESETS[cfg.size]
    config = Qwen2Config(
        vocab_size=tok.vocab_size, max_position_embeddings=cfg.max_position_embeddings, rope_theta=cfg.rope_theta,
        initializer_range=cfg.init_std, tie_word_embeddings=False, use_sliding_window=False,
        bos_token_id=None, eos_token_id=tok.id(TRAJ_END), pad_token_id=tok.id(PAD), **preset,
    )
    config.tokenizer_class = "Qwen2Tokenizer"
    torch.manual_seed(cfg.seed)
    return Qwen2ForCausalLM(config).float()


def build_expert(cfg: ModelConfig, backbone: nn.Module) -> FlowActionExpert | None:
    if not cfg.expert.enabled:
        return None
    torch.manual_seed(cfg.seed + 1)
    e = cfg.expert
    return FlowActionExpert(backbone.config.hidden_size, e.hidden_size, e.num_layers, e.num_heads)


class PolicyModel(nn.Module):
    """Backbone + expert as one module (what DeepSpeed wraps).

    ``forward(input_ids, attention_mask, labels, traj_mask, prefix_mask, controls)``:
    labels (B, S) next-token targets (−100 = no loss) aligned with input_ids (shifted inside);
    traj_mask (B, S) bool: positions whose label is a trajectory bin; prefix_mask (B, S) bool: the expert's prefix
    (prompt + trace + <|traj_start|>); controls (B, 64, 2) normalised expert controls.
    Returns a dict of losses: ``loss`` (weighted sum), ``ce_trace``, ``ce_traj``, ``flow``.
    """

    def __init__(self, backbone: nn.Module, expert: FlowActionExpert | None, trace_weight=1.0, traj_weight=1.0,
                 flow_weight=1.0, time_beta=(1.5, 1.0)):
        super().__init__()
        self.backbone, self.expert = backbone, expert
        self.weights = (float(trace_weight), float(traj_weight), float(flow_weight))
        self.time_beta = tuple(time_beta)

    def forward(self, input_ids, attention_mask, labels, traj_mask, prefix_mask=None, controls=None):
        need_hidden = self.expert is not None and controls is not None
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=need_hidden)
        logits = out.logits[:, :-1].float()
        target = labels[:, 1:]
        is_traj = traj_mask[:, 1:]
        ce = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                         ignore_index=-100, reduction="none").view_as(target)
        valid = target != -100
        trace_sel, traj_sel = valid & ~is_traj, valid & is_traj
        ce_trace = (ce * trace_sel).sum() / trace_sel.sum().clamp_min(1)
        ce_traj = (ce * traj_sel).sum() / traj_sel.sum().clamp_min(1)
        wt, wj, wf = self.weights
        loss = wt * ce_trace + wj * ce_traj
        result = {"ce_trace": ce_trace.detach(), "ce_traj": ce_traj.detach()}
        if need_hidden:
            prefix = out.hidden_states[-1]  # detached inside flow_loss: the stop-gradient
            flow = self.expert.flow_loss(prefix, prefix_mask, controls, self.time_beta)
            loss = loss + wf * flow
            result["flow"] = flow.detach()
        result["loss"] = loss
        return result


@dataclass
class Policy:
    """A loaded checkpoint: backbone, tokenizer, phase rules, optional expert and the ModelConfig it was built from."""

    backbone: nn.Module
    tokenizer: PolicyTokenizer
    rules: PhaseRules
    expert: FlowActionExpert | None
    config: ModelConfig


def save_policy(directory: str | Path, backbone: nn.Module, tok: PolicyTokenizer, cfg: ModelConfig,
                expert: FlowActionExpert | None = None, rules: PhaseRules | None = None) -> Path:
    """Write a checkpoint that ``AutoModelForCausalLM``/``AutoTokenizer.from_pretrained(dir)`` and
    ``vllm.LLM(model=dir)`` load directly."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    backbone.save_pretrained(str(d), safe_serialization=True)
    tok.save(d)
    (rules or PhaseRules.for_tokenizer(tok, cfg.max_trace_tokens)).save(d)
    gen = {"eos_token_id": tok.id(TRAJ_END), "pad_token_id": tok.id(PAD), "bos_token_id": None, "do_sample": False}
    (d / "generation_config.json").write_text(json.dumps(gen, indent=1))
    (d / MODEL_CONFIG_FILE).write_text(cfg.model_dump_json(indent=1))
    if expert is not None:
        expert.save(d)
    return d


# What save_pretrained writes for the backbone; everything else in a policy folder describes the policy around it.
_BACKBONE_FILES = {"config.json", "model.safetensors", "model.safetensors.index.json"}


def copy_policy_files(source: str | Path, directory: str | Path) -> None:
    """Complete a folder holding only a trained backbone (``save_pretrained``) into a policy checkpoint: copy the
    tokenizer, phase rules, generation and model configs and the action expert from the ``source`` policy."""
    import shutil

    src, dst = Path(source), Path(directory)
    for f in src.iterdir():
        if f.is_file() and f.name not in _BACKBONE_FILES and not f.name.startswith("model-"):
            shutil.copy2(f, dst / f.name)
    if (src / EXPERT_DIR).is_dir():
        shutil.copytree(src / EXPERT_DIR, dst / EXPERT_DIR, dirs_exist_ok=True)


def load_model_config(directory: str | Path) -> ModelConfig:
    """The ModelConfig a policy checkpoint was built from (its ``rlpost_model.json``)."""
    path = Path(directory) / MODEL_CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: no {MODEL_CONFIG_FILE}; not a policy checkpoint written by save_policy")
    return ModelConfig.model_validate_json(path.read_text())


def load_policy(directory: str | Path) -> Policy:
    """Load a checkpoint written by :func:`save_policy` (backbone in eval mode, float32, CPU)."""
    from transformers import AutoModelForCausalLM

    d = Path(directory)
    backbone = AutoModelForCausalLM.from_pretrained(str(d), dtype=torch.float32).eval()
    cfg = load_model_config(d)
    return Policy(backbone, PolicyTokenizer.load(d), PhaseRules.load(d), FlowActionExpert.load(d), cfg)


def new_policy(cfg: ModelConfig, traces: list[str] = ()) -> Policy:
    """A fresh random-init policy (tokenizer from ``traces`` + the wording tables)."""
    tok = build_tokenizer(cfg, traces)
    backbone = build_backbone(cfg, tok)
    return Policy(backbone, tok, PhaseRules.for_tokenizer(tok, cfg.max_trace_tokens), build_expert(cfg, backbone), cfg)
