"""Jobs of AB against AA: text embeddings and cross-model labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crossprobe import __version__
from crossprobe.jobs import (
    concat_csv,
    log,
    timed,
    torch_threads,
    write_csv,
)


def embed(smk: Any) -> None:
    """A text baseline's embedding of every statement of one dataset, stored as activations
    (one layer, 0) so that every probe of the run is fit on it like on a model."""
    from crossprobe.cache import write_store
    from crossprobe.crosslabels.baseline import (
        DEFAULT_MODEL,
        bundled_model_path,
        embed_rows,
        load_embedder,
    )
    from crossprobe.datasets import read_dataset

    torch_threads()
    b = smk.params.baseline
    df = read_dataset(smk.input.dataset)
    name = b["source"] or DEFAULT_MODEL  # None: the bundled copy of all-MiniLM-L6-v2
    with timed("load"):
        embedder = load_embedder(
            b["source"] or bundled_model_path(), mean_pool=b["run_model"] is not None
        )
    texts = df["statement"].astype(str).tolist()
    dim = int(embedder.get_embedding_dimension())
    log.info("%s: %d statements with %s (%d dimensions)", b["name"], len(texts), name, dim)
    write_store(
        smk.output[0],
        extract_rows=embed_rows(embedder, texts, batch_size=b["batch_size"]),
        n_rows=len(df),
        layers=[0],
        d_model=dim,
        labels=df["label"].to_numpy(),
        split=df["split"].to_numpy(),
        row_hash=df["row_hash"].to_numpy(),
        attrs={
            "model": b["name"],
            "model_source": name if b["run_model"] is None else f"{b['run_model']} (mean-pooled)",
            "revision": None,
            "dtype": "float32",
            "n_layers": 1,
            "layer_spec": [0],
            "layers_by_position": [0] * b["n_positions"],
            "position": "sentence embedding",
            "dataset": smk.wildcards.dataset,
            "template": "{statement}",
            "baseline": True,
            "crossprobe_version": __version__,
        },
    )


def crosslabels(smk: Any) -> None:
    """Probes on each model's (and baseline's) activations for every model's own labels of one
    dataset (results/crosslabels/<dataset>.csv)."""
    from crossprobe.cache import open_store
    from crossprobe.crosslabels.labels import COLUMNS, common_rows, crosslabel_rows, label_series
    from crossprobe.datasets import read_dataset
    from crossprobe.errors import CacheError

    df = read_dataset(smk.input.dataset)
    hashes = df["row_hash"].to_numpy()
    labels = {}  # (kind, labels model) -> labels by row hash
    for path in smk.input.answers:  # results/effects/<model>/<dataset>/answer.parquet
        labels[("margin", Path(path).parents[1].name)] = label_series(
            "margin", pd.read_parquet(path)
        )
    for path in smk.input.ratings:  # results/ratings/<model>/<dataset>.parquet
        labels[("self_rating", Path(path).parent.name)] = label_series(
            "self_rating", pd.read_parquet(path)
        )
    rows = common_rows(hashes, labels)
    rows = rows[df["split"].to_numpy()[rows] == "test"]
    log.info("%d test rows carry every label (%d label sets)", len(rows), len(labels))
    y = {key: s.loc[hashes[rows]].to_numpy() for key, s in labels.items()}
    groups = df["split_key"].to_numpy()[rows]
    table: list[dict[str, Any]] = []
    for path in smk.input.stores:
        store = open_store(path)
        if not np.array_equal(store.row_hash(), hashes):
            raise CacheError(f"{path}: its rows are not those of {smk.input.dataset}; rerun")
        by_pos = [int(x) for x in store.attrs["layers_by_position"]]
        x = {layer: store.layer(layer, rows) for layer in dict.fromkeys(by_pos)}
        table += crosslabel_rows(
            store.attrs["model"],
            smk.wildcards.dataset,
            by_pos,
            x,
            groups,
            y,
            folds=smk.params.folds,
        )
        log.info("%s: done", store.attrs["model"])
    write_csv(smk.output[0], pd.DataFrame(table, columns=COLUMNS))


def crosslabels_table(smk: Any) -> None:
    """crosslabels.csv over every (activations, dataset), its AA-against-AB summary and figure."""
    from crossprobe.crosslabels.labels import own_against_others
    from crossprobe.crosslabels.plots import plot_crosslabels

    table = concat_csv(smk.input)
    write_csv(smk.output.table, table)
    write_csv(smk.output.summary, own_against_others(table))
    plot_crosslabels(table, smk.output.figure)


JOBS = {"embed": embed, "crosslabels": crosslabels, "crosslabels_table": crosslabels_table}
MODEL_JOBS: frozenset[str] = frozenset()
