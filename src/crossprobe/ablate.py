"""Directional ablation and its effect on the answer-token margin.

Ablating unit vector ``u`` at layer ℓ replaces the block output ``x`` by ``x − (x·u)u`` at the
chosen token positions (scope ``layer``), or at ℓ and every later block (scope ``from_layer``). The
token margin is ``logit(pos) − logit(neg)`` at the last prompt token, in float32, and the effect
of a direction on a prompt is ``Δm = m_ablated − m_clean``. The two answer logits are computed
in float32 from the final hidden state (the output head's rows for the two answers), so a
bfloat16 model's margins are not rounded to bfloat16's 8-bit mantissa at the head.

Many directions share one forward pass: the prompt batch is repeated ``K + 1`` times, copy 0
is left unablated and copy ``k`` is ablated along direction ``k``; each ``Δm`` subtracts copy 0
of the same pass, so batch-dependent rounding (bfloat16 on a GPU) cancels.

``positions`` ``skip_first`` leaves the first position and the tokenizer's special tokens out of
the ablation (the attention sinks of real LMs carry norms 100× the median there); ``all``
ablates every position.

The blocks below the ablated layer compute the same thing for every direction, so by default
(``fanout=True``) they run once per prompt batch: a clean pass records block ℓ's output and the
exact arguments the model passes to every later block, and only blocks ℓ+1 … L−1, the final norm
and the output head run on the ``K``-fold batch, with the recorded arguments repeated along the
batch. The replay is checked against the model's own clean logits on the first batch; a model
whose forward pass it does not reproduce falls back to full forward passes with a logged warning.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from crossprobe.models import (
    Positions,
    _text_config,
    block_output_tensor,
    content_positions,
    decoder_blocks,
    hidden_size,
    last_token_index,
    replace_block_output,
    special_token_ids,
)

log = logging.getLogger(__name__)

Scope = Literal["layer", "from_layer"]
Readout = Callable[[torch.Tensor], torch.Tensor]
"""What is read from the answer logits ``[rows, k]`` (float32): one number per row. Without
one, the margin ``logit(pos) − logit(neg)`` of a (positive, negative) pair."""
Edit = Literal["ablate", "add"]
"""What each copy's vector does to the block output: ``ablate`` removes the component along the
unit vector; ``add`` adds the vector as it is (steering)."""

# Rows (directions × prompts) in one forward pass, as a multiple of the prompt batch size.
ROWS_PER_BATCH_FACTOR = 8


def _float_rows(
    rows: Float[np.ndarray, "k d"] | Float[torch.Tensor, "k d"], what: str = "directions"
) -> Float[torch.Tensor, "k d"]:
    """``rows`` as a finite float32 ``[k, d]`` tensor on the CPU (``ValueError`` otherwise)."""
    u = torch.as_tensor(np.asarray(rows) if not torch.is_tensor(rows) else rows)
    u = u.detach().to(device="cpu", dtype=torch.float32)
    if u.ndim != 2 or u.shape[0] == 0:
        raise ValueError(f"{what} must be [k, d_model] with k >= 1, got shape {tuple(u.shape)}")
    if not bool(torch.isfinite(u).all()):
        raise ValueError(f"{what} of shape {tuple(u.shape)} contain NaN or inf")
    return u


def unit_directions(
    directions: Float[np.ndarray, "k d"] | Float[torch.Tensor, "k d"],
) -> Float[torch.Tensor, "k d"]:
    """``directions`` as float32 unit rows; a zero row stays zero."""
    u = _float_rows(directions)
    norm = u.norm(dim=1, keepdim=True)
    return torch.where(norm > 0, u / torch.where(norm > 0, norm, 1.0), torch.zeros_like(u))


def _ablation_hook(
    u: Float[torch.Tensor, "k d"], keep: Bool[torch.Tensor, "b seq"] | None, edit: Edit = "ablate"
):
    k, d = u.shape
    cache: dict[torch.device, torch.Tensor] = {}
    keep_on: dict[torch.device, torch.Tensor] = {}

    def hook(module: torch.nn.Module, args: Any, output: Any) -> Any:
        x = block_output_tensor(output)
        if x.ndim != 3 or x.shape[-1] != d or x.shape[0] % k != 0:
            raise ValueError(
                f"block output of shape {tuple(x.shape)} does not fit {k} directions of width "
                f"{d}: expected [{k}·batch, seq, {d}]"
            )
        if x.device not in cache:
            cache[x.device] = u.to(x.device)
            if keep is not None:
                keep_on[x.device] = keep.to(x.device)
        new = _apply(edit, x, cache[x.device], keep_on.get(x.device))
        return replace_block_output(output, new)

    return hook


def _ablate(
    x: Float[torch.Tensor, "kb seq d"],
    u: Float[torch.Tensor, "k d"],
    keep: Bool[torch.Tensor, "b seq"] | None = None,
) -> Float[torch.Tensor, "kb seq d"]:
    """Copy ``k`` of ``x`` (rows ``k·B … (k+1)·B − 1``) minus its component along ``u[k]``, at
    the positions ``keep`` marks (every position without it)."""
    k, d = u.shape
    x32 = x.to(torch.float32).reshape(k, x.shape[0] // k, x.shape[1], d)
    proj = torch.einsum("kbtd,kd->kbt", x32, u)
    if keep is not None:
        if keep.shape != x32.shape[1:3]:
            raise ValueError(
                f"position mask of shape {tuple(keep.shape)} does not fit a batch of "
                f"{tuple(x32.shape[1:3])} (prompts, positions)"
            )
        proj = proj * keep.to(proj.dtype)
    return (x32 - proj.unsqueeze(-1) * u[:, None, None, :]).reshape(x.shape).to(x.dtype)


def _steer(
    x: Float[torch.Tensor, "kb seq d"],
    v: Float[torch.Tensor, "k d"],
    keep: Bool[torch.Tensor, "b seq"] | None = None,
) -> Float[torch.Tensor, "kb seq d"]:
    """Copy ``k`` of ``x`` plus ``v[k]`` (in float32), at the positions ``keep`` marks."""
    k, d = v.shape
    x32 = x.to(torch.float32).reshape(k, x.shape[0] // k, x.shape[1], d)
    add = v[:, None, None, :].expand_as(x32)
    if keep is not None:
        if keep.shape != x32.shape[1:3]:
            raise ValueError(
                f"position mask of shape {tuple(keep.shape)} does not fit a batch of "
                f"{tuple(x32.shape[1:3])} (prompts, positions)"
            )
        add = add * keep.to(add.dtype)[None, :, :, None]
    return (x32 + add).reshape(x.shape).to(x.dtype)


def _apply(
    edit: Edit,
    x: Float[torch.Tensor, "kb seq d"],
    u: Float[torch.Tensor, "k d"],
    keep: Bool[torch.Tensor, "b seq"] | None,
) -> Float[torch.Tensor, "kb seq d"]:
    if edit == "ablate":
        return _ablate(x, u, keep)
    if edit == "add":
        return _steer(x, u, keep)
    raise ValueError(f"unknown edit {edit!r}: use 'ablate' or 'add'")


def _vectors(
    directions: Float[np.ndarray, "k d"] | Float[torch.Tensor, "k d"], edit: Edit
) -> Float[torch.Tensor, "k d"]:
    """Unit rows for ``ablate``; the vectors as they are (float32) for ``add``."""
    return unit_directions(directions) if edit == "ablate" else _float_rows(directions, "vectors")


@contextmanager
def directional_ablation(
    model: PreTrainedModel,
    layer: int,
    directions: Float[np.ndarray, "k d_model"] | Float[torch.Tensor, "k d_model"],
    *,
    scope: Scope = "layer",
    keep: Bool[torch.Tensor, "b seq"] | None = None,
    edit: Edit = "ablate",
) -> Iterator[None]:
    """Ablate ``directions[k]`` from copy ``k`` of a ``[K·B, T, d]`` batch at block ``layer``.

    Directions are normalised to unit length inside; a zero direction leaves its copy unchanged.
    Run the model on the prompt batch repeated ``K`` times (``batch.repeat(K, 1)``) inside the
    context. ``keep`` (``[B, T]``, from :func:`crossprobe.models.content_positions`) limits the
    ablation to the positions it marks. The hooks are removed on exit, even on error.
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
    hook = _ablation_hook(_vectors(directions, edit), keep, edit)
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


def answer_logits(
    head: torch.nn.Module, h: Float[torch.Tensor, "*rows d"], answers: tuple[int, ...] | None
) -> Float[torch.Tensor, "*rows k"]:
    """The logits of the answers (positive, negative; ``None``: the whole vocabulary) for
    hidden states ``h``, in float32.

    For a linear head only its answer rows are used, in float32 (a bfloat16 model's head
    weights are exact in float32, and the products and sums are then float32's); any other
    head is run as it is and its answer columns are taken.
    """
    idx = slice(None) if answers is None else list(answers)
    if isinstance(head, torch.nn.Linear):
        w = head.weight[idx].to(device=h.device, dtype=torch.float32)
        out = h.to(torch.float32) @ w.T
        if head.bias is not None:
            out = out + head.bias[idx].to(device=h.device, dtype=torch.float32)
        return out
    return head(h)[..., idx].to(torch.float32)


def _last_logits(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    answers: tuple[int, ...] | None,
) -> Float[torch.Tensor, "batch k"]:
    """The answer logits at each row's last prompt token (from the mask), in float32; with
    ``answers`` None, the whole vocabulary's.

    The output head sees only the last-position hidden states and its output is replaced by the
    two answer logits (:func:`answer_logits`) before the model's own post-processing (e.g. a
    final logit soft-cap), so the full ``[batch, seq, vocab]`` logits are never kept.
    """
    last = last_token_index(attention_mask)
    head = model.get_output_embeddings()
    if head is None:
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
        at = logits[torch.arange(len(last), device=logits.device), last.to(logits.device)]
        return (at if answers is None else at[:, list(answers)]).to(torch.float32)

    def gather_last(module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        h = args[0]
        if h.ndim != 3 or h.shape[:2] != input_ids.shape:
            raise ValueError(
                f"output head input of shape {tuple(h.shape)} does not match the batch "
                f"{tuple(input_ids.shape)}"
            )
        idx = last.to(h.device)
        return (h[torch.arange(h.shape[0], device=h.device), idx].unsqueeze(1), *args[1:])

    def two_answers(module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> torch.Tensor:
        if answers is None:  # the whole vocabulary, in float32 also for a bfloat16 model
            return answer_logits(module, args[0], None)
        return answer_logits(module, args[0], answers)

    handles = [
        head.register_forward_pre_hook(gather_last),
        head.register_forward_hook(two_answers),
    ]
    try:
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    finally:
        for handle in handles:
            handle.remove()
    return logits[:, -1].to(torch.float32)


def _rows(module: torch.nn.Module) -> int:
    """Rows of an embedding's or a head's weight: its vocabulary size."""
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    return int(weight.shape[0])


def _check_answers(
    model: PreTrainedModel, answer_ids: Sequence[int], readout: Readout | None = None
) -> tuple[int, ...]:
    """The answer token ids: a (positive, negative) pair for the margin, or with a ``readout``
    any two or more tokens (a rating's digits), each inside the model's vocabulary."""
    if (len(answer_ids) != 2 and readout is None) or len(answer_ids) < 2:
        raise ValueError(f"answer_ids must be a (positive, negative) pair, got {answer_ids!r}")
    vocab = _rows(model.get_input_embeddings())
    head = model.get_output_embeddings()
    if head is not None and isinstance(getattr(head, "weight", None), torch.Tensor):
        vocab = _rows(head)
    ids = tuple(int(a) for a in answer_ids)
    if not all(0 <= a < vocab for a in ids):
        raise ValueError(f"answer ids {answer_ids!r} are outside the vocabulary of size {vocab}")
    return ids


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
    answer_ids: tuple[int, ...],
    *,
    batch_size: int = 32,
    readout: Readout | None = None,
) -> Float[np.ndarray, " prompt"]:
    """Clean margin ``logit(pos) − logit(neg)`` at each prompt's last token (or ``readout`` of
    the answer logits), float32."""
    prompts = _check_prompts(prompts, batch_size)
    answers = _check_answers(model, answer_ids, readout)
    out = np.empty(len(prompts), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            ids, mask = _encode(tokenizer, prompts[start : start + batch_size], model.device)
            logits = _last_logits(model, ids, mask, answers)
            out[start : start + len(ids)] = _margins(logits, readout)
    return out


def last_token_logits(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    batch_size: int = 32,
) -> Iterator[Float[torch.Tensor, "batch vocab"]]:
    """The whole vocabulary's logits (float32) at each prompt's last token, batch by batch,
    after the model's own post-processing (e.g. a logit soft-cap)."""
    prompts = _check_prompts(prompts, batch_size)
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            ids, mask = _encode(tokenizer, prompts[start : start + batch_size], model.device)
            yield _last_logits(model, ids, mask, None)


# ---------------------------------------------------------------------------------------------
# Fan-out: the blocks below the ablated layer run once per prompt batch

# Names of the final norm on the module that holds the decoder blocks.
_FINAL_NORM_NAMES: tuple[str, ...] = ("norm", "ln_f", "final_layer_norm", "final_norm", "norm_f")


def final_norm(model: PreTrainedModel) -> torch.nn.Module | None:
    """The norm applied to the last block's output before the output head, if the model has one.

    It is looked up beside the decoder blocks (``model.model.norm`` for Llama-like models,
    ``transformer.ln_f`` for GPT-2, ``gpt_neox.final_layer_norm`` for GPT-NeoX, the language
    model's ``norm`` inside multimodal wrappers). The fan-out replay is verified against the
    model's own logits, so a wrong guess falls back to full forward passes instead of wrong
    numbers.
    """
    blocks = decoder_blocks(model)
    for module in model.modules():
        if any(child is blocks for child in module.children()):
            for name in _FINAL_NORM_NAMES:
                norm = getattr(module, name, None)
                if isinstance(norm, torch.nn.Module):
                    return norm
            return None
    return None


class _CleanPass(NamedTuple):
    """What one clean pass over a prompt batch leaves for the fan-out."""

    x: Float[torch.Tensor, "batch seq d"]
    """Output of the ablated block."""
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]]
    """Positional and keyword arguments the model passed to each later block."""
    logits: Float[torch.Tensor, "batch 2"]
    """Clean answer logits (positive, negative) at each row's last prompt token, float32."""


class _ReplayError(RuntimeError):
    """The recorded forward pass cannot be replayed for this model."""


def _clean_passes(
    model: PreTrainedModel,
    layers: Sequence[int],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    answers: tuple[int, ...],
) -> dict[int, _CleanPass]:
    """Run the model once, recording the output of each block in ``layers`` and the inputs of
    every block after the shallowest of them: one clean pass serves the fan-out of every layer.
    """
    blocks = decoder_blocks(model)
    first = min(layers)
    outputs: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def record_output(layer: int) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            outputs[layer].append(block_output_tensor(output))

        return hook

    def record_inputs(
        module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        calls.append((tuple(args), dict(kwargs)))

    handles = [blocks[layer].register_forward_hook(record_output(layer)) for layer in outputs]
    try:
        for block in blocks[first + 1 :]:
            handles.append(block.register_forward_pre_hook(record_inputs, with_kwargs=True))
        logits = _last_logits(model, input_ids, attention_mask, answers)
    finally:
        for h in handles:
            h.remove()
    ran = {layer: len(out) for layer, out in outputs.items()}
    if set(ran.values()) != {1} or len(calls) != len(blocks) - first - 1:
        raise _ReplayError(
            f"blocks {sorted(ran)} ran {sorted(ran.values())} times and the "
            f"{len(blocks) - first - 1} blocks after block {first} {len(calls)} times in one "
            "forward pass; expected once each"
        )
    return {
        layer: _CleanPass(out[0], calls[layer - first :], logits) for layer, out in outputs.items()
    }


def _repeat_rows(obj: Any, b: int, k: int, memo: dict[int, Any]) -> Any:
    """``obj`` with every tensor whose leading dimension is the batch ``b`` repeated ``k`` times.

    Tensors shared by the batch (leading dimension 1, e.g. rotary tables) broadcast as they are;
    tuples, lists and dicts are walked. ``memo`` keeps one copy of a tensor shared by blocks.
    """
    if isinstance(obj, torch.Tensor):
        if obj.ndim == 0 or obj.shape[0] != b:
            return obj
        key = id(obj)
        if key not in memo:
            memo[key] = obj.repeat(k, *([1] * (obj.ndim - 1)))
        return memo[key]
    if isinstance(obj, tuple):
        items = [_repeat_rows(o, b, k, memo) for o in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
    if isinstance(obj, list):
        return [_repeat_rows(o, b, k, memo) for o in obj]
    if isinstance(obj, dict):
        return {key: _repeat_rows(v, b, k, memo) for key, v in obj.items()}
    if obj is None or isinstance(obj, (bool, int, float, str, torch.dtype, torch.device)):
        return obj
    if hasattr(obj, "get_seq_length"):  # a key/value cache: the replay cannot share it
        raise _ReplayError(f"a decoder block received a {type(obj).__name__}")
    return obj


def _with_hidden(
    args: tuple[Any, ...], kwargs: dict[str, Any], h: torch.Tensor
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The block's arguments with its input hidden state replaced by ``h``."""
    if args and isinstance(args[0], torch.Tensor):
        return (h, *args[1:]), kwargs
    if isinstance(kwargs.get("hidden_states"), torch.Tensor):
        return args, {**kwargs, "hidden_states": h}
    raise _ReplayError("cannot find the hidden state among a decoder block's arguments")


def _logit_softcap(model: PreTrainedModel) -> float | None:
    cap = getattr(_text_config(model.config), "final_logit_softcapping", None)
    return float(cap) if cap else None


def _replay(
    model: PreTrainedModel,
    layer: int,
    rec: _CleanPass,
    last: Int[torch.Tensor, " batch"],
    u: Float[torch.Tensor, "k d"],
    scope: Scope,
    norm: torch.nn.Module | None,
    answers: tuple[int, ...],
    keep: Bool[torch.Tensor, "b seq"] | None = None,
    edit: Edit = "ablate",
) -> Float[torch.Tensor, "kb 2"]:
    """Last-token answer logits (float32) of the ``K``-fold batch, copy ``k`` ablated by ``u[k]``.

    Only blocks ``layer + 1 …`` run, each with the arguments the model gave it in the clean
    pass, repeated along the batch.
    """
    blocks = decoder_blocks(model)
    head = model.get_output_embeddings()
    if head is None:
        raise _ReplayError("the model has no output embedding module")
    k, b = u.shape[0], rec.x.shape[0]
    u = u.to(rec.x.device)
    keep = None if keep is None else keep.to(rec.x.device)
    h = _apply(edit, rec.x.repeat(k, 1, 1), u, keep)
    memo: dict[int, Any] = {}
    for block, (args, kwargs) in zip(blocks[layer + 1 :], rec.calls, strict=True):
        args, kwargs = _with_hidden(
            _repeat_rows(args, b, k, memo), _repeat_rows(kwargs, b, k, memo), h
        )
        h = block_output_tensor(block(*args, **kwargs))
        if h.device != u.device:
            u = u.to(h.device)
            keep = None if keep is None else keep.to(h.device)
        if scope == "from_layer":
            h = _apply(edit, h, u, keep)
    rows = torch.arange(h.shape[0], device=h.device)
    h = h[rows, last.to(h.device).repeat(k)].unsqueeze(1)
    if norm is not None:
        h = norm(h)
    logits = answer_logits(head, h, answers)[:, -1]
    cap = _logit_softcap(model)
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    return logits


def _replay_matches(
    model: PreTrainedModel,
    layer: int,
    rec: _CleanPass,
    last: torch.Tensor,
    norm: torch.nn.Module | None,
    answers: tuple[int, ...],
) -> str | None:
    """``None`` if an unablated two-fold replay gives the clean logits, else why not."""
    zero = torch.zeros(2, rec.x.shape[-1], dtype=torch.float32)
    try:
        got = _replay(model, layer, rec, last, zero, "from_layer", norm, answers)
    except Exception as e:  # noqa: BLE001 - any failure means: use full forward passes
        return f"{type(e).__name__}: {e}"
    want = rec.logits.repeat(2, 1)
    if got.shape != want.shape:
        return f"replayed logits have shape {tuple(got.shape)}, expected {tuple(want.shape)}"
    tol = 1e-3 if rec.x.dtype == torch.float32 else 5e-2
    err = float((got - want).abs().max())
    scale = max(1.0, float(want.abs().max()))
    if not err <= tol * scale:
        return f"replayed logits differ from the model's by up to {err:.3g} (scale {scale:.3g})"
    return None


# ---------------------------------------------------------------------------------------------
# Effects


def _margins(
    logits: Float[torch.Tensor, "rows k"], readout: Readout | None = None
) -> Float[np.ndarray, " rows"]:
    """Margins from answer logits (positive, negative), or ``readout`` of the answer logits,
    float32."""
    if readout is not None:
        return readout(logits.to(torch.float32)).to(torch.float32).cpu().numpy()
    return (logits[:, 0] - logits[:, 1]).to(torch.float32).cpu().numpy()


class LayerEffects(NamedTuple):
    """Effects of directions ablated at several layers, over the same prompts."""

    clean: Float[np.ndarray, " prompt"]
    """Clean margins (from the shared clean pass, or as given)."""
    effects: dict[int, Float[np.ndarray, "k prompt"]]
    """``Δm[k, i]`` per layer, for that layer's directions."""


def ablation_effects(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    answer_ids: tuple[int, int],
    layer: int,
    directions: Float[np.ndarray, "k d_model"] | Float[torch.Tensor, "k d_model"],
    *,
    scope: Scope = "layer",
    positions: Positions = "all",
    batch_size: int = 32,
    clean: Float[np.ndarray, " prompt"] | None = None,
    fanout: bool = True,
    progress: bool = False,
    desc: str = "",
) -> Float[np.ndarray, "k prompt"]:
    """``Δm[k, i] = m_ablated(directions[k])[i] − m_clean[i]``, float32.

    The clean reference is an unablated copy of the prompts inside every forward pass that
    computes ablated copies, so rounding that depends on the batch (bfloat16 matrix products on
    a GPU) is the same for both and cancels: a zero direction's effect is exactly 0.
    ``positions`` picks the token positions the ablation touches
    (:func:`crossprobe.models.content_positions`). Each forward pass holds at most
    ``batch_size · 8`` rows (copies × prompts); on an out-of-memory error the batch size is
    halved and the effects are computed again. ``clean`` is returned as the clean margins of
    :func:`ablation_effects_by_layer` instead of computing them; the effects never use it.

    With ``fanout`` (the default) the blocks up to ``layer`` run once per prompt batch and only
    the later blocks run once per direction (see the module docstring); ``fanout=False`` runs
    the whole model for every direction. Both give the same effects up to float rounding.
    ``progress`` writes a progress bar (prompts done, directions in ``desc``) to stderr, which
    a workflow job sends to its log. :func:`ablation_effects_by_layer` does several layers at
    once, with one clean pass per prompt batch for all of them.
    """
    return ablation_effects_by_layer(
        model,
        tokenizer,
        prompts,
        answer_ids,
        {layer: directions},
        scope=scope,
        positions=positions,
        batch_size=batch_size,
        clean=clean,
        fanout=fanout,
        progress=progress,
        desc=desc,
    ).effects[int(layer)]


def _unit_by_layer(
    directions: Mapping[int, Float[np.ndarray, "k d_model"] | Float[torch.Tensor, "k d_model"]],
    n_blocks: int,
    d_model: int,
    edit: Edit = "ablate",
) -> dict[int, torch.Tensor]:
    if not directions:
        raise ValueError("no layers to ablate: give at least one {layer: directions}")
    units: dict[int, torch.Tensor] = {}
    for layer, dirs in directions.items():
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
            raise ValueError(f"layer {layer!r} is out of range for a model with {n_blocks} blocks")
        if not 0 <= layer < n_blocks:
            raise ValueError(f"layer {layer!r} is out of range for a model with {n_blocks} blocks")
        u = _vectors(dirs, edit)
        if u.shape[1] != d_model:
            raise ValueError(
                f"directions of shape {tuple(u.shape)} do not fit the model's residual width "
                f"{d_model}: expected [k, {d_model}]"
            )
        units[int(layer)] = u
    return units


def ablation_effects_by_layer(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    answer_ids: tuple[int, ...],
    directions: Mapping[int, Float[np.ndarray, "k d_model"] | Float[torch.Tensor, "k d_model"]],
    *,
    scope: Scope = "layer",
    positions: Positions = "all",
    batch_size: int = 32,
    clean: Float[np.ndarray, " prompt"] | None = None,
    fanout: bool = True,
    progress: bool = False,
    desc: str = "",
    edit: Edit = "ablate",
    readout: Readout | None = None,
) -> LayerEffects:
    """:func:`ablation_effects` for the directions of several layers (``{layer: directions}``).

    With ``fanout``, each prompt batch runs through the model once: that clean pass records
    every ablated block's output and the inputs of every later block, gives the clean margins
    (unless ``clean`` is given), and each layer's directions are replayed from it. Per layer,
    the effects are those :func:`ablation_effects` gives for that layer alone. ``readout``
    replaces the margin by another number read from the logits of ``answer_ids`` (then any two
    or more tokens): the effects and ``clean`` are then that number's change and clean value.

    One loop over prompt batches that keeps the clean pass, the replay check and the out-of-memory
    retry in one place; it reads best whole (its parts share that state), so it is not split.
    """
    prompts = _check_prompts(prompts, batch_size)
    answers = _check_answers(model, answer_ids, readout)
    if scope not in ("layer", "from_layer"):
        raise ValueError(f"unknown ablation scope {scope!r}: use 'layer' or 'from_layer'")
    if positions not in ("all", "skip_first"):
        raise ValueError(f"unknown positions {positions!r}: use 'all' or 'skip_first'")
    units = _unit_by_layer(directions, len(decoder_blocks(model)), hidden_size(model.config), edit)
    layers = sorted(units)
    if clean is not None:
        clean = np.asarray(clean, dtype=np.float32)
        if clean.shape != (len(prompts),):
            raise ValueError(
                f"clean margins of shape {clean.shape} do not match {len(prompts)} prompts"
            )
    clean_out = np.empty(len(prompts), dtype=np.float32) if clean is None else clean
    special = special_token_ids(tokenizer)
    effects = {
        layer: np.empty((units[layer].shape[0], len(prompts)), dtype=np.float32) for layer in layers
    }
    max_rows = batch_size * ROWS_PER_BATCH_FACTOR
    norm = final_norm(model) if fanout else None
    verified: set[int] = set()
    n_dirs = sum(int(u.shape[0]) for u in units.values())
    label = f"{len(layers)} layers, " if len(layers) > 1 else ""
    bar = tqdm(
        total=len(prompts),
        disable=not progress,
        desc=f"{desc} ({label}{n_dirs} directions)".strip(),
        file=sys.stderr,
        unit="prompt",
    )
    with torch.inference_mode(), bar:
        start = 0
        while start < len(prompts):
            try:
                ids, mask = _encode(tokenizer, prompts[start : start + batch_size], model.device)
                n = len(ids)
                sl = slice(start, start + n)
                # Copies per forward pass: the unablated reference and up to `group` directions.
                group = max(1, max_rows // n - 1)
                keep = (
                    None
                    if positions == "all"
                    else content_positions(ids.cpu(), mask.cpu(), special, positions)
                )
                recs: dict[int, _CleanPass] | None = None
                if fanout:
                    try:
                        recs = _clean_passes(model, layers, ids, mask, answers)
                    except _ReplayError as e:
                        fanout = _fall_back(model, str(e))
                last = last_token_index(mask)
                if clean is None:
                    clean_logits = (
                        next(iter(recs.values())).logits
                        if recs is not None
                        else _last_logits(model, ids, mask, answers)
                    )
                    clean_out[sl] = _margins(clean_logits, readout)
                for layer in layers:
                    u_layer = units[layer]
                    k_total = u_layer.shape[0]
                    rec = recs[layer] if recs is not None and fanout else None
                    if rec is not None and layer not in verified and k_total > 0:
                        why = _replay_matches(model, layer, rec, last, norm, answers)
                        if why is None:
                            verified.add(layer)
                        else:
                            fanout, rec = _fall_back(model, why), None
                    for k0 in range(0, k_total, group):
                        uk = u_layer[k0 : k0 + group]
                        kk = uk.shape[0]
                        uk = torch.cat([torch.zeros_like(uk[:1]), uk])  # copy 0: the reference
                        logits: torch.Tensor | None = None
                        if rec is not None:
                            try:
                                logits = _replay(
                                    model, layer, rec, last, uk, scope, norm, answers, keep, edit
                                )
                            except Exception as e:
                                if _is_oom(e):
                                    raise
                                fanout = _fall_back(model, f"{type(e).__name__}: {e}")
                                rec = None
                        if logits is None:
                            with directional_ablation(
                                model, layer, uk, scope=scope, keep=keep, edit=edit
                            ):
                                logits = _last_logits(
                                    model, ids.repeat(kk + 1, 1), mask.repeat(kk + 1, 1), answers
                                )
                        m = _margins(logits, readout).reshape(kk + 1, n)
                        effects[layer][k0 : k0 + kk, sl] = m[1:] - m[:1]
            except Exception as e:
                if not _is_oom(e) or batch_size <= 1:
                    raise
                batch_size = max(1, batch_size // 2)
                max_rows = batch_size * ROWS_PER_BATCH_FACTOR
                log.warning("out of memory in an ablation: retrying with batch size %d", batch_size)
                _free_memory()
                continue
            start += n
            bar.update(n)
    return LayerEffects(clean_out, effects)


def _is_oom(err: BaseException) -> bool:
    from crossprobe.extract import is_oom

    return is_oom(err)


def _free_memory() -> None:
    from crossprobe.extract import _free_memory as free

    free()


def _fall_back(model: PreTrainedModel, why: str) -> bool:
    """Log why the fan-out is off for ``model``; returns the new ``fanout`` flag (False)."""
    log.warning(
        "ablation fan-out does not reproduce %s's forward pass (%s); running the whole model "
        "for every direction instead",
        type(model).__name__,
        why,
    )
    return False


def random_directions(d_model: int, k: int, *, seed: int) -> Float[np.ndarray, "k d_model"]:
    """``k`` random unit vectors in ``d_model`` dimensions (Gaussian, then normalised), float32."""
    if d_model < 1 or k < 0:
        raise ValueError(f"random directions need d_model >= 1 and k >= 0, got {d_model}, {k}")
    g = np.random.default_rng(seed).standard_normal((k, d_model))
    return (g / np.linalg.norm(g, axis=1, keepdims=True)).astype(np.float32)
