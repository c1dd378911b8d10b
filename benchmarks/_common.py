"""Shared pieces of the benchmarks: deterministic prompts, models built from configs, timing."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel, PreTrainedTokenizerFast

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")
ANSWERS = ("True", "False")
_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z")
_VOWELS = ("a", "e", "i", "o", "u")


def vocabulary(n_words: int = 2000) -> list[str]:
    """``n_words`` distinct pseudo-words of two or three syllables, always the same."""
    syllables = [o + v for o in _ONSETS for v in _VOWELS]
    words = [a + b for a in syllables for b in syllables]
    words += [a + b + c for a in syllables[:20] for b in syllables for c in syllables[:10]]
    return words[:n_words]


def word_prompts(n: int, *, lo: int = 10, hi: int = 30, seed: int = 0) -> list[str]:
    """``n`` prompts of ``lo``–``hi`` words drawn from :func:`vocabulary`, deterministic."""
    rng = np.random.default_rng(seed)
    words = vocabulary()
    out = []
    for _ in range(n):
        k = int(rng.integers(lo, hi + 1))
        out.append(" ".join(words[i] for i in rng.integers(0, len(words), size=k)))
    return out


def word_tokenizer() -> PreTrainedTokenizerFast:
    """Whitespace word-level tokenizer over :func:`vocabulary` plus the answers; right padding."""
    vocab = {w: i for i, w in enumerate((*SPECIALS, *ANSWERS, *vocabulary()))}
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


def llama_100m(attn: str = "eager", dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """Random-init Llama: width 768, 12 blocks, 12 heads, MLP 3072, vocabulary 32000."""
    cfg = LlamaConfig(
        vocab_size=32000,
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        num_key_value_heads=12,
        max_position_embeddings=512,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to(dtype)
    model.set_attn_implementation(attn)
    return model.eval().requires_grad_(False)


def zoo_model(arch: str = "llama") -> tuple[PreTrainedModel, PreTrainedTokenizerFast, list[str]]:
    """The workflow's random-init zoo model (3 blocks, width 64, init range 0.1), its word
    tokenizer and the zoo corpus prompts."""
    from crossprobe.zoo.build import ZooSpec, build_corpus, build_tokenizer, init_model

    spec = ZooSpec(arch=arch, tokenizer="word", trained=False)
    corpus = build_corpus(spec.resolved_families())
    tok = build_tokenizer("word", [f"{p}{a}" for _, p, a in corpus])
    model = init_model(spec, tok).eval().requires_grad_(False)
    prompts = [p for _, p, _ in corpus]
    return model, tok, prompts


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def n_tokens(tok: PreTrainedTokenizerFast, prompts: list[str]) -> int:
    """Real (unpadded) tokens over ``prompts``."""
    return sum(len(ids) for ids in tok(prompts)["input_ids"])


def best_of(fn: Callable[[], Any], rounds: int = 1) -> tuple[float, Any]:
    """Smallest wall time over ``rounds`` calls, and the last result."""
    best, out = float("inf"), None
    for _ in range(rounds):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def machine() -> dict[str, str]:
    """Where a figure was measured."""
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import transformers

    try:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    except OSError:
        nproc = str(os.cpu_count())
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": nproc,
        "cpu": cpu,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
    }


def print_machine() -> None:
    m = machine()
    print(" · ".join(f"{k} {v}" for k, v in m.items()))


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A markdown table."""
    fmt = [[f"{c:.4g}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in fmt]
    return "\n".join(lines)
