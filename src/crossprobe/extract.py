"""Residual-stream activations at chosen decoder blocks, batched, in prompt order."""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Float
from tqdm.auto import tqdm
from transformers import BatchEncoding, PreTrainedModel, PreTrainedTokenizerBase

from crossprobe.errors import ConfigError
from crossprobe.models import (
    Positions,
    block_output_tensor,
    content_positions,
    decoder_blocks,
    forward_hooks,
    hidden_size,
    last_token_index,
    num_layers,
    special_token_ids,
)

Position = Literal["last", "mean"]


class StopForward(Exception):
    """Raised from a hook on the deepest needed block so that later blocks never run."""


def model_device(model: PreTrainedModel) -> torch.device:
    """Where the model's inputs go (the embedding's device, also under a device map)."""
    weight = model.get_input_embeddings().weight
    assert isinstance(weight, torch.Tensor)
    return weight.device


def encode_batch(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], device: torch.device | str
) -> BatchEncoding:
    """Tokenise ``prompts`` with right padding and an attention mask, on ``device``.

    The padding side is set here on every call: a tokenizer shared with another tool may have
    been switched to left padding.
    """
    tokenizer.padding_side = "right"
    enc = tokenizer(list(prompts), padding=True, return_tensors="pt")
    return enc.to(device)


def is_oom(err: BaseException) -> bool:
    """Whether ``err`` is an accelerator out-of-memory error."""
    oom_types: tuple[type[BaseException], ...] = (torch.cuda.OutOfMemoryError,)
    if hasattr(torch, "OutOfMemoryError"):
        oom_types += (torch.OutOfMemoryError,)
    if isinstance(err, oom_types):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def _forward(model: PreTrainedModel, enc: BatchEncoding) -> Any:
    """One forward pass (module level so that tests can inject failures)."""
    # Right padding: every real token sits at positions 0..len-1, so the default position ids
    # (0, 1, 2, ...) are already correct for it, and causal attention keeps the pads that follow
    # it out of its context. Mask-derived position ids are only needed with left padding.
    return model(
        input_ids=enc["input_ids"],
        attention_mask=enc["attention_mask"],
        use_cache=False,
    )


def _check_layers(layers: Sequence[int], n: int) -> list[int]:
    out = []
    for layer in layers:
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
            raise ConfigError(f"layer {layer!r} must be an int block index (see resolve_layers)")
        if not -n <= int(layer) < n:
            raise ConfigError(f"layer {layer} is out of range for a model with {n} blocks")
        out.append(int(layer) % n)
    if not out:
        raise ConfigError("no layers requested: give at least one block index")
    return out


def _pad_right(
    token_ids: Sequence[Sequence[int]], pad_id: int, device: torch.device | str
) -> BatchEncoding:
    """Already tokenised rows, padded on the right with ``pad_id``, with their attention mask.

    The same tensors :func:`encode_batch` builds, without tokenising the text again.
    """
    width = max(len(ids) for ids in token_ids)
    input_ids = torch.full((len(token_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(token_ids), width), dtype=torch.long)
    for i, ids in enumerate(token_ids):
        input_ids[i, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
        mask[i, : len(ids)] = 1
    return BatchEncoding({"input_ids": input_ids, "attention_mask": mask}).to(device)


def _run_batch(
    model: PreTrainedModel,
    enc: BatchEncoding,
    layers: list[int],
    position: Position,
    blocks: torch.nn.ModuleList,
    averaged: torch.Tensor | None = None,
) -> Float[np.ndarray, "row layer d_model"]:
    mask = enc["attention_mask"]
    last = last_token_index(mask)
    if averaged is None:
        averaged = mask
    deepest = max(layers)
    captured: dict[int, torch.Tensor] = {}
    copied_from: set[torch.device] = set()

    def make_hook(layer: int):
        def hook(_module: torch.nn.Module, _args: Any, output: Any) -> None:
            h = block_output_tensor(output)
            if position == "last":
                rows = torch.arange(h.shape[0], device=h.device)
                v = h[rows, last.to(h.device)].float()
            else:
                w = averaged.to(device=h.device, dtype=torch.float32).unsqueeze(-1)
                v = (h.float() * w).sum(1) / w.sum(1)
            if v.device.type == "cuda":
                copied_from.add(v.device)
            captured[layer] = _to_host(v)
            if layer == deepest:
                raise StopForward

        return hook

    hooks = [(blocks[layer], make_hook(layer)) for layer in sorted(set(layers))]
    with forward_hooks(hooks), contextlib.suppress(StopForward):
        _forward(model, enc)
    missing = sorted(set(layers) - captured.keys())
    if missing:
        raise RuntimeError(f"blocks {missing} did not run during the forward pass")
    for device in copied_from:  # (several under a device map)
        torch.cuda.synchronize(device)  # the asynchronous copies to host memory have landed
    return torch.stack([captured[layer] for layer in layers], dim=1).numpy()


def _to_host(v: torch.Tensor) -> torch.Tensor:
    """``v`` on the host: from a GPU, an asynchronous copy into pinned memory (wait before use)."""
    if v.device.type != "cuda":
        return v.cpu()
    host = torch.empty(v.shape, dtype=v.dtype, pin_memory=True)
    host.copy_(v, non_blocking=True)
    return host


def extract_activations(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    layers: Sequence[int],
    *,
    position: Position = "last",
    positions: Positions = "all",
    batch_size: int = 32,
    progress: bool = False,
    desc: str = "",
) -> Float[np.ndarray, "row layer d_model"]:
    """Block outputs (``hidden_states[ℓ + 1]``) at the given blocks, float32, rows in input order.

    ``position`` ``last`` takes the last prompt token (from the attention mask), ``mean`` the
    mean over prompt tokens: all of them (``positions`` ``all``), or all but the first and the
    tokenizer's special tokens (``skip_first``, :func:`crossprobe.models.content_positions`),
    which keeps the attention sink out of every row. Prompts are sorted by token length (longest
    first) so that batches carry little padding; on an out-of-memory error the batch is halved
    and the same rows retried.

    One numeric kernel (batches, hooks, the retry on out-of-memory); it reads best whole.
    """
    if position not in ("last", "mean"):
        raise ConfigError(f"position must be 'last' or 'mean', got {position!r}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    layer_ids = _check_layers(layers, num_layers(model.config))
    d_model = hidden_size(model.config)
    prompts = list(prompts)
    n = len(prompts)
    out = np.empty((n, len(layer_ids), d_model), dtype=np.float32)
    if n == 0:
        return out

    # Tokenise once: the batches are padded from these ids (on the right, whatever side the
    # tokenizer was set to), in the same way a batched tokenizer call pads them.
    tokenizer.padding_side = "right"
    token_ids = tokenizer(prompts)["input_ids"]
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        raise ConfigError(
            "the tokenizer has no pad token: set one (e.g. its eos token) to batch prompts"
        )
    if any(len(ids) == 0 for ids in token_ids):
        raise ConfigError("a prompt encodes to no tokens: remove empty prompts")
    lengths = np.array([len(ids) for ids in token_ids])
    order = np.argsort(-lengths, kind="stable")
    blocks = decoder_blocks(model)
    device = model_device(model)
    special = special_token_ids(tokenizer)

    bs = batch_size
    done = 0
    with (
        torch.inference_mode(),
        tqdm(
            total=n, disable=not progress, desc=desc or None, file=sys.stderr, unit="prompt"
        ) as bar,
    ):
        while done < n:
            idx = order[done : done + bs]
            try:
                enc = _pad_right([token_ids[i] for i in idx], pad_id, device)
                averaged = (
                    content_positions(enc["input_ids"], enc["attention_mask"], special, positions)
                    if position == "mean"
                    else None
                )
                acts = _run_batch(model, enc, layer_ids, position, blocks, averaged)
            except Exception as e:
                if not is_oom(e) or bs == 1:
                    raise
                bs = max(1, bs // 2)
                _free_memory()
                continue
            if acts.shape != (len(idx), len(layer_ids), d_model):
                raise ValueError(
                    f"batch activations have shape {acts.shape}, expected "
                    f"{(len(idx), len(layer_ids), d_model)}"
                )
            out[idx] = acts
            done += len(idx)
            bar.update(len(idx))
    return out


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
