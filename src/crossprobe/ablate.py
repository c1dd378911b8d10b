"""Directional ablation and its effect on the answer-token margin.

Ablating unit vector ``u`` at layer ℓ replaces the block output ``x`` by ``x − (x·u)u`` at every
token position (scope ``layer``), or at ℓ and every later block (scope ``from_layer``). The
token margin is ``logit(pos) − logit(neg)`` at the last prompt token, in float32, and the effect
of a direction on a prompt is ``Δm = m_ablated − m_clean``.

Many directions share one forward pass: the prompt batch is repeated ``K`` times and copy ``k``
is ablated along direction ``k``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Float, Int
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from crossprobe.models import (
    block_output_tensor,
    decoder_blocks,
    hidden_size,
    last_token_index,
    replace_block_output,
)

Scope = Literal["layer", "from_layer"]

# Rows (directions × prompts) in one forward pass, as a multiple of the prompt batch size.
ROWS_PER_BATCH_FACTOR = 8


def unit_directions(
    directions: Float[np.ndarray, "k d"] | Float[torch.Tensor, "k d"],
) -> Float[torch.Tensor, "k d"]:
    """``directions`` as float32 unit rows; a zero row stays zero."""
    u = torch.as_tensor(np.asarray(directions) if not torch.is_tensor(directions) else directions)
    u = u.detach().to(device="cpu", dtype=torch.float32)
    if u.ndim != 2 or u.shape[0] == 0:
        raise ValueError(f"directions must be [k, d_model] with k >= 1, got shape {tuple(u.shape)}")
    if not bool(torch.isfinite(u).all()):
        raise ValueError(f"directions of shape {tuple(u.shape)} contain NaN or inf")
    norm = u.norm(dim=1, keepdim=True)
    return torch.where(norm > 0, u / torch.where(norm > 0, norm, 1.0), torch.zeros_like(u))


def _ablation_hook(u: Float[torch.Tensor, "k d"]):
    k, d = u.shape
    cache: dict[torch.device, torch.Tensor] = {}

    def hook(module: torch.nn.Module, args: Any, output: Any) -> Any:
        x = block_output_tensor(output)
        if x.ndim != 3 or x.shape[-1] != d or x.shape[0] % k != 0:
            raise ValueError(
                f"block output of shape {tuple(x.shape)} does not fit {k} directions of width "
                f"{d}: expected [{k}·batch, seq, {d}]"
            )
        if x.device not in cache:
            cache[x.device] = u.to(x.device)
        uk = cache[x.device]
        x32 = x.to(torch.float32).reshape(k, x.shape[0] // k, x.shape[1], d)
        proj = torch.einsum("kbtd,kd->kbt", x32, uk)
        new = (x32 - proj.unsqueeze(-1) * uk[:, None, None, :]).reshape(x.shape).to(x.dtype)
        return replace_block_output(output, new)

    return hook


@contextmanager
def directional_ablation(
    model: PreTrainedModel,
    layer: int,
    directions: Float[np.ndarray, "k d_model"] | Float[torch.Tensor, "k d_model"],
    *,
    scope: Scope = "layer",
) -> Iterator[None]:
    """Ablate ``directions[k]`` from copy ``k`` of a ``[K·B, T, d]`` batch at block ``layer``.

    Directions are normalised to unit length inside; a zero direction leaves its copy unchanged.
    Run the model on the prompt batch repeated ``K`` times (``batch.repeat(K, 1)``) inside the
    context. The hooks are removed on exit, even on error.
    """
    blocks = decoder_blocks(model)
    n = len(blocks)
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 0 <= layer < n:
        raise ValueError(f"layer {layer!r} is out of range for a model with {n} blocks")
    if scope == "layer":
        chosen = [blocks[int(layer)]]
    elif scope == "from_layer":
        chosen = list(blocks[int(layer) :])
    else:
        raise ValueError(f"unknown ablation scope {scope!r}: use 'layer' or 'from_layer'")
    hook = _ablation_hook(unit_directions(directions))
    with _first_forward_hooks((b, hook) for b in chosen):
        yield


@contextmanager
def _first_forward_hooks(
    pairs: Iterable[tuple[torch.nn.Module, Callable[..., Any]]],
) -> Iterator[None]:
    """Like :func:`crossprobe.models.forward_hooks`, but each hook runs before those already there.

    transformers 5 records ``output_hidden_states`` with forward hooks that it installs on the
    blocks at the first such call and keeps; an ablation hook appended after them would leave the
    recorded ``hidden_states[ℓ + 1]`` unablated while the rest of the model sees the ablated one.
    """
    handles = []
    try:
        for module, hook in pairs:
            handles.append(module.register_forward_hook(hook, prepend=True))
        yield
    finally:
        for h in handles:
            h.remove()


def margin_from_logits(
    logits: Float[torch.Tensor, "batch seq vocab"],
    last_idx: Int[torch.Tensor, " batch"],
    answer_ids: tuple[int, int],
) -> Float[torch.Tensor, " batch"]:
    """``logit(pos) − logit(neg)`` at each row's ``last_idx``, in float32."""
    if logits.ndim != 3 or last_idx.shape != (logits.shape[0],):
        raise ValueError(
            f"logits {tuple(logits.shape)} and last index {tuple(last_idx.shape)} do not fit: "
            "expected [batch, seq, vocab] and [batch]"
        )
    pos, neg = answer_ids
    rows = torch.arange(logits.shape[0], device=logits.device)
    at = logits[rows, last_idx.to(logits.device)]
    return at[:, pos].to(torch.float32) - at[:, neg].to(torch.float32)


@contextmanager
def _right_padding(tokenizer: PreTrainedTokenizerBase) -> Iterator[None]:
    """Pad on the right (with eos or unk if there is no pad token); restore on exit."""
    side, pad = tokenizer.padding_side, tokenizer.pad_token
    tokenizer.padding_side = "right"
    if pad is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ValueError("the tokenizer has no pad, eos or unk token to pad batches with")
        tokenizer.pad_token = fallback
    try:
        yield
    finally:
        tokenizer.padding_side = side
        if pad is None:
            tokenizer.pad_token = None


def _encode(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    with _right_padding(tokenizer):
        enc = tokenizer(list(prompts), return_tensors="pt", padding=True)
    return enc["input_ids"].to(device), enc["attention_mask"].to(device)


def _last_logits(
    model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> Float[torch.Tensor, "batch vocab"]:
    """Logits at each row's last prompt token (from the mask).

    The output head sees only the last-position hidden states, so the full
    ``[batch, seq, vocab]`` logits are never built.
    """
    last = last_token_index(attention_mask)
    head = model.get_output_embeddings()
    if head is None:
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
        return logits[torch.arange(len(last), device=logits.device), last.to(logits.device)]

    def gather_last(module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        h = args[0]
        if h.ndim != 3 or h.shape[:2] != input_ids.shape:
            raise ValueError(
                f"output head input of shape {tuple(h.shape)} does not match the batch "
                f"{tuple(input_ids.shape)}"
            )
        idx = last.to(h.device)
        return (h[torch.arange(h.shape[0], device=h.device), idx].unsqueeze(1), *args[1:])

    handle = head.register_forward_pre_hook(gather_last)
    try:
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    finally:
        handle.remove()
    return logits[:, -1]


def _check_answers(model: PreTrainedModel, answer_ids: tuple[int, int]) -> tuple[int, int]:
    if len(answer_ids) != 2:
        raise ValueError(f"answer_ids must be a (positive, negative) pair, got {answer_ids!r}")
    vocab = model.get_input_embeddings().weight.shape[0]
    head = model.get_output_embeddings()
    if head is not None and getattr(head, "weight", None) is not None:
        vocab = head.weight.shape[0]
    pos, neg = (int(a) for a in answer_ids)
    if not (0 <= pos < vocab and 0 <= neg < vocab):
        raise ValueError(f"answer ids {answer_ids!r} are outside the vocabulary of size {vocab}")
    return pos, neg


def _check_prompts(prompts: Sequence[str], batch_size: int) -> list[str]:
    if isinstance(prompts, str):
        raise ValueError("prompts must be a sequence of strings, not one string")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return list(prompts)


def token_margins(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    answer_ids: tuple[int, int],
    *,
    batch_size: int = 32,
) -> Float[np.ndarray, " prompt"]:
    """Clean margin ``logit(pos) − logit(neg)`` at each prompt's last token, float32."""
    prompts = _check_prompts(prompts, batch_size)
    answers = _check_answers(model, answer_ids)
    out = np.empty(len(prompts), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            ids, mask = _encode(tokenizer, prompts[start : start + batch_size], model.device)
            logits = _last_logits(model, ids, mask).unsqueeze(1)
            zero = torch.zeros(len(ids), dtype=torch.long, device=logits.device)
            out[start : start + len(ids)] = margin_from_logits(logits, zero, answers).cpu().numpy()
    return out


def ablation_effects(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    answer_ids: tuple[int, int],
    layer: int,
    directions: Float[np.ndarray, "k d_model"] | Float[torch.Tensor, "k d_model"],
    *,
    scope: Scope = "layer",
    batch_size: int = 32,
    clean: Float[np.ndarray, " prompt"] | None = None,
) -> Float[np.ndarray, "k prompt"]:
    """``Δm[k, i] = m_ablated(directions[k])[i] − m_clean[i]``, float32.

    Each forward pass holds at most ``batch_size · 8`` rows (directions × prompts).
    ``clean`` reuses margins from :func:`token_margins` on the same prompts.
    """
    prompts = _check_prompts(prompts, batch_size)
    answers = _check_answers(model, answer_ids)
    u = unit_directions(directions)
    d_model = hidden_size(model.config)
    if u.shape[1] != d_model:
        raise ValueError(
            f"directions of shape {tuple(u.shape)} do not fit the model's residual width "
            f"{d_model}: expected [k, {d_model}]"
        )
    if clean is None:
        clean = token_margins(model, tokenizer, prompts, answers, batch_size=batch_size)
    clean = np.asarray(clean, dtype=np.float32)
    if clean.shape != (len(prompts),):
        raise ValueError(
            f"clean margins of shape {clean.shape} do not match {len(prompts)} prompts"
        )
    # A zero direction ablates nothing: its effect is exactly 0 and it needs no forward pass
    # (a pass with another batch shape can differ from the clean one by float rounding).
    live = torch.nonzero(u.abs().sum(1) > 0).flatten()
    u_live = u[live]
    k_total = u_live.shape[0]
    max_rows = batch_size * ROWS_PER_BATCH_FACTOR
    ablated = np.empty((k_total, len(prompts)), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            ids, mask = _encode(tokenizer, prompts[start : start + batch_size], model.device)
            n = len(ids)
            group = max(1, max_rows // n)
            for k0 in range(0, k_total, group):
                uk = u_live[k0 : k0 + group]
                kk = uk.shape[0]
                with directional_ablation(model, layer, uk, scope=scope):
                    logits = _last_logits(model, ids.repeat(kk, 1), mask.repeat(kk, 1))
                zero = torch.zeros(kk * n, dtype=torch.long, device=logits.device)
                m = margin_from_logits(logits.unsqueeze(1), zero, answers)
                ablated[k0 : k0 + kk, start : start + n] = m.reshape(kk, n).cpu().numpy()
    effects = np.zeros((u.shape[0], len(prompts)), dtype=np.float32)
    effects[live.numpy()] = ablated - clean[None, :]
    return effects


def random_directions(d_model: int, k: int, *, seed: int) -> Float[np.ndarray, "k d_model"]:
    """``k`` random unit vectors in ``d_model`` dimensions (Gaussian, then normalised), float32."""
    if d_model < 1 or k < 0:
        raise ValueError(f"random directions need d_model >= 1 and k >= 0, got {d_model}, {k}")
    g = np.random.default_rng(seed).standard_normal((k, d_model))
    return (g / np.linalg.norm(g, axis=1, keepdims=True)).astype(np.float32)
