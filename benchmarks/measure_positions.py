"""Attention sinks, the effect of leaving them out of the ablation, and the bfloat16 offset,
measured on real models (converted folders, e.g. ``runs/real/results/models/<name>``).

Per model, on ``larger_than`` (the built-in family's rows and splits):

- ``‖x₀‖`` (the first position's block output) against the median ``‖x_t‖`` over the other
  prompt positions, at the measured blocks;
- the RMS over test positives of ``Δm`` for the ``dim`` and ``logreg`` probes (fitted here on
  ``--train`` train rows) and the median over ``--null`` random directions of theirs, with
  ``transfer.positions`` ``all`` and ``skip_first``;
- in bfloat16: the RMS of a zero direction's ``Δm`` when the clean margin comes from a separate
  clean pass (the offset the in-pass reference removes) against the null's median RMS.

    python benchmarks/measure_positions.py runs/real/results/models/smollm2-135m \\
        runs/real/results/models/gemma-3-270m [--prompts 64] [--train 400] [--null 16]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import print_machine, table

from crossprobe.ablate import (
    _clean_passes,
    _encode,
    _margins,
    _replay,
    ablation_effects_by_layer,
    final_norm,
    random_directions,
)
from crossprobe.datasets import FAMILIES, format_prompt, generate_builtin, with_splits
from crossprobe.extract import extract_activations
from crossprobe.models import (
    answer_token_ids,
    block_output_tensor,
    decoder_blocks,
    forward_hooks,
    hidden_size,
    load_model,
    load_tokenizer,
)
from crossprobe.probes import fit_dim, fit_logreg
from crossprobe.stats import auroc


def rms(a: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.sqrt(np.mean(np.asarray(a, np.float64) ** 2, axis=axis))


def sink_norms(model, tok, prompts: list[str], blocks: list[int]) -> dict[int, tuple[float, float]]:
    """Median ‖x₀‖ and median ‖x_t‖ (t ≥ 1, real tokens) per block."""
    ids, mask = _encode(tok, prompts, model.device)
    out: dict[int, torch.Tensor] = {}

    def hook(layer: int):
        def f(_m, _a, output):
            out[layer] = block_output_tensor(output).float().norm(dim=-1)

        return f

    layers = decoder_blocks(model)
    with torch.inference_mode(), forward_hooks([(layers[b], hook(b)) for b in blocks]):
        model(input_ids=ids, attention_mask=mask, use_cache=False)
    res = {}
    for b in blocks:
        n = out[b]
        rest = n[:, 1:][mask[:, 1:].bool()]
        res[b] = (float(n[:, 0].median()), float(rest.median()))
    return res


def bf16_offset(model, tok, prompts, answers, layer: int) -> float:
    """RMS of (replayed unablated margin − separate clean pass margin), the old reference."""
    norm = final_norm(model)
    got = []
    with torch.inference_mode():
        for start in range(0, len(prompts), 16):
            ids, mask = _encode(tok, prompts[start : start + 16], model.device)
            rec = _clean_passes(model, [layer], ids, mask, answers)[layer]
            from crossprobe.models import last_token_index

            zero = torch.zeros(9, hidden_size(model.config))
            m = _margins(
                _replay(model, layer, rec, last_token_index(mask), zero, "layer", norm, answers)
            ).reshape(9, -1)
            got.append(m - _margins(rec.logits)[None])
    return float(rms(np.concatenate(got, axis=1).ravel()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--train", type=int, default=400)
    ap.add_argument("--null", type=int, default=16)
    args = ap.parse_args()
    print_machine()
    fam = FAMILIES["larger_than"]
    df = with_splits(generate_builtin("larger_than"))
    train = df[df["split"] == "train"].head(args.train)
    test_pos = df[(df["split"] == "test") & (df["label"] == 1)].head(args.prompts)
    tmpl = fam.template
    p_train = [format_prompt(tmpl, s) for s in train["statement"]]
    p_test = [format_prompt(tmpl, s) for s in test_pos["statement"]]
    norm_rows, fx_rows, bf_rows = [], [], []
    for path in args.models:
        name = path.rstrip("/").split("/")[-1]
        tok = load_tokenizer(path)
        model = load_model(path, dtype="float32", device="cpu")
        answers = answer_token_ids(tok, fam.answers, model=name)
        n = len(decoder_blocks(model))
        blocks = [0, round(0.25 * (n - 1)), round(0.5 * (n - 1)), n - 1]
        first = tok(p_test[:1])["input_ids"][0][:2]
        print(f"{name}: first tokens {tok.convert_ids_to_tokens(first)}", flush=True)
        for b, (x0, xt) in sink_norms(model, tok, p_test[:32], blocks).items():
            norm_rows.append([name, b, round(x0), round(xt), round(x0 / xt, 1)])
        print(table(["model", "block", "‖x₀‖", "median ‖x_t‖", "ratio"], norm_rows), flush=True)
        fx_layers = [0, round(0.5 * (n - 1)), n - 1]
        t0 = time.perf_counter()
        acts = extract_activations(model, tok, p_train, fx_layers, batch_size=32)
        y = train["label"].to_numpy()
        test_acts = extract_activations(
            model,
            tok,
            [format_prompt(tmpl, s) for s in df[df.split == "test"]["statement"]],
            fx_layers,
            batch_size=32,
        )
        yt = df[df.split == "test"]["label"].to_numpy()
        dirs, aurocs = {}, {}
        for i, layer in enumerate(fx_layers):
            probes = [fit_dim(acts[:, i], y, layer), fit_logreg(acts[:, i], y, layer)]
            aurocs[layer] = [auroc(yt, p.score(test_acts[:, i])) for p in probes]
            null = random_directions(hidden_size(model.config), args.null, seed=layer)
            dirs[layer] = np.concatenate([np.stack([p.direction for p in probes]), null])
        print(f"{name}: probes fitted in {time.perf_counter() - t0:.0f} s", flush=True)
        res = {}
        for positions in ("all", "skip_first"):
            t0 = time.perf_counter()
            res[positions] = ablation_effects_by_layer(
                model, tok, p_test, answers, dirs, positions=positions, batch_size=16
            ).effects
            print(f"{name} {positions}: {time.perf_counter() - t0:.0f} s", flush=True)
        for layer in fx_layers:
            row = [name, layer, f"{aurocs[layer][0]:.2f} / {aurocs[layer][1]:.2f}"]
            for positions in ("all", "skip_first"):
                r = rms(res[positions][layer])
                null = float(np.median(r[2:]))
                row += [round(null, 4), round(r[0] / null, 2), round(r[1] / null, 3)]
            fx_rows.append(row)
        print(
            table(
                [
                    "model",
                    "block",
                    "AUROC dim / logreg",
                    "null RMS (all)",
                    "dim ×null (all)",
                    "logreg ×null (all)",
                    "null RMS (skip_first)",
                    "dim ×null (skip_first)",
                    "logreg ×null (skip_first)",
                ],
                fx_rows,
            ),
            flush=True,
        )
        model = load_model(path, dtype="bfloat16", device="cpu")
        mid = round(0.5 * (n - 1))
        off = bf16_offset(model, tok, p_test[:32], answers, mid)
        null = random_directions(hidden_size(model.config), args.null, seed=mid)
        fx = ablation_effects_by_layer(
            model,
            tok,
            p_test[:32],
            answers,
            {mid: np.concatenate([np.zeros((1, null.shape[1]), np.float32), null])},
            positions="skip_first",
            batch_size=16,
        ).effects[mid]
        bf_rows.append([name, mid, off, float(rms(fx[0])), float(np.median(rms(fx[1:])))])
        print(
            table(
                [
                    "model",
                    "block",
                    "separate-pass offset RMS",
                    "in-pass zero RMS",
                    "null median RMS",
                ],
                bf_rows,
            ),
            flush=True,
        )
        del model


if __name__ == "__main__":
    main()
