"""The policy's tokenizer: a Hugging Face fast tokenizer built locally (no downloads), saved with the model.

Why this shape. transformers 5 loads the tokenizer of any ``model_type=qwen2`` checkpoint as ``Qwen2Tokenizer``,
which rebuilds the pipeline (NFC, Qwen2's split regex with single digits, byte-level BPE) around the saved vocabulary
and merges, whatever ``tokenizer_class`` says (docs/machine-notes.md). So the tokenizer *is* that pipeline:

- chain-of-causation text: a byte-level BPE trained here on the trace corpus until every corpus word is one token
  (``" stop"`` -> ``Ġstop``); an out-of-vocabulary word is spelled in smaller pieces down to single bytes, so any
  text encodes losslessly and nothing crashes (there is no ``<|unk|>`` in the output; the token exists for configs);
- the special tokens of docs/design.md §1 (``<|cot_start|>`` ...) as special added tokens;
- scene words (``<v12>``, ``<tl_red>`` ...) and trajectory bins (``<A17>`` acceleration bin 17, ``<K17>`` curvature
  bin 17) as added tokens: one token each, written without spaces (``<v12><xn3>``).

``tokenizers``, ``AutoTokenizer.from_pretrained(dir)`` (= ``Qwen2Tokenizer``) and vLLM agree on every id (tested).
Trajectory tokens interleave ``<A..>``, ``<K..>`` as ``TrajectoryTokenizer`` orders the controls (docs/design.md §2).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from rlpost.domain.trajectory import HORIZON, TrajectoryTokenizer

PAD = "<|pad|>"
UNK = "<|unk|>"
COT_START = "<|cot_start|>"
COT_END = "<|cot_end|>"
TRAJ_START = "<|traj_start|>"
TRAJ_END = "<|traj_end|>"
SPECIAL_TOKENS = (PAD, UNK, COT_START, COT_END, TRAJ_START, TRAJ_END)
TRAJ_TOKENS = 2 * HORIZON  # 128 interleaved (a, κ) tokens
VOCAB_FILE = "rlpost_vocab.json"  # the token groups (scene / bins / trace size) beside tokenizer.json

# Qwen2's pre-tokenizer regex (transformers' Qwen2Tokenizer rebuilds exactly this pipeline).
QWEN2_SPLIT = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"""
    r"""|\s+(?!\S)|\s+"""
)


def _qwen2_pipeline(tk: Tokenizer) -> Tokenizer:
    tk.normalizer = normalizers.NFC()
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tk.decoder = decoders.ByteLevel()
    return tk


def scene_token(word: str) -> str:
    """The added-token form of a scene word: ``"v12"`` -> ``"<v12>"``."""
    return f"<{word}>"


def trace_text(trace: str) -> str:
    """The exact text a trace is encoded from between ``<|cot_start|>`` and ``<|cot_end|>``: one leading space."""
    return " " + " ".join(trace.split())


class PolicyTokenizer:
    """The tokenizer plus the id groups the policy needs (specials, trace tokens, scene tokens, bins).

    Build with :meth:`build`, save with :meth:`save` (``tokenizer.json``, ``tokenizer_config.json``,
    ``special_tokens_map.json``, ``rlpost_vocab.json``), reload with :meth:`load`.
    """

    def __init__(self, tokenizer: Tokenizer, scene_words: Sequence[str], num_bins: int,
                 accel_range: Sequence[float], curvature_range: Sequence[float],
                 tokenizer_class: str = "Qwen2Tokenizer"):
        self.tk = tokenizer
        self.tokenizer_class = tokenizer_class
        self.scene_words = list(scene_words)
        self.bins = TrajectoryTokenizer(int(num_bins), tuple(accel_range), tuple(curvature_range))
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        self.vocab = vocab
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        self.special_ids = {t: vocab[t] for t in SPECIAL_TOKENS}
        self.accel_ids = np.array([vocab[f"<A{i}>"] for i in range(num_bins)], dtype=np.int64)
        self.curv_ids = np.array([vocab[f"<K{i}>"] for i in range(num_bins)], dtype=np.int64)
        self.scene_ids = np.array([vocab[scene_token(w)] for w in self.scene_words], dtype=np.int64)
        # A base model's own special tokens (``<bos>``, ``<|im_end|>``, ``<mask>`` ...; ``extend``) are no trace
        # words: the trace phase must not emit them. A built tokenizer's only special tokens are the policy's six.
        base_special = {i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special}
        added = (base_special | set(self.special_ids.values()) | set(self.accel_ids) | set(self.curv_ids)
                 | set(self.scene_ids))
        self.trace_ids = np.array(sorted(set(range(self.vocab_size)) - added), dtype=np.int64)  # the BPE vocabulary
        self._id_to_bin = np.full(self.vocab_size, -1, dtype=np.int64)
        self._id_to_bin[self.accel_ids] = np.arange(num_bins)
        self._id_to_bin[self.curv_ids] = np.arange(num_bins)
        self._scene_lookup = {w: int(i) for w, i in zip(self.scene_words, self.scene_ids)}

    # --- construction -------------------------------------------------------------------------------------------
    @classmethod
    def build(cls, scene_words: Iterable[str], trace_corpus: Iterable[str], num_bins: int,
              accel_range=(-5.0, 3.5), curvature_range=(-0.25, 0.25)) -> PolicyTokenizer:
        """A fresh tokenizer. Ids: the 6 specials, the 256 byte symbols and the BPE merges of ``trace_corpus``
        (texts: traces and/or single words), then scene tokens, then ``<A0>..``, then ``<K0>..``.

        BPE training runs until no pair is left, so every whitespace-separated word of the corpus (with its
        leading space, as :func:`trace_text` writes it) becomes exactly one token.
        """
        scene = list(dict.fromkeys(scene_words))
        for w in scene:
            if not w or any(c in w for c in "<>| \t\n"):
                raise ValueError(f"scene_words: {w!r} must be a non-empty word without '<', '>', '|' or spaces")
        tk = _qwen2_pipeline(Tokenizer(models.BPE(unk_token=None, continuing_subword_prefix="",
                                                  end_of_word_suffix="", fuse_unk=False, byte_fallback=False)))
        trainer = trainers.BpeTrainer(vocab_size=1_000_000, min_frequency=1, special_tokens=list(SPECIAL_TOKENS),
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        texts = [trace_text(t) for t in trace_corpus if t and t.strip()]
        tk.train_from_iterator(texts or [" "], trainer)
        added = ([scene_token(w) for w in scene] + [f"<A{i}>" for i in range(num_bins)]
                 + [f"<K{i}>" for i in range(num_bins)])
        clash = [t for t in added if t in tk.get_vocab()]
        if clash:
            raise ValueError(f"scene/bin tokens clash with the trace vocabulary: {clash[:5]}")
        tk.add_tokens([AddedToken(t, normalized=False, special=False) for t in added])
        return cls(tk, scene, num_bins, accel_range, curvature_range)

    @classmethod
    def extend(cls, base_dir: str | Path, scene_words: Iterable[str], num_bins: int,
               accel_range=(-5.0, 3.5), curvature_range=(-0.25, 0.25)) -> PolicyTokenizer:
        """An HF model's own tokenizer plus the policy's special, scene and bin tokens (``ModelConfig.path``); the
        base vocabulary except its special tokens counts as trace tokens.

        The base is the tokenizer *transformers* builds for ``base_dir`` (``AutoTokenizer``), not its raw
        ``tokenizer.json``: transformers 5 rebuilds the pipeline of many classes (``GemmaTokenizer``,
        ``Qwen2Tokenizer`` ...) around the saved vocabulary and may add tokens (``GemmaTokenizer`` adds ``<mask>``),
        and vLLM tokenizes through transformers. Starting from that pipeline, the saved policy tokenizer reloads
        under the same class to the same ids (:meth:`transformers_mismatches` checks it)."""
        from transformers import AutoTokenizer

        base = Path(base_dir)
        hf = AutoTokenizer.from_pretrained(str(base))
        backend = getattr(hf, "backend_tokenizer", None)
        if backend is None:
            raise ValueError(f"{base}: transformers loads its tokenizer as {type(hf).__name__}, which has no "
                             "`tokenizers` backend; save a fast tokenizer (tokenizer.json) with the model")
        tk = Tokenizer.from_str(backend.to_str())
        scene = list(dict.fromkeys(scene_words))
        tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
        added = ([scene_token(w) for w in scene] + [f"<A{i}>" for i in range(num_bins)]
                 + [f"<K{i}>" for i in range(num_bins)])
        tk.add_tokens([AddedToken(t, normalized=False, special=False) for t in added])
        cls_name = "PreTrainedTokenizerFast"
        if (base / "tokenizer_config.json").exists():
            cls_name = json.loads((base / "tokenizer_config.json").read_text()).get("tokenizer_class") or cls_name
        return cls(tk, scene, num_bins, accel_range, curvature_range, cls_name)

    def transformers_mismatches(self, config_dir: str | Path, texts: Sequence[str]) -> list[str]:
        """The ``texts`` that ``AutoTokenizer`` encodes to other ids than this tokenizer once saved beside
        ``config_dir``'s ``config.json`` (transformers picks some tokenizer classes by the model type). Empty when
        transformers, and so vLLM, agree with the policy on every id."""
        import shutil
        import tempfile

        from transformers import AutoTokenizer

        with tempfile.TemporaryDirectory() as tmp:
            self.save(tmp)
            if (Path(config_dir) / "config.json").is_file():
                shutil.copy2(Path(config_dir) / "config.json", Path(tmp) / "config.json")
            hf = AutoTokenizer.from_pretrained(tmp)
            return [t for t in texts if hf.encode(t, add_special_tokens=False) != self.encode(t)]

    def save(self, directory: str | Path) -> None:
        """Write the files transformers and vLLM load (``AutoTokenizer.from_pretrained(dir)``)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.tk.save(str(d / "tokenizer.json"))
        config = {
            "tokenizer_class": self.tokenizer_class,  # transformers 5 uses Qwen2Tokenizer for qwen2 anyway
            "model_max_length": 4096,
            "pad_token": PAD, "unk_token": UNK, "eos_token": TRAJ_END, "bos_token": None,
            "add_bos_token": False, "add_eos_token": False, "add_prefix_space": False,
            "clean_up_tokenization_spaces": False, "padding_side": "left", "errors": "replace",
        }
        (d / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
        (d / "special_tokens_map.json").write_text(
            json.dumps({"pad_token": PAD, "unk_token": UNK, "eos_token": TRAJ_END}))
        meta = {"scene_words": self.scene_words, "tokenizer_class": self.tokenizer_class,
                "num_bins": self.bins.num_bins, "accel_range": list(self.bins.accel_range),
                "curvature_range": list(self.bins.curvature_range)}
        (d / VOCAB_FILE).write_text(json.dumps(meta))

    @classmethod
    def load(cls, directory: str | Path) -> PolicyTokenizer:
        d = Path(directory)
        meta = json.loads((d / VOCAB_FILE).read_text())
        tk = Tokenizer.from_file(str(d / "tokenizer.json"))
        return cls(tk, meta["scene_words"], meta["num_bins"], meta["accel_range"], meta["curvature_range"],
                   meta.get("tokenizer_class", "Qwen2Tokenizer"))

    # --- text <-> ids -------------------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` (no special tokens added); any text encodes (unknown words in smaller pieces)."""
        return self.tk.encode(text, add_special_tokens=False).ids

    def encode_scene(self, words: Sequence[str]) -> list[int]:
        """Ids of scene words (one id each); an unknown scene word gives the ``<|unk|>`` id."""
        unk = self.special_ids[UNK]
        return [self.special_ids[w] if w in self.special_ids else self._scene_lookup.get(w, unk) for w in words]

    def encode_trace(self, trace: str) -> list[int]:
        """Ids of a chain-of-causation text as the model reads and writes it (see :func:`trace_text`)."""
        return self.encode(trace_text(trace))

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self.tk.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def decode_trace(self, ids: Sequence[int]) -> str:
        """Text of trace ids (special, scene and bin tokens dropped), whitespace-normalised."""
        keep = [int(i) for i in ids if int(i) in self._trace_set]
        return " ".join(self.tk.decode(keep, skip_special_tokens=True).split())

    @property
    def _trace_set(self) -> set[int]:
        if not hasattr(self, "_trace_set_cache"):
            self._trace_set_cache = set(int(i) for i in self.trace_ids)
        return self._trace_set_cache

    def id(self, token: str) -> int:
        """Id of a special token (``COT_END`` ...)."""
        return self.special_ids[token]

    # --- trajectory bins ----------------------------------------------------------------------------------------
    def encode_controls(self, controls) -> np.ndarray:
        """controls ``(..., 64, 2)`` -> ``(..., 128)`` token ids (A, K interleaved)."""
        bins = self.bins.encode(controls)
        ids = np.empty_like(bins)
        ids[..., 0::2] = self.accel_ids[bins[..., 0::2]]
        ids[..., 1::2] = self.curv_ids[bins[..., 1::2]]
        return ids

    def decode_controls(self, ids) -> np.ndarray:
        """``(..., 2T)`` ids (A, K interleaved) -> controls ``(..., T, 2)`` at the bin centres.

        Raises ValueError when a token is not the expected bin kind at its position.
        """
        tok = np.asarray(ids, dtype=np.int64)
        if tok.size and (tok.min() < 0 or tok.max() >= self.vocab_size):
            raise ValueError("ids: token id out of the vocabulary")
        if not (np.isin(tok[..., 0::2], self.accel_ids).all() and np.isin(tok[..., 1::2], self.curv_ids).all()):
            raise ValueError("ids: expected interleaved acceleration / curvature bin tokens (A, K, A, K, ...)")
        return self.bins.decode(self._id_to_bin[tok])

    def split_completion(self, ids: Sequence[int]) -> tuple[list[int], list[int] | None]:
        """Split a completion (tokens after the prompt) into (trace ids, trajectory ids or None).

        The trace is everything before ``<|cot_end|>`` (or ``<|traj_start|>``, or the end); the trajectory is the
        tokens between ``<|traj_start|>`` and ``<|traj_end|>`` when they are exactly 128 valid interleaved bins.
        """
        ids = [int(i) for i in ids]
        cot_end, t_start, t_end = (self.special_ids[t] for t in (COT_END, TRAJ_START, TRAJ_END))
        if ids and ids[0] == self.special_ids[COT_START]:
            ids = ids[1:]
        stops = [ids.index(t) for t in (cot_end, t_start) if t in ids]
        trace = ids[: min(stops)] if stops else ids
        traj = None
        if t_start in ids:
            rest = ids[ids.index(t_start) + 1:]
            body = rest[: rest.index(t_end)] if t_end in rest else rest
            if len(body) == TRAJ_TOKENS:
                try:
                    self.decode_controls(body)
                    traj = body
                except ValueError:
                    traj = None
        return trace, traj
