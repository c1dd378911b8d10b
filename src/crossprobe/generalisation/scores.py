"""Cross-dataset generalisation: a probe trained on dataset A, scored on dataset B's test rows."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from crossprobe.probes import Probe
from crossprobe.stats import accuracy, auroc

COLUMNS = [
    "model",
    "layer",
    "method",
    "train_dataset",
    "eval_dataset",
    "n",
    "auroc",
    "accuracy",
    "recovered_accuracy",
]


def generalisation_table(
    model: str,
    probes: Mapping[str, Mapping[tuple[str, int], Probe]],
    test_sets: Mapping[str, Mapping[int, tuple[np.ndarray, np.ndarray]]],
) -> pd.DataFrame:
    """Score every probe (per train dataset, method, layer) on every dataset's test rows.

    ``probes[A][(method, layer)]`` is the probe trained on A; ``test_sets[B][layer]`` holds
    B's test activations and labels at that layer. Recovered accuracy is acc(A -> B) divided by
    the best in-distribution accuracy on B at the same layer (over probe methods).
    """
    rows = []
    for train_ds, by_key in probes.items():
        for (method, layer), probe in sorted(by_key.items()):
            for eval_ds, layers in test_sets.items():
                x, y = layers[layer]
                s = probe.score(x)
                rows.append(
                    {
                        "model": model,
                        "layer": layer,
                        "method": method,
                        "train_dataset": train_ds,
                        "eval_dataset": eval_ds,
                        "n": int(y.size),
                        "auroc": auroc(y, s),
                        "accuracy": accuracy(y, s),
                    }
                )
    df = pd.DataFrame(rows, columns=COLUMNS[:-1])
    in_dist = df[df.train_dataset == df.eval_dataset]
    best = in_dist.groupby(["layer", "eval_dataset"])["accuracy"].max()
    ref = best.reindex(pd.MultiIndex.from_frame(df[["layer", "eval_dataset"]])).to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        df["recovered_accuracy"] = df["accuracy"].to_numpy() / ref
    return df[COLUMNS]
