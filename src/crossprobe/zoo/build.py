"""A zoo of tiny causal LMs trained here on the built-in statement families.

Each zoo model is trained from scratch on the non-``test`` rows of the built-in families, then
saved with ``save_pretrained`` (model and tokenizer) so that from then on it loads like any hub
model. This gives a workflow that shows real results on a laptop with no GPU and no network.
A zoo entry with ``base`` fine-tunes another model of the run (a real pretrained LM) on the same
rows with the same losses instead, through the same save and load path.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from jaxtyping import Float, Int
from transformers import (
    GPT2Config,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen3Config,
)

from crossprobe.errors import ConfigError
from crossprobe.io import atomic_path
from crossprobe.zoo.spec import (  # noqa: F401  (re-exported: the zoo's public interface)
    ANSWERS,
    ARCHS,
    TOKENIZER_KINDS,
    Arch,
    TokenizerKind,
    ZooSpec,
    _builtin_families,
    family_answers,
)

#: Weight of ordinary next-token loss over the prompt, beside the answer loss (weight 1).
PROMPT_LOSS_WEIGHT = 0.2
#: Fraction of the steps spent on linear learning-rate warmup; cosine decay follows.
WARMUP_FRACTION = 0.05
#: The learning rate decays to this fraction of ``lr`` at the last step.
FINAL_LR_FRACTION = 0.1
WEIGHT_DECAY = 0.01
MIN_POSITIONS = 128
BPE_VOCAB_SIZE = 512
EVAL_BATCH_SIZE = 256
ZOO_JSON = "zoo.json"

_WORD_SPECIALS = ("<pad>", "<unk>", "<|endoftext|>")
_BPE_EOS = "<|endoftext|>"
_PAD = "<pad>"


# ---------------------------------------------------------------------------------------------
# Corpus


@dataclass(frozen=True)
class ZooExample:
    """One prompt of a family with the answer token it should be followed by."""

    family: str
    prompt: str
    answer: str
    label: int
    answer_prob: float = 1.0
    """Target probability of ``answer`` against the other answer: 1 for a hard label, below 1
    for a graded family (see :attr:`crossprobe.datasets.Family.log_odds`)."""


def _examples(
    families: Sequence[str],
    *,
    test: bool,
    splits: Mapping[str, float] | None = None,
    groups: Mapping[str, str | None] | None = None,
) -> list[ZooExample]:
    """The ``test`` rows (``test=True``) or every other row of ``families``, in a fixed order.

    ``splits`` are the run's split fractions (default: the default fractions) and ``groups``
    the group column the run splits each family by (default: the family's ``group``), so the
    zoo never trains on a fact that the run scores on.
    """
    from crossprobe.datasets import (
        DEFAULT_FRACTIONS,
        FAMILIES,
        GROUP_COLUMN,
        format_prompt,
        generate_builtin,
        with_splits,
    )

    out: list[ZooExample] = []
    for name in families:
        if name not in FAMILIES:
            raise ConfigError(f"zoo: unknown family {name!r}; use some of {sorted(FAMILIES)}")
        fam = FAMILIES[name]
        group = (groups or {}).get(name, GROUP_COLUMN)
        df = with_splits(generate_builtin(name), splits or DEFAULT_FRACTIONS, group=group)
        keep = (df["split"] == "test") if test else (df["split"] != "test")
        df = df[keep].sort_values("row", kind="stable")
        p_pos = (
            1.0 / (1.0 + np.exp(-fam.log_odds(df)))
            if fam.log_odds is not None
            else df["label"].to_numpy(np.float64)
        )
        for statement, label, p in zip(df["statement"], df["label"], p_pos, strict=True):
            label = int(label)
            answer = fam.answers[0] if label == 1 else fam.answers[1]
            prob = float(p) if label == 1 else 1.0 - float(p)
            prompt = format_prompt(fam.template, statement)
            out.append(ZooExample(name, prompt, answer, label, prob))
    return out


def build_corpus(
    families: Iterable[str],
    splits: Mapping[str, float] | None = None,
    groups: Mapping[str, str | None] | None = None,
) -> list[tuple[str, str, str]]:
    """``(family, prompt, answer)`` over every non-``test`` row of ``families``, deterministic."""
    examples = _examples(tuple(families), test=False, splits=splits, groups=groups)
    return [(e.family, e.prompt, e.answer) for e in examples]


# ---------------------------------------------------------------------------------------------
# Tokenizers


def build_tokenizer(
    kind: TokenizerKind, texts: Iterable[str], answers: Iterable[str] = ANSWERS
) -> PreTrainedTokenizerFast:
    """A word-level or byte-level BPE tokenizer fit to ``texts``; each of ``answers`` is one token.

    ``word``: ``WordLevel`` with a ``Whitespace`` pre-tokenizer (punctuation is its own token),
    ``<unk>``, ``<pad>`` and ``<|endoftext|>`` (bos/eos). ``bpe``: byte-level BPE
    (``add_prefix_space=False``) with ``<|endoftext|>`` (bos/eos/unk) and ``<pad>``.
    Neither adds special tokens when encoding, so a prompt encodes to its own tokens only.
    A BPE tokenizer merges an answer into one token only if ``texts`` use it often enough;
    otherwise this raises ``ConfigError``.
    """
    answers = tuple(answers)
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    texts = list(texts)
    if kind == "word":
        tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
        word_trainer = trainers.WordLevelTrainer(
            special_tokens=list(_WORD_SPECIALS), min_frequency=1
        )
        tok.train_from_iterator([*texts, *ANSWERS], trainer=word_trainer)
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok,
            pad_token=_PAD,
            eos_token=_BPE_EOS,
            bos_token=_BPE_EOS,
            unk_token="<unk>",
        )
    elif kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=BPE_VOCAB_SIZE,
            special_tokens=[_BPE_EOS, _PAD],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok,
            pad_token=_PAD,
            eos_token=_BPE_EOS,
            bos_token=_BPE_EOS,
            unk_token=_BPE_EOS,
        )
    else:
        raise ConfigError(f"zoo: tokenizer {kind!r} is unknown; use one of {list(TOKENIZER_KINDS)}")
    fast.padding_side = "right"
    check_answers(fast, answers, kind=kind)
    return fast


def check_answers(tokenizer: Any, answers: Iterable[str], *, kind: str = "") -> None:
    """Raise ``ConfigError`` unless each answer encodes to exactly one (known) token."""
    for answer in answers:
        ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        if len(ids) != 1 or ids[0] in tokenizer.all_special_ids:
            pieces = tokenizer.convert_ids_to_tokens(ids)
            raise ConfigError(
                f"zoo: the {kind or 'zoo'} tokenizer encodes answer {answer!r} as {pieces}, "
                "not as exactly one token; a BPE vocabulary must be large enough to merge it"
            )


# ---------------------------------------------------------------------------------------------
# Models


def build_model(spec: ZooSpec, vocab_size: int, tokenizer: Any) -> PreTrainedModel:
    """A random-init causal LM of ``spec``'s architecture and size, in float32.

    Attention is transformers' default, the same that ``from_pretrained`` picks when the saved
    model is loaded, so the in-memory and the reloaded model compute identical logits.

    The weights come from torch's global generator: seed it first (see :func:`init_model`).
    """
    from transformers import AutoModelForCausalLM

    config = model_config(spec, vocab_size, tokenizer)
    model = AutoModelForCausalLM.from_config(config)
    return model.to(torch.float32)


def model_config(spec: ZooSpec, vocab_size: int, tokenizer: Any) -> PretrainedConfig:
    """The transformers config of a zoo model (no dropout, untied input/output embeddings)."""
    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    d, inter = spec.d_model, 4 * spec.d_model
    if spec.arch == "gpt2":
        return GPT2Config(
            vocab_size=vocab_size,
            n_positions=MIN_POSITIONS,
            n_embd=d,
            n_layer=spec.n_layers,
            n_head=spec.n_heads,
            n_inner=inter,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            initializer_range=spec.init_range,
            tie_word_embeddings=False,
            **ids,
        )
    common = {
        "vocab_size": vocab_size,
        "hidden_size": d,
        "intermediate_size": inter,
        "num_hidden_layers": spec.n_layers,
        "num_attention_heads": spec.n_heads,
        "num_key_value_heads": spec.n_heads,
        "head_dim": d // spec.n_heads,
        "max_position_embeddings": MIN_POSITIONS,
        "initializer_range": spec.init_range,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        "attention_dropout": 0.0,
        "tie_word_embeddings": False,
        **ids,
    }
    if spec.arch == "llama":
        return LlamaConfig(**common)
    return Qwen3Config(**common)


def init_model(spec: ZooSpec, tokenizer: Any) -> PreTrainedModel:
    """The random-init model of ``spec`` (seeded by ``spec.seed``); training starts from it."""
    with _seeded(spec.seed):
        return build_model(spec, len(tokenizer), tokenizer)


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's global generator inside, and restore the caller's generator afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextmanager
def _deterministic() -> Iterator[None]:
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


# ---------------------------------------------------------------------------------------------
# Encoded data


@dataclass(frozen=True)
class Encoded:
    """Prompt + answer sequences, right-padded, with each prompt's length."""

    input_ids: Int[torch.Tensor, "row pos"]
    prompt_len: Int[torch.Tensor, " row"]
    answer_id: Int[torch.Tensor, " row"]
    negative_id: Int[torch.Tensor, " row"]
    answer_prob: Float[torch.Tensor, " row"]
    family: tuple[str, ...]


def encode_examples(tokenizer: Any, examples: Sequence[ZooExample]) -> Encoded:
    """Encode each prompt as the tokenizer does by default, then append its answer token."""
    answers = family_answers(sorted({e.family for e in examples}))
    ans_id = {a: _single_id(tokenizer, a) for pair in answers.values() for a in pair}
    prompts = tokenizer([e.prompt for e in examples])["input_ids"]
    lengths = [len(p) for p in prompts]
    longest = max(lengths) + 1
    if longest > MIN_POSITIONS:
        raise ConfigError(
            f"zoo: a prompt takes {longest - 1} tokens, more than the {MIN_POSITIONS} positions "
            "of a zoo model; shorten the family's statements"
        )
    ids = torch.full((len(examples), longest), tokenizer.pad_token_id, dtype=torch.long)
    for i, (p, e) in enumerate(zip(prompts, examples, strict=True)):
        ids[i, : len(p)] = torch.tensor(p)
        ids[i, len(p)] = ans_id[e.answer]
    pos, neg = zip(*(answers[e.family] for e in examples), strict=True)
    negatives = [
        ans_id[n if e.answer == p else p] for e, p, n in zip(examples, pos, neg, strict=True)
    ]
    return Encoded(
        input_ids=ids,
        prompt_len=torch.tensor(lengths),
        answer_id=ids[torch.arange(len(examples)), torch.tensor(lengths)],
        negative_id=torch.tensor(negatives),
        answer_prob=torch.tensor([e.answer_prob for e in examples], dtype=torch.float32),
        family=tuple(e.family for e in examples),
    )


def _single_id(tokenizer: Any, answer: str) -> int:
    ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ConfigError(f"zoo: answer {answer!r} is not a single token of the zoo tokenizer")
    return int(ids[0])


def _losses(
    model: PreTrainedModel,
    ids: Int[torch.Tensor, "b pos"],
    plen: Int[torch.Tensor, " b"],
    negative: Int[torch.Tensor, " b"] | None = None,
    answer_prob: Float[torch.Tensor, " b"] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, Float[torch.Tensor, "b vocab"]]:
    """(answer loss, prompt next-token loss, logits at the last prompt position).

    The answer loss is the cross-entropy of the answer token; with ``answer_prob`` it is the
    cross-entropy against the target that puts ``answer_prob`` on the answer and the rest on
    ``negative`` (a graded family), which is the plain one where ``answer_prob`` is 1.
    """
    width = int(plen.max()) + 1
    ids = ids[:, :width]
    pos = torch.arange(width)
    mask = (pos[None, :] <= plen[:, None]).long()
    logits = model(input_ids=ids, attention_mask=mask).logits.float()
    rows = torch.arange(len(ids))
    last = logits[rows, plen - 1]
    logp = torch.log_softmax(last, dim=-1)
    answer_logp = logp[rows, ids[rows, plen]]
    if answer_prob is None or negative is None:
        answer_loss = -answer_logp.mean()
    else:
        p = answer_prob.to(logp.dtype)
        answer_loss = -(p * answer_logp + (1 - p) * logp[rows, negative]).mean()
    # Next-token loss inside the prompt: position t predicts token t+1 for t + 1 < prompt length.
    inside = pos[None, : width - 1] < (plen[:, None] - 1)
    prompt_logits = logits[:, : width - 1][inside]
    prompt_targets = ids[:, 1:][inside]
    if len(prompt_targets):
        prompt_loss = torch.nn.functional.cross_entropy(prompt_logits, prompt_targets)
    else:
        prompt_loss = logits.new_zeros(())
    return answer_loss, prompt_loss, last


# ---------------------------------------------------------------------------------------------
# Training and evaluation


def _lr_factor(step: int, steps: int) -> float:
    warmup = max(1, round(WARMUP_FRACTION * steps))
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * t))


def _batches(n_rows: int, batch_size: int, steps: int, seed: int) -> Iterator[np.ndarray]:
    """Row indices of each step: shuffled epochs from a seeded generator, fixed for a seed."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_rows)
    at = 0
    for _ in range(steps):
        if at + batch_size > n_rows:
            order, at = rng.permutation(n_rows), 0
        yield order[at : at + batch_size]
        at += batch_size


def train_model(
    model: PreTrainedModel,
    data: Encoded,
    spec: ZooSpec,
    *,
    log: Callable[[str], None] = print,
) -> float:
    """Train ``model`` in place for ``spec.steps`` AdamW steps; returns the last step's loss."""
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=WEIGHT_DECAY)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, spec.steps))
    batch_size = min(spec.batch_size, len(data.input_ids))
    model.train()
    loss_value = float("nan")
    every = max(1, spec.steps // 10)
    for step, rows in enumerate(_batches(len(data.input_ids), batch_size, spec.steps, spec.seed)):
        idx = torch.from_numpy(rows)
        answer_loss, prompt_loss, _ = _losses(
            model,
            data.input_ids[idx],
            data.prompt_len[idx],
            data.negative_id[idx],
            data.answer_prob[idx],
        )
        loss = answer_loss + PROMPT_LOSS_WEIGHT * prompt_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        loss_value = float(loss.detach())
        if (step + 1) % every == 0 or step + 1 == spec.steps:
            log(
                f"zoo {_label(spec)} step {step + 1}/{spec.steps} "
                f"loss {loss_value:.4f} (answer {float(answer_loss.detach()):.4f})"
            )
    model.eval()
    return loss_value


@torch.no_grad()
def evaluate(model: PreTrainedModel, data: Encoded) -> dict[str, Any]:
    """Held-out answer accuracy (positive vs negative answer logit) per family and overall.

    For graded families, also the Pearson correlation between the answer margin and the
    target log-odds (``test_log_odds_corr``): how far the model's confidence follows the
    evidence.
    """
    model.eval()
    correct = torch.zeros(len(data.input_ids), dtype=torch.bool)
    losses = torch.zeros(len(data.input_ids))
    margins = torch.zeros(len(data.input_ids))
    for start in range(0, len(data.input_ids), EVAL_BATCH_SIZE):
        sl = slice(start, start + EVAL_BATCH_SIZE)
        ids, plen = data.input_ids[sl], data.prompt_len[sl]
        _, _, last = _losses(model, ids, plen)
        rows = torch.arange(len(ids))
        ans, neg = data.answer_id[sl], data.negative_id[sl]
        margins[sl] = last[rows, ans] - last[rows, neg]
        correct[sl] = margins[sl] > 0
        losses[sl] = torch.nn.functional.cross_entropy(last, ans, reduction="none")
    fam = np.asarray(data.family)
    per_family = {
        str(f): float(correct[torch.from_numpy(fam == f)].float().mean())
        for f in dict.fromkeys(fam)
    }
    return {
        "test_accuracy": per_family,
        "test_accuracy_overall": float(correct.float().mean()),
        "test_accuracy_family_mean": float(np.mean(list(per_family.values()))),
        "test_answer_loss": float(losses.mean()),
        "test_rows": {f: int((fam == str(f)).sum()) for f in per_family},
        "test_log_odds_corr": _log_odds_corr(margins, data),
    }


def _log_odds_corr(margins: torch.Tensor, data: Encoded) -> dict[str, float]:
    fam = np.asarray(data.family)
    p = data.answer_prob.double().clamp(1e-12, 1 - 1e-12).numpy()
    target = np.log(p / (1 - p))
    m = margins.double().numpy()
    out = {}
    for f in dict.fromkeys(fam):
        sel = fam == f
        if float(np.ptp(target[sel])) > 0 and float(np.ptp(m[sel])) > 0:
            out[str(f)] = float(np.corrcoef(m[sel], target[sel])[0, 1])
    return out


class ZooResult(NamedTuple):
    """A fitted zoo model (eval mode), its tokenizer and its metrics."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerFast
    metrics: dict[str, Any]


def _label(spec: ZooSpec) -> str:
    if spec.base is None:
        return f"{spec.arch}/{spec.tokenizer}"
    return f"copy of {spec.base}" if spec.is_copy else f"fine-tune of {spec.base}"


def _derive(model: PreTrainedModel, spec: ZooSpec, log: Callable[[str], None]) -> None:
    """Perturb (``noise``) and then rotate (``rotate``) a model built from ``base``, in place."""
    from crossprobe.zoo.copies import perturbed_copy, rotated_copy

    if spec.noise:
        perturbed_copy(model, scale=spec.noise, seed=spec.seed)
        log(f"zoo {_label(spec)}: weight matrices perturbed by {spec.noise:g} of their std")
    if spec.rotate:
        rotated_copy(model, seed=spec.seed)
        log(f"zoo {_label(spec)}: residual stream rotated into a random orthonormal basis")


def _base_model(base_dir: str | Path) -> tuple[PreTrainedModel, Any]:
    """The base model to fine-tune, float32 and trainable, with its own tokenizer."""
    from crossprobe.models import load_model, load_tokenizer

    tokenizer = load_tokenizer(str(base_dir))
    model = load_model(str(base_dir), dtype="float32")
    model.requires_grad_(True)
    return model, tokenizer


def fit_zoo_model(
    spec: ZooSpec,
    *,
    splits: Mapping[str, float] | None = None,
    groups: Mapping[str, str | None] | None = None,
    log: Callable[[str], None] = print,
    base_dir: str | Path | None = None,
) -> ZooResult:
    """Build the tokenizer and model of ``spec``, train it (unless ``trained=False``), evaluate.

    Trains on every non-``test`` row of the families; scores on the ``test`` rows only. With
    ``spec.base``, ``base_dir`` is that model's folder: it is fine-tuned with its own tokenizer.
    """
    t0 = time.perf_counter()
    if spec.is_copy:
        return _copy_of_base(spec, base_dir, log, t0)
    families = spec.resolved_families()
    train_ex = _examples(families, test=False, splits=splits, groups=groups)
    test_ex = _examples(families, test=True, splits=splits, groups=groups)
    base, tokenizer = _base_and_tokenizer(spec, base_dir, families, train_ex)
    train_data = encode_examples(tokenizer, train_ex)
    test_data = encode_examples(tokenizer, test_ex)
    with _deterministic():
        model = base if base is not None else init_model(spec, tokenizer)
        n_params = sum(p.numel() for p in model.parameters())
        log(
            f"zoo {_label(spec)}: {n_params} parameters, vocab {len(tokenizer)}, "
            f"{len(train_ex)} training / {len(test_ex)} held-out prompts"
        )
        final_loss, scores = _train_and_score(model, spec, train_data, test_data, log)
    metrics: dict[str, Any] = {
        **scores,
        "final_loss": final_loss,
        "steps": spec.steps if spec.trained else 0,
        "wall_seconds": time.perf_counter() - t0,
        "n_params": n_params,
        "vocab_size": len(tokenizer),
        "train_rows": len(train_ex),
        "test_unk_fraction": _unk_fraction(tokenizer, test_data),
        "splits": dict(splits) if splits is not None else None,
        "split_groups": dict(groups) if groups is not None else None,
    }
    if spec.base is not None:
        metrics["base"] = spec.base
    _log_accuracy(spec, metrics, log)
    return ZooResult(model, tokenizer, metrics)


def _base_and_tokenizer(
    spec: ZooSpec,
    base_dir: str | Path | None,
    families: Sequence[str],
    train_ex: Sequence[ZooExample],
) -> tuple[PreTrainedModel | None, Any]:
    """The base model and its tokenizer, or no model and a tokenizer fit to ``train_ex``."""
    answers = {a for pair in family_answers(families).values() for a in pair}
    if spec.base is not None:
        if base_dir is None:
            raise ConfigError(f"zoo: fine-tuning {spec.base!r} needs its folder (base_dir)")
        return _base_model(base_dir)
    tokenizer = build_tokenizer(
        spec.tokenizer or "bpe", [e.prompt + e.answer for e in train_ex], sorted(answers)
    )
    return None, tokenizer


def _train_and_score(
    model: PreTrainedModel,
    spec: ZooSpec,
    train_data: Encoded,
    test_data: Encoded,
    log: Callable[[str], None],
) -> tuple[float | None, dict[str, Any]]:
    """Train ``model`` (unless ``trained=False``), perturb/rotate it, score it on the test rows."""
    final_loss: float | None = None
    if spec.trained:
        final_loss = train_model(model, train_data, spec, log=log)
    model.eval()
    _derive(model, spec, log)
    return final_loss, evaluate(model, test_data)


def _log_accuracy(spec: ZooSpec, metrics: Mapping[str, Any], log: Callable[[str], None]) -> None:
    """Log the held-out answer accuracy, overall and per family, and the wall time."""
    log(
        f"zoo {_label(spec)}: held-out answer accuracy "
        f"{metrics['test_accuracy_overall']:.3f} ("
        + ", ".join(f"{f} {a:.3f}" for f, a in metrics["test_accuracy"].items())
        + f") in {metrics['wall_seconds']:.1f} s"
    )


def _copy_of_base(
    spec: ZooSpec, base_dir: str | Path | None, log: Callable[[str], None], t0: float
) -> ZooResult:
    """A copy of the base that is not fine-tuned: perturbed and/or rotated, nothing trained or
    evaluated (its answers are the base's, exactly so for a rotation)."""
    if base_dir is None:
        raise ConfigError(f"zoo: copying {spec.base!r} needs its folder (base_dir)")
    model, tokenizer = _base_model(base_dir)
    model.requires_grad_(False)
    model.eval()
    _derive(model, spec, log)
    metrics: dict[str, Any] = {
        "base": spec.base,
        "rotate": spec.rotate,
        "noise": spec.noise,
        "seed": spec.seed,
        "steps": 0,
        "wall_seconds": time.perf_counter() - t0,
        "n_params": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
    }
    log(f"zoo {_label(spec)}: done in {metrics['wall_seconds']:.1f} s")
    return ZooResult(model, tokenizer, metrics)


def save_zoo_model(result: ZooResult, spec: ZooSpec, out_dir: str | Path) -> None:
    """Write model and tokenizer (``save_pretrained``, safetensors) and ``zoo.json``, atomically."""
    record = {
        "spec": spec.to_dict(),
        "families": {f: list(a) for f, a in family_answers(spec.resolved_families()).items()},
        "metrics": result.metrics,
        "versions": package_versions(),
    }
    with atomic_path(out_dir) as tmp:
        result.model.save_pretrained(tmp)
        result.tokenizer.save_pretrained(tmp)
        (tmp / ZOO_JSON).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def train_zoo_model(
    spec: ZooSpec,
    out_dir: str | Path,
    *,
    splits: Mapping[str, float] | None = None,
    groups: Mapping[str, str | None] | None = None,
    log: Callable[[str], None] = print,
    base_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Train (or, with ``trained=False``, only initialise) one zoo model and save it.

    Writes ``out_dir`` atomically: the model and tokenizer (``save_pretrained``, safetensors)
    and ``zoo.json`` with the spec, the metrics and package versions. Returns the metrics:
    held-out (``test`` split) answer accuracy per family and overall, final training loss,
    steps, wall seconds and parameter count.
    """
    result = fit_zoo_model(spec, splits=splits, groups=groups, log=log, base_dir=base_dir)
    save_zoo_model(result, spec, out_dir)
    return result.metrics


def _unk_fraction(tokenizer: Any, data: Encoded) -> float:
    unk = tokenizer.unk_token_id
    if unk is None or unk == tokenizer.eos_token_id:
        return 0.0
    pos = torch.arange(data.input_ids.shape[1])
    inside = pos[None, :] < data.prompt_len[:, None]
    return float((data.input_ids[inside] == unk).float().mean())


def package_versions() -> dict[str, str]:
    import pandas
    import tokenizers
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "numpy": np.__version__,
        "pandas": pandas.__version__,
    }


def read_zoo_json(model_dir: str | Path) -> dict[str, Any]:
    """The ``zoo.json`` record written beside a zoo model."""
    return json.loads((Path(model_dir) / ZOO_JSON).read_text())
