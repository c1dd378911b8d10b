"""Directional-ablation throughput in (direction × prompt)/s: crossprobe against a naive loop.

The naive loop ablates one direction at a time: for each direction and each prompt batch, a full
forward pass with a hook on the ablated block, full logits, margin at the last token from the
mask. ``crossprobe`` is :func:`crossprobe.ablate.ablation_effects` (blocks below the layer run
once per prompt batch); ``crossprobe fanout=False`` runs the whole model on the directions ×
prompts batch. All run side by side in one process, interleaved round by round (best round
counts), and the Δm of each is compared with crossprobe's. Run from the repository root::

    .venv/bin/python benchmarks/bench_ablate.py            # default, a few minutes on 2 cores
    .venv/bin/python benchmarks/bench_ablate.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    llama_100m,
    n_params,
    print_machine,
    table,
    word_prompts,
    word_tokenizer,
    zoo_model,
)

from crossprobe.ablate import ablation_effects, random_directions, unit_directions  # noqa: E402
from crossprobe.models import (  # noqa: E402
    answer_token_ids,
    decoder_blocks,
    hidden_size,
    last_token_index,
    num_layers,
    replace_block_output,
    resolve_layers,
)

BATCH = 32


def naive(model, tok, prompts, answers, layer, directions) -> np.ndarray:
    """One direction at a time, a full forward pass per prompt batch."""
    block = decoder_blocks(model)[layer]
    u = unit_directions(directions)

    def margins(hook_u: torch.Tensor | None) -> np.ndarray:
        out = []
        for s in range(0, len(prompts), BATCH):
            tok.padding_side = "right"
            enc = tok(prompts[s : s + BATCH], return_tensors="pt", padding=True)
            handle = None
            if hook_u is not None:

                def hook(_m, _a, o, v=hook_u):
                    x = o if isinstance(o, torch.Tensor) else o[0]
                    return replace_block_output(o, x - (x @ v)[..., None] * v)

                handle = block.register_forward_hook(hook)
            try:
                logits = model(**enc, use_cache=False).logits
            finally:
                if handle is not None:
                    handle.remove()
            last = last_token_index(enc["attention_mask"])
            at = logits[torch.arange(len(last)), last].float()
            out.append((at[:, answers[0]] - at[:, answers[1]]).numpy())
        return np.concatenate(out)

    clean = margins(None)
    return np.stack([margins(u[k]) - clean for k in range(u.shape[0])])


def bench(name, model, tok, prompts, answers, k, rounds, batch) -> dict[str, float]:
    n_blocks = num_layers(model.config)
    layer = resolve_layers([0.75], n_blocks)[0]
    d = random_directions(hidden_size(model.config), k, seed=0)
    methods = {
        "crossprobe": lambda: ablation_effects(
            model, tok, prompts, answers, layer, d, batch_size=batch
        ),
        "crossprobe fanout=False": lambda: ablation_effects(
            model, tok, prompts, answers, layer, d, batch_size=batch, fanout=False
        ),
        "naive loop": lambda: naive(model, tok, prompts, answers, layer, d),
    }
    with torch.inference_mode():  # warm-up
        for fn in (
            lambda: ablation_effects(model, tok, prompts[:4], answers, layer, d[:2]),
            lambda: naive(model, tok, prompts[:4], answers, layer, d[:1]),
        ):
            fn()
    times = {m: float("inf") for m in methods}
    results = {}
    for _ in range(rounds):
        for m, fn in methods.items():
            with torch.inference_mode():
                t = time.perf_counter()
                results[m] = fn()
                times[m] = min(times[m], time.perf_counter() - t)
    ref = results["crossprobe"]
    rate = {m: k * len(prompts) / times[m] for m in methods}
    rows = [
        [
            m,
            round(rate[m], 1),
            round(rate["crossprobe"] / rate[m], 2),
            f"{float(np.abs(results[m] - ref).max()):.2e}",
        ]
        for m in methods
    ]
    print(
        f"\n### {name}: {n_params(model) / 1e6:.1f}M parameters, {n_blocks} blocks, ablated "
        f"block {layer} (depth 0.75), {k} directions × {len(prompts)} prompts, batch {batch}, "
        f"best of {rounds} rounds; Δm scale (max |Δm|) {float(np.abs(ref).max()):.3g}\n"
    )
    print(table(["method", "(direction×prompt)/s", "crossprobe ×", "max |ΔΔm|"], rows))
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: few prompts and directions")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--directions", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    n, k, rounds = (8, 4, 1) if args.quick else (args.prompts, args.directions, args.rounds)
    print_machine()

    zoo, zoo_tok, zoo_prompts = zoo_model()
    zp = zoo_prompts[:: max(1, len(zoo_prompts) // 256)][: max(n, 256)]
    za = answer_token_ids(zoo_tok, (" True", " False"), model="zoo")
    bench(
        "zoo model (random-init Llama, 3 blocks, width 64)",
        zoo,
        zoo_tok,
        zp,
        za,
        k,
        max(rounds, 3),
        64,
    )

    big = llama_100m("eager")
    tok = word_tokenizer()
    prompts = word_prompts(n)
    answers = answer_token_ids(tok, ("True", "False"), model="llama")
    rate = bench("Llama 768×12", big, tok, prompts, answers, k, rounds, 32)
    r = rate["crossprobe"] / rate["naive loop"]
    print(f"\ngoal (100M): ≥ 3× the naive loop: {r:.2f}× {'met' if r >= 3 else 'missed'}")


if __name__ == "__main__":
    main()
