"""Ablating at several layers: one clean pass per prompt batch for all layers, against one per
layer (each layer's own fan-out, after a separate clean-margin pass), side by side.

The model has SmolLM2-135M's shape (Llama, 30 blocks, width 576, 9 heads / 3 key-value heads,
MLP 1536, vocabulary 49,152; random init, float32, SDPA), ablated at blocks 15 / 22 / 29 (the
real run's depths 0.5 / 0.75 / 1.0) on word prompts of 10–20 tokens. Two workloads: 2 directions
per layer (a carried ablation: one source's dim and logreg probes) and 18 (a self-ablation: two
probes and 16 null directions).

    python benchmarks/bench_ablate_layers.py [--prompts 64] [--rounds 2]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _common import best_of, print_machine, table, word_prompts, word_tokenizer
from transformers import LlamaConfig, LlamaForCausalLM

from crossprobe.ablate import ablation_effects, ablation_effects_by_layer, token_margins

LAYERS = (15, 22, 29)


def smollm2_shape(vocab: int) -> LlamaForCausalLM:
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        tie_word_embeddings=True,
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).eval()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print_machine()
    tok = word_tokenizer()
    model = smollm2_shape(len(tok))
    prompts = word_prompts(args.prompts, lo=10, hi=20)
    answers = (tok.convert_tokens_to_ids("True"), tok.convert_tokens_to_ids("False"))
    rng = np.random.default_rng(0)
    rows = []
    for k in (2, 18):
        dirs = {layer: rng.standard_normal((k, 576)).astype(np.float32) for layer in LAYERS}

        def per_layer(dirs=dirs):
            clean = token_margins(model, tok, prompts, answers, batch_size=args.batch)
            return {
                layer: ablation_effects(
                    model, tok, prompts, answers, layer, d, batch_size=args.batch, clean=clean
                )
                for layer, d in dirs.items()
            }

        def shared(dirs=dirs):
            res = ablation_effects_by_layer(
                model, tok, prompts, answers, dirs, batch_size=args.batch
            )
            return res.effects

        t_old, old = best_of(per_layer, args.rounds)
        t_new, new = best_of(shared, args.rounds)
        diff = max(float(np.abs(old[layer] - new[layer]).max()) for layer in LAYERS)
        rows.append(
            [
                f"{k} per layer × 3 layers",
                f"{len(prompts) / t_old:.2f}",
                f"{len(prompts) / t_new:.2f}",
                f"{t_old / t_new:.2f}x",
                f"{diff:.2g}",
            ]
        )
    print(
        table(
            [
                "directions",
                "one clean pass per layer (prompts/s)",
                "one shared clean pass (prompts/s)",
                "speed-up",
                "max |ΔΔm|",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
