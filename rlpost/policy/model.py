"""Model factory, the joint backbone + expert module, and checkpoints that transformers and vLLM load directly.

- :func:`build_tokenizer`: the policy tokenizer from a trace corpus (CoC wording tables + dataset traces).
- :func:`build_backbone`: a random-init Qwen2 causal LM from a size preset (``tiny`` for CI, ``small`` for a
  laptop run), untied embeddings, or any local HF causal-LM folder (``ModelConfig.path``, "bring your own model"):
  its own tokenizer extended with the policy's special, scene and bin tokens, its embeddings resized, a tied head
  kept tied (see :func:`load_base_model`). Tested with Llama, Qwen3 and Gemma3 checkpoints
  (tests/integration/test_byo_models.py).
- :func:`check_model_path`: the ``UserError`` a run gets for a missing folder, a tokenizer-less folder or an
  architecture transformers cannot load as a causal LM (vLLM's side: ``rlpost.policy.vllm_engine.make_llm``).
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

from rlpost.common.errors import MissingPathError, UserError
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
        check_model_path(cfg.path)
        tok = PolicyTokenizer.extend(cfg.path, scene_vocabulary(), cfg.num_bins, cfg.accel_range,
                                     cfg.curvature_range)
        # The policy encodes with `tokenizers`, vLLM with transformers: a tokenizer class that rebuilds its pipeline
        # differently from what extend() started from would silently shift ids between them. Refuse it now.
        probe = [" ".join(traces[:4]) if traces else "", *wording_corpus()[:8], "<v3><tl_red><|cot_start|> Stop"
                 " now, 12 m.<|cot_end|><|traj_start|><A1><K2><|traj_end|>"]
        bad = tok.transformers_mismatches(cfg.path, [t for t in probe if t])
        if bad:
            raise UserError(f"model.path: the extended tokenizer of {cfg.path} encodes differently once reloaded by "
                            f"transformers (first: {bad[0][:60]!r}); its tokenizer_config.json's tokenizer_class "
                            "rebuilds another pipeline than its tokenizer.json: fix the class or the file")
        return tok
    corpus = list(traces) + wording_corpus() + ["left right Left Right . , : ; ( ) - ' 0 1 2 3 4 5 6 7 8 9 m s"]
    return PolicyTokenizer.build(scene_vocabulary(), corpus, cfg.num_bins, cfg.accel_range, cfg.curvature_range)


def check_model_path(path: str, field: str = "model.path") -> None:
    """Raise a :class:`UserError` naming ``field`` unless ``path`` is a local HF causal-LM folder with a tokenizer.

    Runs before any training (``run_sft``, ``RunConfig.preflight``) so a typo does not cost a minute of start-up
    and is not mistaken for a hub repo id (there is no hub here). Whether vLLM serves the architecture is checked
    when an engine starts (``make_llm``): importing vLLM's registry takes seconds to a minute on these machines.
    """
    folder = Path(path)
    if not (folder / "config.json").is_file():
        why = "does not exist" if not folder.exists() else "has no config.json"
        raise MissingPathError(f"{field}: {str(path)!r} {why}; give a local Hugging Face causal-LM folder (config.json,"
                               " weights, tokenizer.json) as written by save_pretrained; models are not downloaded")
    if not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
        raise MissingPathError(f"{field}: {str(path)!r} has no tokenizer; save the model's own tokenizer beside it "
                               "(tokenizer.save_pretrained(folder): tokenizer.json + tokenizer_config.json)")
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(str(folder))
    except (ValueError, KeyError, OSError) as exc:
        why = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise UserError(f"{field}: transformers cannot read {folder / 'config.json'} ({why}); give a causal LM "
                        "of a model type the installed transformers knows") from None
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        archs = ", ".join(getattr(config, "architectures", None) or []) or "no architectures"
        raise UserError(f"{field}: {str(path)!r} is a {config.model_type!r} model ({archs}), not a causal LM that "
                        "AutoModelForCausalLM loads; give a decoder-only language model (tested: LlamaForCausalLM, "
                        "Qwen3ForCausalLM, Gemma3ForCausalLM)")


def load_base_model(cfg: ModelConfig, tok: PolicyTokenizer) -> nn.Module:
    """``cfg.path``'s causal LM, resized to ``tok``'s vocabulary and set to the policy's EOS / padding.

    - Rows: the embedding (and an untied head) grows to ``tok.vocab_size`` rounded up to ``cfg.vocab_multiple``
      (new rows start at the old rows' mean, transformers' ``mean_resizing``). A model whose rows already cover
      the tokenizer (checkpoints often pad their vocabulary) is left as is. Rows past the tokenizer are never
      sampled: the phase masks forbid every id they do not list.
    - A tied head stays tied (Gemma3 and small Qwen3s tie). Untying would double a large vocabulary's parameters
      (Gemma 3 270M: 168M of its 268M are the embedding) and train a different model than the one given; the tie
      costs nothing downstream: ``save_pretrained`` writes the embedding once and ``tie_word_embeddings`` re-ties
      on load (transformers and vLLM), and the weight sync sends ``named_parameters()``, where the shared tensor
      appears once under the embedding's name, which vLLM's tied models load into their one embedding/head.
      The loop's log-prob probe checks after every sync that the engine's head followed.
    - EOS is ``<|traj_end|>`` and padding ``<|pad|>`` (the base's own ``<eos>``/``<|im_end|>`` would otherwise stop
      HF generation mid-trace); no BOS is prepended anywhere (prompts are scene tokens, the same in HF and vLLM).
    """
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(cfg.path, dtype=torch.float32)
    if model.config.max_position_embeddings < cfg.max_position_embeddings:
        raise UserError(f"model.max_position_embeddings: {cfg.max_position_embeddings} exceeds the context of "
                        f"{cfg.path} ({model.config.max_position_embeddings}); lower it (and max_prompt_tokens / "
                        "max_trace_tokens)")
    if model.get_input_embeddings().weight.shape[0] < tok.vocab_size:
        model.resize_token_embeddings(tok.vocab_size, pad_to_multiple_of=cfg.vocab_multiple, mean_resizing=True)
    for config in (model.config, model.generation_config):
        config.eos_token_id, config.pad_token_id, config.bos_token_id = tok.id(TRAJ_END), tok.id(PAD), None
    return model


def build_backbone(cfg: ModelConfig, tok: PolicyTokenizer) -> nn.Module:
    """A causal LM for ``tok``: random-init Qwen2 from ``cfg.size``, or ``cfg.path`` resized to the vocabulary."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    if cfg.path is not None:
        return load_base_model(cfg, tok)
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
