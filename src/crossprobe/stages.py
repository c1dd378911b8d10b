"""Jobs of the shared stages every study builds on: dataset tables, GGUF conversion,
activation extraction and probe training."""

from __future__ import annotations

from typing import Any

import numpy as np

from crossprobe import __version__
from crossprobe.jobs import (
    batch_size_for,
    dataset_spec,
    layers_by_position,
    load_model,
    log,
    model_attrs,
    model_prompts,
    model_spec,
    timed,
    torch_threads,
)


def dataset(smk: Any) -> None:
    """Build a dataset table with deterministic hash splits."""
    from crossprobe.datasets import (
        generate_builtin,
        read_table,
        validate_table,
        with_splits,
        write_dataset,
    )

    spec = dataset_spec(smk)
    if spec.builtin:
        df = generate_builtin(spec.builtin)
        source = f"built-in family {spec.builtin!r}"
    else:
        assert spec.path is not None  # a dataset is built-in or a file (validate_config)
        df = read_table(spec.path)
        source = str(spec.path)
    validate_table(df, source=source)
    out = with_splits(df, smk.params.splits, group=spec.group)
    log.info("%s: %d rows, splits %s", spec.name, len(out), out["split"].value_counts().to_dict())
    write_dataset(out, smk.output[0])


def convert(smk: Any) -> None:
    """Dequantise a GGUF checkpoint once into a save_pretrained folder (results/models/)."""
    with timed("imports"):
        from crossprobe.convert import convert_gguf

        torch_threads()
    spec = model_spec(smk)
    folder, filename = spec.gguf_folder_and_file
    local = spec.local_gguf
    convert_gguf(
        folder,
        filename,
        smk.output[0],
        revision=None if local is not None else spec.revision,
        local_file=str(local) if local is not None else None,
        log=log.info,
    )


def extract(smk: Any) -> None:
    """Residual-stream activations of one model on one dataset, into a Zarr store."""
    from crossprobe.cache import write_store
    from crossprobe.datasets import read_dataset
    from crossprobe.extract import extract_activations
    from crossprobe.models import answer_token_ids, decoder_blocks, hidden_size

    spec, ds = model_spec(smk), dataset_spec(smk)
    df = read_dataset(smk.input.dataset)
    model, tok = load_model(spec)
    prompts = model_prompts(df, ds, spec, tok)
    answer_token_ids(tok, spec.answers_for(ds), model=spec.name)
    batch_size = batch_size_for(model, tok, spec, prompts, ablation=False)
    n_layers = len(decoder_blocks(model))
    by_pos = layers_by_position(spec, n_layers)
    layers = list(dict.fromkeys(by_pos))
    attrs = {
        **model_attrs(spec, model, n_layers, by_pos),
        "position": smk.params.position,
        "positions": smk.params.positions,
        "dataset": ds.name,
        "template": ds.template,
        "answers": list(spec.answers_for(ds)),
        "crossprobe_version": __version__,
    }

    def rows(sl: slice) -> np.ndarray:
        return extract_activations(
            model,
            tok,
            prompts[sl],
            layers,
            position=smk.params.position,
            positions=smk.params.positions,
            batch_size=batch_size,
            progress=True,
            desc=f"{spec.name}/{ds.name} rows {sl.start}-{sl.stop}",
        )

    write_store(
        smk.output[0],
        extract_rows=rows,
        n_rows=len(df),
        layers=layers,
        d_model=hidden_size(model.config),
        labels=df["label"].to_numpy(),
        split=df["split"].to_numpy(),
        row_hash=df["row_hash"].to_numpy(),
        attrs=attrs,
    )


def _split_hash(row_hash: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256("\n".join(sorted(map(str, row_hash))).encode()).hexdigest()


def train(smk: Any) -> None:
    """Fit every probe method at every stored layer on the train split."""
    from crossprobe.cache import open_store
    from crossprobe.probes import fitter, save_probes

    store = open_store(smk.input[0])
    split, labels, hashes = store.split(), store.labels(), store.row_hash()
    train_rows = np.flatnonzero(split == "train")
    meta = {
        "model": store.attrs["model"],
        "model_source": store.attrs.get("model_source"),
        "revision": store.attrs.get("revision"),
        "dataset": store.attrs["dataset"],
        "position": store.attrs.get("position"),
        "template": store.attrs.get("template"),
        "train_rows": int(train_rows.size),
        "split_hashes": {s: _split_hash(hashes[split == s]) for s in ("train", "align", "test")},
        "crossprobe_version": __version__,
    }
    probes = []
    for layer in store.layers:
        x = store.layer(layer, train_rows)
        for method in smk.params.probes:
            p = fitter(method, logreg_c=smk.params.logreg_c)(x, labels[train_rows], layer)
            probes.append(
                type(p)(**{**p.__dict__, "provenance": {**meta, "layer": layer, "method": method}})
            )
    save_probes(smk.output.probes, probes, meta)


JOBS = {"dataset": dataset, "convert": convert, "extract": extract, "train": train}
MODEL_JOBS = frozenset({"convert", "extract"})
