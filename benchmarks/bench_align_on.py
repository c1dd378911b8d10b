"""What the choice of alignment rows (`transfer.align_on`) does to the maps, on a finished run.

For every ordered pair of the run's models, every dataset and layer pair, a map is fit twice
from the cached activations: on that dataset's own `align` rows (`align_on: each`) and on the
`align` rows of every dataset pooled (`align_on: [all of them]`). For each probe it reports the
map's held-out R², the carried direction's relative length, the cosine between the two carried
directions, the cosine with the target's own probe, and the transfer AUROC (the carried weight
scoring the target's `test` rows) against the source's own AUROC. A third map stands for an
exact copy of the source: the source's activations rotated by a Haar-random orthogonal Q, for
which the true image of a direction u is Q·u (its cosine with the carried direction is the
known answer, 1).

No model runs: only stores and probes are read (seconds to a minute on 2 cores).

    python benchmarks/bench_align_on.py runs/real/results
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from crossprobe.align import carry, fit_map
from crossprobe.cache import open_store
from crossprobe.probes import load_probes
from crossprobe.stats import auroc


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else float("nan")


def _align(store, layer: int) -> np.ndarray:
    return store.layer(layer, np.flatnonzero(store.split() == "align"))


def _test(store, layer: int) -> tuple[np.ndarray, np.ndarray]:
    rows = np.flatnonzero(store.split() == "test")
    return store.layer(layer, rows), store.labels()[rows]


def measure(results: Path, models: list[str], datasets: list[str], seed: int) -> pd.DataFrame:
    stores = {
        (m, d): open_store(results / "activations" / m / f"{d}.zarr")
        for m in models
        for d in datasets
    }
    probes = {
        (m, d): load_probes(results / "probes" / m / f"{d}.safetensors")
        for m in models
        for d in datasets
    }
    rows = []
    for s, t in itertools.permutations(models, 2):
        first_s, first_t = stores[(s, datasets[0])], stores[(t, datasets[0])]
        pairs = zip(
            first_s.attrs["layers_by_position"], first_t.attrs["layers_by_position"], strict=True
        )
        for ls, lt in sorted(set(pairs)):
            xs_all = {d: _align(stores[(s, d)], ls) for d in datasets}
            xt_all = {d: _align(stores[(t, d)], lt) for d in datasets}
            pooled = fit_map(
                np.concatenate(list(xs_all.values())), np.concatenate(list(xt_all.values()))
            )
            q = np.linalg.qr(
                np.random.default_rng(seed).standard_normal((xs_all[datasets[0]].shape[1],) * 2)
            )[0]
            copy_pooled = fit_map(
                np.concatenate(list(xs_all.values())), np.concatenate(list(xs_all.values())) @ q.T
            )
            for d in datasets:
                each = fit_map(xs_all[d], xt_all[d])
                copy_each = fit_map(xs_all[d], xs_all[d] @ q.T)
                xs_te, ys = _test(stores[(s, d)], ls)
                xt_te, yt = _test(stores[(t, d)], lt)
                for (method, layer), p in sorted(probes[(s, d)].items()):
                    if layer != ls:
                        continue
                    own_t = probes[(t, d)][(method, lt)].direction
                    truth = q @ p.direction
                    base = {
                        "source": s,
                        "target": t,
                        "dataset": d,
                        "method": method,
                        "source_layer": ls,
                        "target_layer": lt,
                        "source_auroc": auroc(ys, p.score(xs_te)),
                    }
                    c_each, c_pool = carry(each, p.direction, 0.0), carry(pooled, p.direction, 0.0)
                    ce = carry(copy_each, p.direction, 0.0)
                    cp = carry(copy_pooled, p.direction, 0.0)
                    for choice, fmap, c, cc in (
                        ("each", each, c_each, ce),
                        ("pooled", pooled, c_pool, cp),
                    ):
                        rows.append(
                            {
                                **base,
                                "align_on": choice,
                                "fit_rows": int(
                                    len(xs_all[d])
                                    if choice == "each"
                                    else sum(len(x) for x in xs_all.values())
                                ),
                                "map_r2": fmap.r2_forward,
                                "carried_length": c.length,
                                "cos_each_pooled": _cos(c_each.vector, c_pool.vector),
                                "cos_target_probe": _cos(c.vector, own_t),
                                "transfer_auroc": auroc(yt, xt_te @ fmap.carry_weight(p.weight)),
                                "copy_cos_truth": _cos(cc.vector, truth),
                                "copy_length": cc.length,
                            }
                        )
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, help="a finished run's results/ folder")
    ap.add_argument("--models", nargs="*", help="models to pair (default: every model folder)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="write the per-probe rows here (CSV)")
    args = ap.parse_args()
    models = args.models or sorted(p.name for p in (args.results / "probes").iterdir())
    datasets = sorted(p.stem for p in (args.results / "probes" / models[0]).glob("*.safetensors"))
    df = measure(args.results, models, datasets, args.seed)
    if args.out:
        df.to_csv(args.out, index=False, float_format="%.6g")
    cols = [
        "fit_rows",
        "map_r2",
        "carried_length",
        "cos_target_probe",
        "transfer_auroc",
        "source_auroc",
        "copy_cos_truth",
        "copy_length",
    ]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(df.groupby(["align_on", "method"])[cols].median().round(3).to_string())
        print()
        print("minimum over cells:")
        print(
            df.groupby(["align_on", "method"])[["copy_cos_truth", "copy_length", "carried_length"]]
            .min()
            .round(3)
            .to_string()
        )
        print()
        print("|transfer AUROC - source AUROC|, median:")
        df["auroc_gap"] = (df["transfer_auroc"] - df["source_auroc"]).abs()
        print(df.groupby(["align_on", "method"])["auroc_gap"].median().round(3).to_string())
        print(f"\ncos(each, pooled) median {df['cos_each_pooled'].median():.3f}")


if __name__ == "__main__":
    main()
