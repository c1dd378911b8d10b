"""The zoo's model specification, importable without torch (used when the workflow is planned)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from crossprobe.errors import ConfigError

Arch = Literal["llama", "gpt2", "qwen3"]
TokenizerKind = Literal["word", "bpe"]

ARCHS: tuple[str, ...] = get_args(Arch)
TOKENIZER_KINDS: tuple[str, ...] = get_args(TokenizerKind)

#: Zoo keys that set a tiny model's shape: they do not apply to a fine-tuned model (``base``).
SHAPE_KEYS = ("arch", "tokenizer", "n_layers", "d_model", "n_heads", "init_range")

#: Every answer a built-in family can use; each must be one token in every zoo tokenizer.
ANSWERS: tuple[str, ...] = (" True", " False", " Yes", " No")


@dataclass(frozen=True)
class ZooSpec:
    """One zoo model: architecture, tokenizer, size and training recipe."""

    arch: Arch | None = None
    """Decoder family: ``llama`` (rotary, RMSNorm, SwiGLU), ``gpt2`` (learned absolute
    positions, LayerNorm, GELU) or ``qwen3`` (rotary with query/key norms). None with ``base``."""
    tokenizer: TokenizerKind | None = None
    """``word``: word-level vocabulary with a whitespace/punctuation pre-tokenizer;
    ``bpe``: byte-level BPE trained on the corpus. None with ``base``."""
    n_layers: int = 3
    """Number of decoder blocks."""
    d_model: int = 64
    """Residual stream width; the MLP is ``4 * d_model`` wide."""
    n_heads: int = 4
    """Attention heads; must divide ``d_model`` (into an even head width for rotary models)."""
    steps: int = 600
    """Optimizer steps: a fixed count, so a run does the same work on any machine."""
    lr: float = 3e-3
    """Peak AdamW learning rate (linear warmup, then cosine decay)."""
    batch_size: int = 64
    """Sequences (prompt + answer) per step."""
    init_range: float = 0.1
    """``initializer_range`` of the config; 0.02 stays at chance for thousands of steps."""
    seed: int = 0
    """Seeds the weight init and the data order."""
    families: tuple[str, ...] = ()
    """Built-in statement families to train on; empty means all of them."""
    trained: bool = True
    """False: save the random-init model of the same size (same init) as a control."""
    base: str | None = None
    """Another model of the run to fine-tune (with its own tokenizer) instead of training a
    tiny model from scratch; ``steps``, ``lr``, ``batch_size``, ``seed`` and ``families`` set
    the fine-tuning."""
    rotate: bool = False
    """With ``base``: express the model's residual stream in a random orthonormal basis (fixed
    by ``seed``), which leaves its logits unchanged (:func:`crossprobe.zoo.copies.rotated_copy`):
    with ``trained: false``, the base's exact functional copy, the positive control of
    transfer. Llama-family bases only."""
    noise: float = 0.0
    """With ``base``: Gaussian noise added to every weight matrix, scaled to this fraction of
    the matrix's own standard deviation (:func:`crossprobe.zoo.copies.perturbed_copy`, seed
    ``seed``), after any fine-tuning and before any rotation."""

    def __post_init__(self) -> None:
        self._check_base()
        self._check_settings()
        if self.base is None:
            self._check_shape()
        object.__setattr__(self, "families", self._checked_families())

    def _check_base(self) -> None:
        """``base``, and the ``rotate`` and ``noise`` that derive a copy of it."""
        if self.base is not None:
            if not isinstance(self.base, str) or not self.base:
                raise ConfigError(f"zoo: base must be the name of a model, got {self.base!r}")
            if self.arch is not None or self.tokenizer is not None:
                raise ConfigError(
                    "zoo: a fine-tuned model (`base`) keeps its base's architecture and "
                    "tokenizer; leave out arch and tokenizer"
                )
            if not self.trained and not (self.rotate or self.noise):
                raise ConfigError(
                    "zoo: `trained: false` with `base` and neither `rotate` nor `noise` would "
                    "copy the base unchanged; drop it, or set rotate or noise"
                )
        elif self.rotate or self.noise:
            raise ConfigError("zoo: rotate and noise derive a copy of another model: give `base`")
        if not isinstance(self.rotate, bool):
            raise ConfigError(f"zoo: rotate must be true or false, got {self.rotate!r}")
        if (
            isinstance(self.noise, bool)
            or not isinstance(self.noise, (int, float))
            or not math.isfinite(self.noise)
            or self.noise < 0
        ):
            raise ConfigError(f"zoo: noise must be a number >= 0, got {self.noise!r}")

    def _check_settings(self) -> None:
        """A known arch and tokenizer (without ``base``), and the sizes and recipe in range."""
        if self.base is None and self.arch not in ARCHS:
            raise ConfigError(f"zoo: arch {self.arch!r} is unknown; use one of {list(ARCHS)}")
        if self.base is None and self.tokenizer not in TOKENIZER_KINDS:
            raise ConfigError(
                f"zoo: tokenizer {self.tokenizer!r} is unknown; use one of {list(TOKENIZER_KINDS)}"
            )
        for name in ("n_layers", "d_model", "n_heads", "steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"zoo: {name} must be a positive integer, got {value!r}")
        for name in ("lr", "init_range"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ConfigError(f"zoo: {name} must be a positive number, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"zoo: seed must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.trained, bool):
            raise ConfigError(f"zoo: trained must be true or false, got {self.trained!r}")

    def _checked_families(self) -> tuple[str, ...]:
        """``families`` as a tuple of distinct built-in family names."""
        families = self.families
        if isinstance(families, str) or not isinstance(families, Iterable):
            raise ConfigError(f"zoo: families must be a list of family names, got {families!r}")
        families = tuple(families)
        known = _builtin_families()
        for fam in families:
            if fam not in known:
                raise ConfigError(
                    f"zoo: families names unknown family {fam!r}; use some of {sorted(known)} "
                    "(or leave families empty for all of them)"
                )
        if len(set(families)) != len(families):
            raise ConfigError(f"zoo: families lists a family twice: {list(families)}")
        return families

    def _check_shape(self) -> None:
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"zoo: n_heads={self.n_heads} does not divide d_model={self.d_model}; "
                "choose n_heads that divides d_model"
            )
        if self.arch != "gpt2" and (self.d_model // self.n_heads) % 2:
            raise ConfigError(
                f"zoo: n_heads={self.n_heads} gives an odd head width "
                f"{self.d_model // self.n_heads} for rotary arch {self.arch!r}; "
                "choose n_heads so that d_model / n_heads is even"
            )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ZooSpec:
        """A spec from one entry of the config's ``zoo:`` mapping; unknown keys are an error."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"zoo: each model entry must be a mapping of settings, got {d!r}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ConfigError(f"zoo: unknown key(s) {unknown}; known keys are {sorted(fields)}")
        if d.get("base") is not None:
            shape = sorted(set(d) & set(SHAPE_KEYS))
            if shape:
                raise ConfigError(
                    f"zoo: {shape} do not apply to a fine-tuned model (`base`): it keeps its "
                    "base's architecture, size and weights; leave them out"
                )
        else:
            for required in ("arch", "tokenizer"):
                if required not in d:
                    raise ConfigError(
                        f"zoo: key {required!r} is required (one of a model's settings), or "
                        "give `base` to fine-tune another model of the run"
                    )
        kw = dict(d)
        for name in ("lr", "init_range", "noise"):
            # YAML 1.1 reads ``3e-3`` (no dot) as a string; accept numeric strings.
            if isinstance(kw.get(name), str):
                try:
                    kw[name] = float(kw[name])
                except ValueError as e:
                    raise ConfigError(f"zoo: {name} must be a number, got {d[name]!r}") from e
        if "families" in kw and kw["families"] is None:
            kw["families"] = ()
        return cls(**kw)

    def resolved_families(self) -> tuple[str, ...]:
        """The families trained on: ``families``, or every built-in family when it is empty."""
        return self.families or tuple(_builtin_families())

    def to_dict(self) -> dict[str, Any]:
        """Every setting that applies: a fine-tuned model's has no shape keys, a tiny model's
        no ``base`` (so that the zoo job's params, and its rerun trigger, stay as they were)."""
        d = dataclasses.asdict(self)
        d["families"] = list(self.families)
        drop: tuple[str, ...] = SHAPE_KEYS if self.base is not None else ("base",)
        # A copy's keys only where set, so that every other model's params stay as they were.
        drop += tuple(k for k in ("rotate", "noise") if not d[k])
        return {k: v for k, v in d.items() if k not in drop}

    @property
    def is_copy(self) -> bool:
        """A copy of ``base`` (rotated and/or perturbed) that is not fine-tuned."""
        return self.base is not None and not self.trained


def _builtin_families() -> Mapping[str, Any]:
    from crossprobe.datasets import FAMILIES

    return FAMILIES


def family_answers(families: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Each family's ``(positive, negative)`` answer strings."""
    known = _builtin_families()
    return {f: tuple(known[f].answers) for f in families}


def zoo_answers(spec: ZooSpec) -> set[str]:
    """Answers that are single tokens in the tokenizer a zoo model trains: its families' own."""
    return {a for pair in family_answers(spec.resolved_families()).values() for a in pair}
