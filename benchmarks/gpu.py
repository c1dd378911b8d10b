"""Extraction and ablation throughput and MFU on one CUDA GPU (H100 / H200).

Random-init Llama-architecture models of about 1B, 3B and 8B parameters are built from configs
(no downloads), in bfloat16 with SDPA attention. For each: crossprobe's extraction (blocks at
depths 0.25 / 0.5 / 0.75, last token) and ablation (32 random directions at depth 0.75, with and
without the fan-out) on word prompts of 10–30 words. MFU = 2 × parameters × tokens / time /
peak bf16 FLOP/s (dense), an upper-bound style figure: extraction stops after the deepest block
and the fan-out skips the blocks below the ablated one, so they do less than 2·N FLOPs a token.
Run from the repository root::

    .venv/bin/python benchmarks/gpu.py                 # prints a markdown table
    .venv/bin/python benchmarks/gpu.py --quick         # 1B only, few prompts
    .venv/bin/python benchmarks/gpu.py --peak 1.979e15 # peak FLOP/s of an unlisted device
    .venv/bin/python benchmarks/gpu.py --device cpu --sizes tiny   # the code path, no GPU
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, n_tokens, table, word_prompts, word_tokenizer  # noqa: E402

# Dense bf16 peak FLOP/s by device name (substring, first match).
PEAK_BF16 = (
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
)

SIZES = {
    # name: hidden, layers, heads, kv heads, intermediate (Llama 3.2 1B / 3B, Llama 3 8B shapes)
    "1B": (2048, 16, 32, 8, 8192),
    "3B": (3072, 28, 24, 8, 8192),
    "8B": (4096, 32, 32, 8, 14336),
    # a smoke test of the script itself (``--device cpu --sizes tiny``), not a benchmark
    "tiny": (64, 4, 4, 2, 256),
}
VOCAB = 32000


def peak_flops(name: str, fallback: float | None) -> float | None:
    for key, peak in PEAK_BF16:
        if key.lower() in name.lower():
            return peak
    return fallback


def build(size: str, device: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    d, n_layers, heads, kv, inter = SIZES[size]
    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=d,
        num_hidden_layers=n_layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        intermediate_size=inter,
        max_position_embeddings=512,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.set_attn_implementation("sdpa")
    return model.eval().requires_grad_(False)


def timed(fn, device: str) -> float:
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def measure(size, model, tok, prompts, abl_prompts, answers, args, peak) -> list[list]:
    """Extraction and ablation rows of one model."""
    from crossprobe.ablate import ROWS_PER_BATCH_FACTOR, ablation_effects, random_directions
    from crossprobe.extract import extract_activations
    from crossprobe.models import resolve_batch_size, resolve_layers

    n_par = sum(p.numel() for p in model.parameters())
    n_blocks = model.config.num_hidden_layers
    layers = resolve_layers([0.25, 0.5, 0.75], n_blocks)
    layer = resolve_layers([0.75], n_blocks)[0]
    dirs = random_directions(model.config.hidden_size, args.directions, seed=0)
    longest = max(len(ids) for ids in tok(prompts)["input_ids"])
    ext_batch = resolve_batch_size(model, args.batch, longest)
    abl_batch = (
        resolve_batch_size(model, "auto", longest, rows_per_prompt=ROWS_PER_BATCH_FACTOR)
        if args.batch == "auto"
        else max(1, int(args.batch) // 2)
    )
    print(f"{size}: batch {ext_batch} (extraction), {abl_batch} (ablation)", flush=True)
    # warm-up
    extract_activations(model, tok, prompts[:8], layers, batch_size=ext_batch)
    ablation_effects(model, tok, abl_prompts[:4], answers, layer, dirs[:2])

    def mfu(tokens: float, seconds: float) -> str:
        return f"{100 * 2 * n_par * tokens / seconds / peak:.1f}%" if peak else "?"

    params = f"{n_par / 1e9:.2f}B"
    tok_ext = n_tokens(tok, prompts)
    t = timed(
        lambda: extract_activations(model, tok, prompts, layers, batch_size=ext_batch), args.device
    )
    rows = [[size, params, f"extract blocks {layers}", round(tok_ext / t), mfu(tok_ext, t)]]
    tok_abl = n_tokens(tok, abl_prompts) * args.directions
    for fanout in (True, False):
        t = timed(
            lambda fanout=fanout: ablation_effects(
                model,
                tok,
                abl_prompts,
                answers,
                layer,
                dirs,
                batch_size=abl_batch,
                fanout=fanout,
            ),
            args.device,
        )
        work = f"ablate block {layer}, {args.directions} dirs, fanout={fanout}"
        rows.append([size, params, work, round(tok_abl / t), mfu(tok_abl, t)])
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1B only, few prompts")
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--prompts", type=int, default=2048, help="extraction prompts")
    ap.add_argument("--ablation-prompts", type=int, default=256)
    ap.add_argument("--directions", type=int, default=32)
    ap.add_argument(
        "--batch",
        type=lambda v: v if v == "auto" else int(v),
        default="auto",
        help="prompts per pass, or auto (from free GPU memory, as the workflow does)",
    )
    ap.add_argument("--peak", type=float, default=None, help="peak bf16 FLOP/s if not listed")
    ap.add_argument(
        "--device", default="cuda", choices=["cuda", "cpu"], help="cpu: check the script runs"
    )
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA device here; nothing to measure (run it on a GPU).")
        return 0
    from crossprobe.models import answer_token_ids

    sizes = ["1B"] if args.quick else args.sizes
    n_ext, n_abl = (256, 32) if args.quick else (args.prompts, args.ablation_prompts)
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    peak = peak_flops(name, args.peak) if args.device == "cuda" else args.peak
    m = machine()
    print(f"{name} · torch {m['torch']} · transformers {m['transformers']} · {m['date']}")
    print(f"peak bf16 {peak:.3g} FLOP/s" if peak else "peak bf16 unknown: pass --peak")
    tok = word_tokenizer()
    prompts = word_prompts(n_ext)
    abl_prompts = prompts[:n_abl]
    answers = answer_token_ids(tok, ("True", "False"), model="llama")
    rows = []
    for size in sizes:
        model = build(size, args.device)
        rows += measure(size, model, tok, prompts, abl_prompts, answers, args, peak)
        del model
        if args.device == "cuda":
            torch.cuda.empty_cache()
    print()
    print(table(["model", "params", "work", "tokens/s", "MFU (2·N·tokens)"], rows))
    print(
        "\nAblation tokens count every (direction × prompt) token the naive loop would run; "
        "MFU above 100% would mean the fan-out skipped that much work."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
