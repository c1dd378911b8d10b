"""Known-answer copies of a real model: an exact functional copy in another residual basis, and
copies whose weights carry small relative noise.

An **exact copy** computes the same logits for every input, while its residual stream is the
original's expressed in another orthonormal basis (``h' = Q·h``). That is the positive control
of transfer: a probe carried into it through a fitted map must have the same causal effect on
every prompt (Pearson_CE ≈ 1), whatever the probe family. Rotating the residual stream of a
pre-norm transformer with RMSNorm needs the norms' gains folded into the linear layers that
read them first (RMSNorm without a gain commutes with an orthogonal ``Q``, with one it does
not); the construction is the one of the computational-invariance literature (SliceGPT,
QuaRot), for Llama-family blocks (Llama, Qwen2/3, Mistral: ``input_layernorm`` before
attention, ``post_attention_layernorm`` before the MLP, ``model.norm`` before the head).

A **perturbed copy** adds Gaussian noise to every weight matrix, scaled per matrix to
``scale`` times that matrix's own standard deviation: how far the measurement moves when the
model moves a little (the stability check of the definitions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from crossprobe.errors import ConfigError

_READERS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
_MLP_READERS = ("mlp.gate_proj", "mlp.up_proj")
_WRITERS = ("self_attn.o_proj", "mlp.down_proj")


def random_rotation(d: int, *, seed: int) -> torch.Tensor:
    """A Haar-random ``d × d`` orthogonal matrix (float64), fixed by ``seed``."""
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))[None, :]


def _module(root: Any, path: str) -> Any:
    for part in path.split("."):
        root = getattr(root, part)
    return root


def _check_llama_family(model: PreTrainedModel) -> None:
    inner = getattr(model, "model", None)
    blocks = getattr(inner, "layers", None)
    if blocks is None or not hasattr(inner, "norm") or not hasattr(inner, "embed_tokens"):
        raise ConfigError(
            f"an exact rotated copy needs a Llama-family model (model.embed_tokens, "
            f"model.layers, model.norm); {type(model).__name__} has another layout"
        )
    for path in (
        *_READERS,
        *_MLP_READERS,
        *_WRITERS,
        "input_layernorm",
        "post_attention_layernorm",
    ):
        try:
            _module(blocks[0], path)
        except AttributeError as e:
            raise ConfigError(
                f"an exact rotated copy needs Llama-family blocks; {type(model).__name__}'s "
                f"block has no {path}"
            ) from e
    for name, _ in model.named_parameters():
        if name.endswith(".bias") and any(w in name for w in _WRITERS):
            raise ConfigError(f"an exact rotated copy does not handle the output bias {name}")


@torch.no_grad()
def _fold_and_rotate(norm: Any, readers: list[Any], q: torch.Tensor) -> None:
    """``W ← W·diag(g)·Qᵀ`` for each linear reading ``norm``'s output; the gain becomes 1."""
    g = norm.weight.detach().to(torch.float64)
    for lin in readers:
        w = lin.weight.detach().to(torch.float64)
        lin.weight.copy_(((w * g[None, :]) @ q.T).to(lin.weight.dtype))
    norm.weight.fill_(1.0)


@torch.no_grad()
def rotated_copy(model: PreTrainedModel, *, seed: int = 0) -> PreTrainedModel:
    """Turn ``model`` (in place) into its exact functional copy in a random orthonormal basis.

    Every block output ``h`` of the returned model is ``Q·h`` of the original's, and its logits
    are the original's up to floating-point rounding. The word embeddings are untied from the
    head (the head absorbs the final norm's gain). Returns the model, whose config says
    ``tie_word_embeddings: false``.
    """
    _check_llama_family(model)
    inner: Any = model.model
    d = int(inner.embed_tokens.weight.shape[1])
    q = random_rotation(d, seed=seed)
    head: Any = model.get_output_embeddings()
    if head.weight.data_ptr() == inner.embed_tokens.weight.data_ptr():
        head.weight = torch.nn.Parameter(head.weight.detach().clone())
    model.config.tie_word_embeddings = False
    text = getattr(model.config, "text_config", None)
    if text is not None:
        text.tie_word_embeddings = False
    emb = inner.embed_tokens.weight
    emb.copy_((emb.detach().to(torch.float64) @ q.T).to(emb.dtype))
    for block in inner.layers:
        _fold_and_rotate(block.input_layernorm, [_module(block, p) for p in _READERS], q)
        _fold_and_rotate(
            block.post_attention_layernorm, [_module(block, p) for p in _MLP_READERS], q
        )
        for path in _WRITERS:
            lin = _module(block, path)
            w = lin.weight.detach().to(torch.float64)
            lin.weight.copy_((q @ w).to(lin.weight.dtype))
    _fold_and_rotate(inner.norm, [head], q)
    return model


@torch.no_grad()
def perturbed_copy(model: PreTrainedModel, *, scale: float, seed: int = 0) -> PreTrainedModel:
    """Add ``N(0, (scale·σ_W)²)`` noise to every weight matrix ``W`` of ``model`` (in place).

    ``σ_W`` is the matrix's own standard deviation; vectors (norm gains, biases) are left
    alone. Tied matrices are perturbed once.
    """
    if not scale >= 0:
        raise ValueError(f"perturbation scale must be >= 0, got {scale}")
    g = torch.Generator().manual_seed(seed)
    seen: set[int] = set()
    for _, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if p.ndim < 2 or p.data_ptr() in seen:
            continue
        seen.add(p.data_ptr())
        w = p.detach().to(torch.float32)
        noise = torch.randn(w.shape, generator=g, dtype=torch.float32)
        p.copy_((w + noise * (scale * float(w.std()))).to(p.dtype))
    return model


def save_copy(model: PreTrainedModel, tokenizer: object, out: str | Path) -> Path:
    """Write a copy as a ``save_pretrained`` folder (safetensors) with its tokenizer."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)  # type: ignore[attr-defined]
    return out
