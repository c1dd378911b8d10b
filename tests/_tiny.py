"""Tiny random-init models and a word-level tokenizer for fast tests (no downloads)."""

from __future__ import annotations

from typing import Any

import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerFast

WORDS = (
    "the",
    "a",
    "is",
    "not",
    "cat",
    "dog",
    "sky",
    "sea",
    "blue",
    "green",
    "red",
    "big",
    "small",
    "paris",
    "london",
    "city",
    "capital",
    "of",
    "in",
    "france",
    "england",
    "true",
    "false",
    "yes",
    "no",
    "water",
    "wet",
    "dry",
    "fire",
    "hot",
    "cold",
    "ice",
    "snow",
    "white",
    "black",
    "night",
    "day",
    "sun",
    "moon",
    "bright",
    "dark",
    "grass",
    "tree",
    "bird",
    "fish",
    "swims",
    "flies",
    "runs",
)
#: Architectures whose block discovery, extraction and fan-out are tested (config class names).
ARCHS = [
    "LlamaConfig",
    "Qwen2Config",
    "Qwen3Config",
    "MistralConfig",
    "Gemma2Config",
    "Gemma3TextConfig",
    "GPT2Config",
    "GPTNeoXConfig",
    "Phi3Config",
]

SPECIAL = ["<pad>", "<unk>", "<bos>", "<eos>"]
VOCAB_SIZE = 100

# Tiny matrices: thread start-up and contention cost far more than the arithmetic.
torch.set_num_threads(1)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer with pad/unk/bos/eos and ``True``/``False`` words."""
    words = [*SPECIAL, "True", "False", *WORDS]
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<bos>",
        eos_token="<eos>",
    )
    fast.padding_side = "right"
    return fast


_COMMON: dict[str, Any] = {
    "vocab_size": VOCAB_SIZE,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 64,
    "pad_token_id": 0,
    "bos_token_id": 2,
    "eos_token_id": 3,
}

_PER_ARCH: dict[str, dict[str, Any]] = {
    "GPT2Config": {
        "vocab_size": VOCAB_SIZE,
        "n_embd": 32,
        "n_layer": 3,
        "n_head": 4,
        "n_inner": 64,
        "n_positions": 64,
        "pad_token_id": 0,
        "bos_token_id": 2,
        "eos_token_id": 3,
    },
    "GPTNeoXConfig": {**{k: v for k, v in _COMMON.items() if k != "num_key_value_heads"}},
    "Gemma2Config": {**_COMMON, "head_dim": 8, "sliding_window": 16},
    "Gemma3TextConfig": {**_COMMON, "head_dim": 8, "sliding_window": 16},
    "Qwen3Config": {**_COMMON, "head_dim": 8},
}


def tiny_config(config_cls: type, **kw: Any):
    """A small config of ``config_cls`` (3 blocks, width 32), overridden by ``kw``."""
    args = dict(_PER_ARCH.get(config_cls.__name__, _COMMON))
    args.update(kw)
    return config_cls(**args)


def tiny_model(config_cls: type, seed: int = 0, **kw: Any) -> PreTrainedModel:
    """A random-init causal LM in float32, eval mode, eager attention."""
    cfg = tiny_config(config_cls, **kw)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", dtype=torch.float32)
    model.eval()
    model.requires_grad_(False)
    return model
