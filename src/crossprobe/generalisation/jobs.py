"""Jobs of the generalisation study."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from crossprobe.io import atomic_path
from crossprobe.jobs import (
    concat_tables,
)


def _test_sets(paths: list[str]) -> dict[str, dict[int, tuple[np.ndarray, np.ndarray]]]:
    from crossprobe.cache import open_store

    out = {}
    for path in paths:
        store = open_store(path)
        rows = np.flatnonzero(store.split() == "test")
        y = store.labels()[rows]
        out[store.attrs["dataset"]] = {
            layer: (store.layer(layer, rows), y) for layer in store.layers
        }
    return out


def generalise(smk: Any) -> None:
    """Train-on-A, test-on-B matrix for one model, with its heatmaps."""
    from crossprobe.generalisation.plots import plot_generalisation
    from crossprobe.generalisation.scores import generalisation_table
    from crossprobe.probes import load_probes

    model = smk.wildcards.model
    probes = {Path(p).stem: load_probes(p) for p in smk.input.probes}
    table = generalisation_table(model, probes, _test_sets(list(smk.input.stores)))
    with atomic_path(smk.output.table) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    plot_generalisation(table, model, smk.output.figure)


JOBS = {"generalise": generalise, "generalisation_table": concat_tables}
MODEL_JOBS: frozenset[str] = frozenset()
