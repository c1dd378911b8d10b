"""Loading causal LMs and finding their decoder blocks, the same way for hub ids and directories."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch
from jaxtyping import Bool, Int
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from crossprobe.errors import ConfigError
from crossprobe.layers import resolve_layers  # noqa: F401  (re-exported)

DType = Literal["auto", "float32", "bfloat16", "float16"]

_TORCH_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}

# Attribute paths (from the model object) of the decoder block list, most specific first.
_BLOCK_PATHS: tuple[str, ...] = (
    "model.language_model.layers",  # Gemma 3 / multimodal wrappers
    "model.language_model.model.layers",
    "language_model.model.layers",
    "language_model.layers",
    "model.layers",  # Llama, Qwen2/3, Mistral, Gemma 2/3 text, Phi-3
    "transformer.h",  # GPT-2, GPT-J, Bloom
    "gpt_neox.layers",  # GPT-NeoX, Pythia
    "model.decoder.layers",  # OPT
    "transformer.layers",
    "transformer.blocks",
    "layers",
    "h",
)


# ---------------------------------------------------------------------------------------------
# Loading


def load_tokenizer(
    path: str, *, revision: str | None = None, trust_remote_code: bool = False
) -> PreTrainedTokenizerBase:
    """The model's tokenizer, padding on the right, with a pad token (eos or unk if it had none)."""
    try:
        tok = AutoTokenizer.from_pretrained(
            path, revision=revision, trust_remote_code=trust_remote_code
        )
    except Exception as e:  # noqa: BLE001 - any failure means the path is unusable
        raise ConfigError(
            f"cannot load the tokenizer of model {path!r} (revision {revision!r}): {e}. "
            "Check the hub id or local directory and the revision."
        ) from e
    tok.padding_side = "right"
    if tok.pad_token is None:
        if tok.eos_token is not None:
            tok.pad_token = tok.eos_token
        elif tok.unk_token is not None:
            tok.pad_token = tok.unk_token
        else:
            raise ConfigError(
                f"the tokenizer of model {path!r} has no pad, eos or unk token to pad batches with"
            )
    return tok


def load_config(
    path: str, *, revision: str | None = None, trust_remote_code: bool = False
) -> PretrainedConfig:
    """The model's configuration only (no weights)."""
    try:
        return AutoConfig.from_pretrained(
            path, revision=revision, trust_remote_code=trust_remote_code
        )
    except Exception as e:  # noqa: BLE001
        raise ConfigError(
            f"cannot load the config of model {path!r} (revision {revision!r}): {e}. "
            "Check the hub id or local directory and the revision."
        ) from e


def resolve_device(device: str = "auto") -> str:
    """``auto`` means CUDA when available, else CPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: DType, device: str) -> torch.dtype:
    """``auto`` means bfloat16 on a CUDA device that supports it, else float32."""
    if dtype == "auto":
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    try:
        return _TORCH_DTYPES[dtype]
    except KeyError:
        raise ConfigError(
            f"unknown dtype {dtype!r}: use one of 'auto', {', '.join(map(repr, _TORCH_DTYPES))}"
        ) from None


def load_model(
    path: str,
    *,
    revision: str | None = None,
    dtype: DType = "auto",
    device: str = "auto",
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    attn_implementation: str | None = None,
    device_map: str | dict[str, Any] | None = None,
) -> PreTrainedModel:
    """A causal LM in eval mode with gradients off.

    ``device_map`` (e.g. ``"auto"``) is passed to transformers to spread a model over several
    GPUs; without it the whole model goes to ``device``.
    """
    dev = resolve_device(device)
    kwargs: dict[str, Any] = {
        "revision": revision,
        "dtype": resolve_dtype(dtype, dev),
        "use_safetensors": not allow_pickle,
        "trust_remote_code": trust_remote_code,
    }
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except Exception as e:  # noqa: BLE001
        hint = (
            " The model may only ship pickle (.bin) weights: set allow_pickle only if you trust it."
            if not allow_pickle
            else ""
        )
        raise ConfigError(f"cannot load model {path!r} (revision {revision!r}): {e}.{hint}") from e
    if device_map is None:
        # transformers wraps PreTrainedModel.to in a decorator whose annotation mypy misreads
        model = model.to(dev)  # type: ignore[arg-type]
    model.eval()
    model.requires_grad_(False)
    return model


# ---------------------------------------------------------------------------------------------
# Config facts


def _text_config(config: PretrainedConfig) -> PretrainedConfig:
    if hasattr(config, "get_text_config"):
        try:
            return config.get_text_config()
        except Exception:  # noqa: BLE001
            pass
    return getattr(config, "text_config", None) or config


def num_layers(config: PretrainedConfig) -> int:
    """Number of decoder blocks (text tower for multimodal configs such as Gemma 3)."""
    for cfg in (_text_config(config), config):
        for key in ("num_hidden_layers", "n_layer", "num_layers", "n_layers"):
            v = getattr(cfg, key, None)
            if isinstance(v, int) and v > 0:
                return v
    raise ConfigError(
        f"cannot find the number of layers in config {type(config).__name__} "
        "(no num_hidden_layers / n_layer / text_config.num_hidden_layers)"
    )


#: Memory that ``batch_size: auto`` treats as free on CPU (activations get half of it). On CPU
#: the fastest batch is set by the caches, not by memory: from this budget extraction and
#: ablation run at 0.83-1.0x their best batch on the zoo model and on a 162M Llama, where
#: 256 MiB ran the zoo at 0.53-0.63x (``benchmarks/bench_batch.py``).
CPU_AUTO_MEMORY = 2**26
#: Share of the GPU's free memory that an ``auto`` batch may fill (activations only).
FREE_MEMORY_SHARE = 0.5
MAX_AUTO_BATCH = 4096


def auto_batch_size(
    config: PretrainedConfig,
    seq_len: int,
    free_bytes: int,
    dtype_bytes: int,
    rows_per_prompt: int = 1,
) -> int:
    """Prompts per forward pass that fit ``FREE_MEMORY_SHARE`` of ``free_bytes``.

    One row of ``seq_len`` tokens holds about ``seq_len · (6·d + 3·d_ff)`` activations in
    the compute dtype at its peak inside a block, plus ``heads · seq_len²`` float32 attention
    scores (eager attention; SDPA needs less). ``rows_per_prompt`` is how many rows each prompt
    becomes (the directions an ablation pushes through each batch).
    """
    text = _text_config(config)
    d = hidden_size(config)
    d_ff = next(
        (
            v
            for k in ("intermediate_size", "n_inner", "ffn_dim")
            if isinstance(v := getattr(text, k, None), int) and v > 0
        ),
        4 * d,
    )
    heads = next(
        (
            v
            for k in ("num_attention_heads", "n_head")
            if isinstance(v := getattr(text, k, None), int) and v > 0
        ),
        1,
    )
    per_row = seq_len * (6 * d + 3 * d_ff) * dtype_bytes + heads * seq_len**2 * 4
    rows = int(FREE_MEMORY_SHARE * free_bytes // max(1, per_row))
    return max(1, min(MAX_AUTO_BATCH, rows // max(1, rows_per_prompt)))


def resolve_batch_size(
    model: PreTrainedModel,
    requested: int | str,
    seq_len: int,
    *,
    rows_per_prompt: int = 1,
) -> int:
    """``requested``, or for ``auto`` a size from the free memory of the model's GPU, or from
    :data:`CPU_AUTO_MEMORY` on CPU (:func:`auto_batch_size`)."""
    if requested != "auto":
        return int(requested)
    device = model.get_input_embeddings().weight.device
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
    else:
        free = CPU_AUTO_MEMORY
    dtype_bytes = next(model.parameters()).element_size()
    return auto_batch_size(model.config, seq_len, free, dtype_bytes, rows_per_prompt)


def hidden_size(config: PretrainedConfig) -> int:
    """Width of the residual stream (text tower for multimodal configs)."""
    for cfg in (_text_config(config), config):
        for key in ("hidden_size", "n_embd", "d_model"):
            v = getattr(cfg, key, None)
            if isinstance(v, int) and v > 0:
                return v
    raise ConfigError(
        f"cannot find the hidden size in config {type(config).__name__} "
        "(no hidden_size / n_embd / d_model)"
    )


# ---------------------------------------------------------------------------------------------
# Blocks and hooks


def _get_path(obj: Any, path: str) -> Any:
    for name in path.split("."):
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


def decoder_blocks(model: PreTrainedModel) -> torch.nn.ModuleList:
    """The model's list of decoder blocks (block ℓ's output is ``hidden_states[ℓ + 1]``)."""
    n = num_layers(model.config)
    for path in _BLOCK_PATHS:
        blocks = _get_path(model, path)
        if isinstance(blocks, torch.nn.ModuleList) and len(blocks) == n:
            return blocks
    candidates = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n]
    if candidates:
        return max(candidates, key=lambda m: sum(p.numel() for p in m.parameters()))
    raise ConfigError(
        f"cannot find the {n} decoder blocks of {type(model).__name__}: none of "
        f"{', '.join(_BLOCK_PATHS)} is a ModuleList of that length"
    )


def block_output_tensor(output: Any) -> torch.Tensor:
    """The hidden state in a decoder block's output (a tensor in transformers 5, else a tuple)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    hs = getattr(output, "hidden_states", None)
    if isinstance(hs, torch.Tensor):
        return hs
    raise TypeError(f"unexpected decoder block output of type {type(output).__name__}")


def replace_block_output(output: Any, new_hidden: torch.Tensor) -> Any:
    """``output`` with its hidden state replaced by ``new_hidden``, same structure."""
    if isinstance(output, torch.Tensor):
        return new_hidden
    if isinstance(output, tuple):
        return (new_hidden, *output[1:])
    if isinstance(output, list):
        return [new_hidden, *output[1:]]
    if isinstance(getattr(output, "hidden_states", None), torch.Tensor):
        output.hidden_states = new_hidden
        return output
    raise TypeError(f"unexpected decoder block output of type {type(output).__name__}")


@contextmanager
def forward_hooks(
    pairs: Iterable[tuple[torch.nn.Module, Callable[..., Any]]],
) -> Iterator[None]:
    """Register forward hooks ``(module, hook)``; all are removed on exit, even on error."""
    handles = []
    try:
        for module, hook in pairs:
            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for h in handles:
            h.remove()


def last_token_index(attention_mask: Int[torch.Tensor, "batch seq"]) -> Int[torch.Tensor, " batch"]:
    """Index of the last 1 in each row of the mask (right or left padding)."""
    mask = attention_mask.to(torch.long)
    if mask.ndim != 2:
        raise ValueError(f"attention mask must be [batch, seq], got shape {tuple(mask.shape)}")
    if bool((mask.sum(1) == 0).any()):
        raise ValueError("attention mask has a row with no tokens")
    pos = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return torch.where(mask.bool(), pos, torch.full_like(pos, -1)).max(dim=1).values


Positions = Literal["all", "skip_first"]
"""Which token positions an ablation touches and ``position: mean`` averages."""


def special_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The ids of the tokenizer's special tokens (BOS, EOS, pad, chat markup), sorted; not the
    unknown token, which stands for a word of the prompt."""
    unk = tokenizer.unk_token_id
    return sorted({int(i) for i in tokenizer.all_special_ids if i is not None and i != unk})


def content_positions(
    input_ids: Int[torch.Tensor, "batch seq"],
    attention_mask: Int[torch.Tensor, "batch seq"],
    special_ids: Sequence[int],
    positions: Positions,
) -> Bool[torch.Tensor, "batch seq"]:
    """The prompt positions that count: every real token for ``all``; for ``skip_first`` every
    real token but the first and those that are special tokens (the attention sinks of real
    LMs). The last prompt token, where the margin is read, always counts."""
    if positions not in ("all", "skip_first"):
        raise ValueError(f"unknown positions {positions!r}: use 'all' or 'skip_first'")
    keep = attention_mask.to(torch.bool).clone()
    if positions == "skip_first":
        keep[:, 0] = False
        if len(special_ids):
            special = torch.as_tensor(list(special_ids), dtype=input_ids.dtype)
            keep &= ~torch.isin(input_ids, special.to(input_ids.device))
        last = last_token_index(attention_mask)
        keep[torch.arange(keep.shape[0], device=keep.device), last.to(keep.device)] = True
    return keep


def answer_token_ids(
    tokenizer: PreTrainedTokenizerBase, answers: tuple[str, str], *, model: str
) -> tuple[int, int]:
    """Token ids of the positive and negative answers; each must be exactly one token."""
    if len(answers) != 2:
        raise ConfigError(f"answers must be a (positive, negative) pair, got {answers!r}")
    ids: list[int] = []
    for a in answers:
        enc = tokenizer.encode(a, add_special_tokens=False)
        if len(enc) != 1:
            pieces = tokenizer.convert_ids_to_tokens(enc)
            raise ConfigError(
                f"answer {a!r} is not a single token for model {model!r}: it encodes to "
                f"{len(enc)} tokens {pieces!r} (ids {enc}). Choose answers that this model's "
                "tokenizer encodes as one token each (e.g. with a leading space)."
            )
        ids.append(int(enc[0]))
    if ids[0] == ids[1]:
        raise ConfigError(
            f"answers {answers[0]!r} and {answers[1]!r} encode to the same token {ids[0]} "
            f"for model {model!r}; choose two different answers"
        )
    return ids[0], ids[1]
