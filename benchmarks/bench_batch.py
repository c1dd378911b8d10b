"""``batch_size: auto`` on CPU: the batch each memory budget picks, and what it runs at.

On a GPU ``auto`` sizes batches from free memory; on CPU it sizes them from
:data:`crossprobe.models.CPU_AUTO_MEMORY`, where the fastest batch is set by caches, not by
memory. This benchmark measures, side by side in one process, extraction (tokens/s) and
ablation ((direction × prompt)/s) at the batch that each candidate budget gives, on the zoo
model and the random-init 162M Llama, with the same prompts and layers the workflow uses
(layers ``[0.0, 0.5, 1.0]``; 32 random directions ablated at depth 0.5). Every rate is also
given as a share of the best batch measured for that workload. Run from the repository root::

    .venv/bin/python benchmarks/bench_batch.py            # default, about 10 minutes on 2 cores
    .venv/bin/python benchmarks/bench_batch.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    llama_100m,
    n_params,
    n_tokens,
    print_machine,
    table,
    word_prompts,
    word_tokenizer,
    zoo_model,
)

from crossprobe.ablate import (  # noqa: E402
    ROWS_PER_BATCH_FACTOR,
    ablation_effects,
    random_directions,
    token_margins,
)
from crossprobe.extract import extract_activations  # noqa: E402
from crossprobe.models import (  # noqa: E402
    CPU_AUTO_MEMORY,
    answer_token_ids,
    auto_batch_size,
    hidden_size,
    num_layers,
    resolve_layers,
)

#: Candidate CPU budgets in bytes (the current default is marked in the output).
BUDGETS = [2**22, 2**23, 2**24, 2**25, 2**26, 2**28]


def _mib(b: int) -> str:
    return f"{b / 2**20:g} MiB" + (" (default)" if b == CPU_AUTO_MEMORY else "")


def sweep(
    title: str,
    unit: str,
    work: float,
    batches: dict[int, list[int]],
    run: Callable[[int], np.ndarray],
    rounds: int,
) -> None:
    """Time ``run(batch)`` for every distinct batch (interleaved, best round) and print rates
    per budget. ``batches`` maps each batch size to the budgets that pick it."""
    sizes = sorted(batches)
    best_t = {b: float("inf") for b in sizes}
    ref: np.ndarray | None = None
    worst = 0.0
    run(sizes[0])  # warm-up
    for _ in range(rounds):
        for b in sizes:
            t = time.perf_counter()
            out = run(b)
            best_t[b] = min(best_t[b], time.perf_counter() - t)
            if ref is None:
                ref = out
            worst = max(worst, float(np.abs(out - ref).max()))
    rate = {b: work / best_t[b] for b in sizes}
    top = max(rate.values())
    rows = [
        [", ".join(_mib(x) for x in batches[b]) or "fixed", b, round(rate[b], 1), rate[b] / top]
        for b in sizes
    ]
    print(f"\n#### {title}; best of {rounds} rounds; results agree to {worst:.1e}\n")
    print(table(["budget", "batch", unit, "× best"], rows))


def batches_for(
    config, seq_len: int, rows_per_prompt: int, fixed: list[int], n: int
) -> dict[int, list[int]]:
    """Batch size → the budgets that pick it (fixed sizes too), at most ``n`` prompts."""
    out: dict[int, list[int]] = {min(b, n): [] for b in fixed}
    for budget in BUDGETS:
        b = auto_batch_size(config, seq_len, budget, 4, rows_per_prompt)
        out.setdefault(min(b, n), []).append(budget)
    return out


def bench_model(name, model, tok, prompts, answers, *, n_ablate: int, k: int, rounds: int) -> None:
    n_blocks = num_layers(model.config)
    layers = resolve_layers([0.0, 0.5, 1.0], n_blocks)
    seq_len = max(len(ids) for ids in tok(prompts)["input_ids"])
    label = f"{name}: {n_params(model) / 1e6:.1f}M parameters, prompts up to {seq_len} tokens"

    ex = batches_for(model.config, seq_len, 1, [16, 32, 64], len(prompts))
    sweep(
        f"{label}: extraction of blocks {layers}, {len(prompts)} prompts",
        "tokens/s",
        n_tokens(tok, prompts),
        ex,
        lambda b: extract_activations(model, tok, prompts, layers, batch_size=b),
        rounds,
    )

    layer = resolve_layers([0.5], n_blocks)[0]
    d = random_directions(hidden_size(model.config), k, seed=0)
    ap = prompts[:n_ablate]
    clean = token_margins(model, tok, ap, answers, batch_size=32)
    ab = batches_for(model.config, seq_len, ROWS_PER_BATCH_FACTOR, [4, 8, 16], len(ap))
    sweep(
        f"{label}: ablation at block {layer}, {k} directions × {len(ap)} prompts",
        "(direction×prompt)/s",
        k * len(ap),
        ab,
        lambda b: ablation_effects(model, tok, ap, answers, layer, d, batch_size=b, clean=clean),
        rounds,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: few prompts, one round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rounds = 1 if args.quick else args.rounds
    print_machine()

    k = 4 if args.quick else 32
    zoo, zoo_tok, zoo_prompts = zoo_model()
    zoo_answers = answer_token_ids(zoo_tok, (" True", " False"), model="zoo")
    tok = word_tokenizer()
    answers = answer_token_ids(tok, ("True", "False"), model="llama")
    runs = [  # name, model, tokenizer, prompts, answers, prompts ablated
        (
            "zoo model (random-init Llama, 3 blocks, width 64)",
            lambda: zoo,
            zoo_tok,
            zoo_prompts[:64] if args.quick else zoo_prompts,
            zoo_answers,
            32 if args.quick else 256,
        ),
        (
            "Llama 768×12 (eager attention)",
            lambda: llama_100m("eager"),
            tok,
            word_prompts(16 if args.quick else 256),
            answers,
            8 if args.quick else 32,
        ),
    ]
    for name, build, model_tok, prompts, model_answers, n_ablate in runs:
        bench_model(
            name, build(), model_tok, prompts, model_answers, n_ablate=n_ablate, k=k, rounds=rounds
        )


if __name__ == "__main__":
    main()
