"""Entry points of the workflow's rules: each reads its inputs, calls the science, writes outputs.

Every rule's ``run:`` block calls ``entry(...)`` (``workflow/rules/common.smk``), which hands the
job to ``crossprobe.launch``; that calls ``run(job)``, and ``run`` looks up the function named
after the rule. Functions here only translate between files and the typed
functions of the other modules.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crossprobe import __version__
from crossprobe.config import DatasetSpec, ModelSpec
from crossprobe.io import atomic_path

log = logging.getLogger("crossprobe")

# ----------------------------------------------------------------------------- plumbing


@contextlib.contextmanager
def _logging_to(path: str | None) -> Iterator[None]:
    """Send logging, stdout and stderr (progress bars) of one job to its log file."""
    if not path:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with (
        open(path, "w", buffering=1) as f,
        contextlib.redirect_stdout(f),
        contextlib.redirect_stderr(f),
    ):
        handler = logging.StreamHandler(f)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            yield
        finally:
            root.removeHandler(handler)


def run(smk: Any, startup: float | None = None) -> None:
    """Run the entry point named after ``smk.rule`` with its log redirected.

    The last log line is a JSON record of where the job's time went (``timings``): process
    start-up and imports before the job, heavy imports inside it, model loading, and the rest
    (compute and I/O). ``benchmarks/bench_workflow.py`` adds these up over a run. ``startup``
    is the seconds the job took to start where the caller measured them (a forked job), else
    this process's age.
    """
    fn: Callable[[Any], None] = ENTRY_POINTS[smk.rule]
    with _logging_to(smk.log[0] if len(smk.log) else None):
        _THREADS[0] = max(1, int(smk.threads))
        started = _process_age() if startup is None else startup
        t0 = time.perf_counter()
        log.info(
            "crossprobe %s: rule %s, wildcards %s, process %d%s",
            __version__,
            smk.rule,
            dict(smk.wildcards),
            os.getpid(),
            f", SLURM job {os.environ['SLURM_JOB_ID']}" if "SLURM_JOB_ID" in os.environ else "",
        )
        if smk.rule in MODEL_RULES:
            with _timed("imports"):
                import crossprobe.models  # noqa: F401  (torch and transformers)
        try:
            fn(smk)
        except BaseException:
            log.exception("rule %s failed", smk.rule)
            raise
        total = time.perf_counter() - t0
        log.info("done in %.2f s", total)
        work = total - TIMINGS["imports"] - TIMINGS["load"]
        record = {"rule": smk.rule, "startup": started, **TIMINGS, "work": work}
        log.info(
            "timings %s",
            json.dumps({k: v if isinstance(v, str) else round(v, 3) for k, v in record.items()}),
        )


def _process_age() -> float:
    """Seconds since this process started (interpreter start-up plus imports so far)."""
    try:
        import psutil

        return max(0.0, time.time() - psutil.Process().create_time())
    except Exception:  # psutil missing or restricted: the record just lacks start-up time
        return float("nan")


_THREADS = [1]
MODEL_RULES = {
    "zoo",
    "convert",
    "extract",
    "ablate_self",
    "ablate_carried",
    "rate",
    "steer_self",
    "steer_carried",
}
TIMINGS: dict[str, float] = {"imports": 0.0, "load": 0.0}


@contextlib.contextmanager
def _timed(key: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        TIMINGS[key] += time.perf_counter() - t0


def _torch_threads() -> None:
    """Give torch the job's thread count (imported only by jobs that run a model)."""
    import torch

    torch.set_num_threads(_THREADS[0])


def _model(smk: Any) -> ModelSpec:
    d = dict(smk.params.model)
    d["layers"] = tuple(d["layers"])
    return ModelSpec(**d)


def _dataset_spec(smk: Any) -> DatasetSpec:
    return dataset_from_params(smk.params.dataset)


def dataset_from_params(params: dict[str, Any]) -> DatasetSpec:
    return DatasetSpec(**{**params, "answers": tuple(params["answers"])})


def _prompts(df: pd.DataFrame, ds: DatasetSpec, spec: ModelSpec, tok: Any) -> list[str]:
    """The prompt text of each row for model ``spec`` (its format on ``ds``), after the checks
    the plan ran (again here: a hub model may not have been in the cache then)."""
    from crossprobe.config import tokenizer_prompt_check
    from crossprobe.errors import ConfigError
    from crossprobe.prompts import format_prompts

    fmt = spec.format_for(ds)
    if fmt == "chat" and not getattr(tok, "chat_template", None):
        raise ConfigError(
            f"models.{spec.name}: prompt_format chat needs a chat template, and its tokenizer has "
            f"none; use prompt_format raw (models.{spec.name}.prompt_format: raw)"
        )
    problems = tokenizer_prompt_check(tok)(ds, fmt, spec.answers_for(ds))
    if problems:
        raise ConfigError(f"model {spec.name}, dataset {ds.name} ({fmt}): " + "; ".join(problems))
    return format_prompts(tok, df["statement"].tolist(), ds.template, fmt, ds.system_prompt)


def _load(spec: ModelSpec) -> tuple[Any, Any]:
    with _timed("imports"):
        import torch

        from crossprobe.models import load_model, load_tokenizer
        from crossprobe.resources import device_map

        _torch_threads()
    # A job that holds several GPUs (a model larger than one) spreads the model over them.
    dmap = device_map(torch.cuda.device_count() if torch.cuda.is_available() else 0)
    log.info("loading %s from %s%s", spec.name, spec.source, f" (device_map={dmap})" * bool(dmap))
    with _timed("load"):
        tok = load_tokenizer(
            spec.source, revision=spec.revision, trust_remote_code=spec.trust_remote_code
        )
        model = load_model(spec.source, device_map=dmap, **spec.load_kwargs())
    return model, tok


def _batch_size(
    model: Any, tok: Any, spec: ModelSpec, prompts: list[str], *, ablation: bool
) -> int:
    """The model's ``batch_size``, or for ``auto`` one sized from free GPU memory."""
    from crossprobe.models import resolve_batch_size

    if spec.batch_size != "auto":
        return int(spec.batch_size)
    from crossprobe.ablate import ROWS_PER_BATCH_FACTOR

    seq_len = max((len(ids) for ids in tok(prompts)["input_ids"]), default=1)
    bs = resolve_batch_size(
        model, "auto", seq_len, rows_per_prompt=ROWS_PER_BATCH_FACTOR if ablation else 1
    )
    log.info("batch size %d (auto, prompts up to %d tokens)", bs, seq_len)
    return bs


def layers_by_position(spec: ModelSpec, n_layers: int) -> list[int]:
    """Each configured layer resolved to a block index, keeping positions (duplicates kept)."""
    from crossprobe.models import resolve_layers

    return [resolve_layers([x], n_layers, model=spec.name)[0] for x in spec.layers]


# ----------------------------------------------------------------------------- stages


def dataset(smk: Any) -> None:
    """Build a dataset table with deterministic hash splits."""
    from crossprobe.datasets import (
        generate_builtin,
        read_table,
        validate_table,
        with_splits,
        write_dataset,
    )

    spec = _dataset_spec(smk)
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


def zoo(smk: Any) -> None:
    """Train (or initialise) a tiny causal LM and save it like a hub model."""
    with _timed("imports"):
        from crossprobe.zoo import ZooSpec, train_zoo_model

        _torch_threads()
    spec = ZooSpec.from_dict(smk.params.zoo)
    metrics = train_zoo_model(
        spec,
        smk.output[0],
        splits=smk.params.splits,
        groups=smk.params.groups,
        log=log.info,
        base_dir=smk.params.base,
    )
    log.info("metrics: %s", metrics)


def convert(smk: Any) -> None:
    """Dequantise a GGUF checkpoint once into a save_pretrained folder (results/models/)."""
    with _timed("imports"):
        from crossprobe.convert import convert_gguf

        _torch_threads()
    spec = _model(smk)
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


def _store_model_attrs(
    spec: ModelSpec, model: Any, n_layers: int, by_pos: list[int]
) -> dict[str, Any]:
    """What an activation store records of the model that wrote it."""
    return {
        "model": spec.name,
        "model_source": spec.source,
        "revision": spec.revision,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "n_layers": n_layers,
        "layer_spec": list(spec.layers),
        "layers_by_position": by_pos,
    }


def extract(smk: Any) -> None:
    """Residual-stream activations of one model on one dataset, into a Zarr store."""
    from crossprobe.cache import write_store
    from crossprobe.datasets import read_dataset
    from crossprobe.extract import extract_activations
    from crossprobe.models import answer_token_ids, decoder_blocks, hidden_size

    spec, ds = _model(smk), _dataset_spec(smk)
    df = read_dataset(smk.input.dataset)
    model, tok = _load(spec)
    prompts = _prompts(df, ds, spec, tok)
    answer_token_ids(tok, spec.answers_for(ds), model=spec.name)
    batch_size = _batch_size(model, tok, spec, prompts, ablation=False)
    n_layers = len(decoder_blocks(model))
    by_pos = layers_by_position(spec, n_layers)
    layers = list(dict.fromkeys(by_pos))
    attrs = {
        **_store_model_attrs(spec, model, n_layers, by_pos),
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
    from crossprobe.generalise import generalisation_table
    from crossprobe.plots import plot_generalisation
    from crossprobe.probes import load_probes

    model = smk.wildcards.model
    probes = {Path(p).stem: load_probes(p) for p in smk.input.probes}
    table = generalisation_table(model, probes, _test_sets(list(smk.input.stores)))
    with atomic_path(smk.output.table) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    plot_generalisation(table, model, smk.output.figure)


def _write_csv(path: str, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")


def _concat_csv(paths: Any) -> pd.DataFrame:
    return pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)


def concat_tables(smk: Any) -> None:
    """Concatenate per-key CSV tables into one."""
    _write_csv(smk.output[0], _concat_csv(smk.input))


def _ridge_data(
    store_path: str, table_path: str, ratings_path: str | None
) -> tuple[Any, pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """A dataset's store and table (with the model's own ratings, if any), its `train` and
    `test` rows and each row's fact."""
    from crossprobe.cache import open_store
    from crossprobe.datasets import read_dataset
    from crossprobe.errors import CacheError

    store, df = open_store(store_path), read_dataset(table_path)
    df = _with_self_rating(df, ratings_path, table_path)
    if not np.array_equal(store.row_hash(), df["row_hash"].to_numpy()):
        raise CacheError(f"{store_path}: its rows are not those of {table_path}; rerun")
    split = store.split()
    tr, te = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    return store, df, tr, te, df["split_key"].to_numpy()


def ridge(smk: Any) -> None:
    """Ridge probes on every target of one dataset at every stored layer (fit on `train`,
    scored on `test`), saved one file per target."""
    from crossprobe.probes import save_probes
    from crossprobe.regression import PROBE_COLUMNS, fit_ridge, regression_scores

    model, name = smk.wildcards.model, smk.wildcards.dataset
    ratings = list(getattr(smk.input, "ratings", []))
    store, df, tr, te, facts = _ridge_data(
        smk.input.store, smk.input.dataset, ratings[0] if ratings else None
    )
    targets = smk.params.targets
    probes: dict[str, list[Any]] = {target: [] for target, _ in targets}
    rows: list[dict[str, Any]] = []
    for layer in store.layers:  # each layer read once, for every target
        xtr, xte = store.layer(layer, tr), store.layer(layer, te)
        for target, column in targets:
            y = df[column].to_numpy(np.float64)
            p = fit_ridge(xtr, y[tr], layer, groups=facts[tr])
            meta = {"model": model, "dataset": name, "target": target, "column": column,
                    "layer": layer}  # fmt: skip
            probes[target].append(type(p)(**{**p.__dict__, "provenance": {**meta, **p.provenance}}))
            scores = regression_scores(y[te], p.score(xte), np.zeros(len(te)))
            rows.append({**meta, "alpha": p.provenance["alpha"], "n_train": len(tr), **scores})
            log.info("%s.%s, layer %d: test R² %.3f", name, target, layer, scores["r2"])
    with atomic_path(Path(smk.output.probes)) as out:
        out.mkdir(parents=True)
        for target, fitted in probes.items():
            save_probes(
                out / f"{target}.safetensors",
                fitted,
                {"model": model, "dataset": name, "target": target, "method": "ridge"},
            )
    _write_csv(smk.output.table, pd.DataFrame(rows, columns=PROBE_COLUMNS))


def heldout(smk: Any) -> None:
    """Held-one-dataset-out and train-k/test-rest of ridge probes on the targets that several
    datasets share, per layer (fit on `train`, scored on `test`)."""
    from crossprobe.regression import heldout_rows, heldout_table

    ratings = {Path(p).stem: p for p in getattr(smk.input, "ratings", [])}
    shared: dict[tuple[str, int], dict[str, Any]] = {}
    for store_path, table_path in zip(smk.input.stores, smk.input.datasets, strict=True):
        name = Path(table_path).stem
        store, df, tr, te, facts = _ridge_data(store_path, table_path, ratings.get(name))
        for layer in store.layers:
            xtr, xte = store.layer(layer, tr), store.layer(layer, te)
            for target, column in smk.params.targets[name]:
                y = df[column].to_numpy(np.float64)
                shared.setdefault((target, layer), {})[name] = (
                    xtr, y[tr], xte, y[te], facts[tr]
                )  # fmt: skip
    held: list[dict[str, object]] = []
    for (target, layer), data in sorted(shared.items()):
        held += heldout_rows(smk.wildcards.model, target, layer, data, train_k=smk.params.train_k)
    _write_csv(smk.output[0], heldout_table(held))


def _with_self_rating(df: pd.DataFrame, ratings_path: str | None, where: str) -> pd.DataFrame:
    """The dataset's table with the model's own ratings as the column ``self_rating``."""
    from crossprobe.errors import CacheError, ConfigError
    from crossprobe.rating import TARGET

    if ratings_path is None:
        return df
    ratings = pd.read_parquet(ratings_path)
    if not np.array_equal(ratings["row_hash"].to_numpy(), df["row_hash"].to_numpy()):
        raise CacheError(f"{ratings_path}: its rows are not those of {where}; rerun")
    values = ratings["rating"].to_numpy(np.float64)
    if not np.isfinite(values).all():
        raise ConfigError(f"{ratings_path}: the model's ratings hold NaN or inf")
    return df.assign(**{TARGET: values})


def regression_tables(smk: Any) -> None:
    """regression.csv and heldout.csv over every model, and the study's figure."""
    from crossprobe.plots import plot_regression

    table, heldout = _concat_csv(smk.input.tables), _concat_csv(smk.input.heldout)
    _write_csv(smk.output.table, table)
    _write_csv(smk.output.heldout, heldout)
    plot_regression(table, heldout, smk.output.figure)


ENTRY_POINTS: dict[str, Callable[[Any], None]] = {
    "dataset": dataset,
    "zoo": zoo,
    "convert": convert,
    "extract": extract,
    "train": train,
    "generalise": generalise,
    "generalisation_table": concat_tables,
    "ridge": ridge,
    "heldout": heldout,
    "regression_tables": regression_tables,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run through the workflow: snakemake")


# ----------------------------------------------------------------------------- transfer


def _store_pairs(stores: str | list[str]) -> dict[str, Any]:
    """Activation stores by dataset, from one path or several."""
    from crossprobe.cache import open_store

    opened = [open_store(p) for p in ([stores] if isinstance(stores, str) else stores)]
    return {st.attrs["dataset"]: st for st in opened}


def layer_pairs(
    source_attrs: dict[str, Any], target_attrs: dict[str, Any]
) -> list[tuple[int, int, int]]:
    """(position, source layer, target layer), paired by position in the layer list."""
    seen, out = set(), []
    pairs = zip(source_attrs["layers_by_position"], target_attrs["layers_by_position"], strict=True)
    for pos, (ls, lt) in enumerate(pairs):
        if (ls, lt) not in seen:
            seen.add((ls, lt))
            out.append((pos, int(ls), int(lt)))
    return out


def align(smk: Any) -> None:
    """Fit the maps of one ordered model pair on the align split of one dataset, or pooled over
    the datasets of the alignment set."""
    from crossprobe.align import fit_map, save_maps
    from crossprobe.errors import CacheError

    src, tgt = _store_pairs(smk.input.source), _store_pairs(smk.input.target)
    first = next(iter(src.values()))
    pairs = layer_pairs(first.attrs, next(iter(tgt.values())).attrs)
    maps, fit_info = {}, {}
    for _, ls, lt in pairs:
        xs, xt = [], []
        for name in sorted(src):
            s, t = src[name], tgt[name]
            if not np.array_equal(s.row_hash(), t.row_hash()):
                raise CacheError(
                    f"{name}: source and target stores hold different prompts; rerun extract"
                )
            rows = np.flatnonzero(s.split() == "align")
            xs.append(s.layer(ls, rows))
            xt.append(t.layer(lt, rows))
        maps[(ls, lt)] = fit_map(np.concatenate(xs), np.concatenate(xt), method=smk.params.method)
        fit_info[f"{ls}/{lt}"] = {
            "rows": int(sum(len(x) for x in xs)),
            "r2": maps[(ls, lt)].r2_forward,
        }
        log.info("layers %d -> %d: %s", ls, lt, fit_info[f"{ls}/{lt}"])
    meta = {
        "source": smk.wildcards.source,
        "target": smk.wildcards.target,
        "method": smk.params.method,
        "datasets": sorted(src),
        "layer_pairs": [list(p) for p in pairs],
        "crossprobe_version": __version__,
    }
    save_maps(smk.output[0], maps, meta)


def effect_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows every ablation uses: `test` rows with label 1, in row order."""
    return df[(df["split"] == "test") & (df["label"] > 0.5)]


def _check_floor(n: int, transfer: dict[str, Any], where: str) -> None:
    from crossprobe.errors import ConfigError

    if n < transfer["min_prompts"] and not transfer["allow_unscored"]:
        raise ConfigError(
            f"{where}: only {n} test prompts with label 1, below transfer.min_prompts="
            f"{transfer['min_prompts']}; add rows, or lower transfer.min_prompts / set "
            "transfer.allow_unscored: true (such cells are reported but not scored)."
        )


def _effects_frame(rows: pd.DataFrame, columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per prompt: its row, row hash and fact (``split_key``), then ``columns``."""
    out = pd.DataFrame(
        {
            "row": rows["row"].to_numpy(),
            "row_hash": rows["row_hash"].to_numpy(),
            "split_key": rows["split_key"].to_numpy(),
        }
    )
    return pd.concat([out, pd.DataFrame(columns, index=out.index)], axis=1)


def _write_parquet(path: str, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def _effect_setup(spec: DatasetSpec, path: str, transfer: dict[str, Any]) -> pd.DataFrame:
    from crossprobe.datasets import read_dataset

    rows = effect_rows(read_dataset(path))
    _check_floor(len(rows), transfer, f"dataset {spec.name}")
    return rows


def _write_answers(
    path: str,
    dataset_path: str,
    ds: DatasetSpec,
    spec: ModelSpec,
    clean: tuple[pd.DataFrame, np.ndarray],
    model: Any,
    tok: Any,
    answers: tuple[int, int],
    batch_size: int,
) -> None:
    """The model's own answer margin on every `test` row (the positives' from the clean pass)."""
    from crossprobe.ablate import token_margins
    from crossprobe.datasets import read_dataset

    positives, positive_margins = clean
    df = read_dataset(dataset_path)
    negatives = df[(df["split"] == "test") & (df["label"] <= 0.5)]
    neg_margins = (
        token_margins(
            model, tok, _prompts(negatives, ds, spec, tok), answers, batch_size=batch_size
        )
        if len(negatives)
        else np.empty(0, dtype=np.float32)
    )
    out = pd.concat(
        [
            positives[["row", "row_hash", "label"]].assign(margin=positive_margins),
            negatives[["row", "row_hash", "label"]].assign(margin=neg_margins),
        ],
        ignore_index=True,
    ).sort_values("row", kind="stable")
    _write_parquet(path, out)


def answers_table(smk: Any) -> None:
    """Each model's own answer AUROC and accuracy per dataset (results/tables/answers.csv)."""
    from crossprobe.transfer import answer_summary

    frames = {}
    for path in smk.input:
        p = Path(path)
        frames[(p.parent.parent.name, p.parent.name)] = pd.read_parquet(p)
    with atomic_path(smk.output[0]) as tmp:
        answer_summary(frames).to_csv(tmp, index=False, float_format="%.6g")


def _ablate_layers(
    model: Any,
    tok: Any,
    prompts: list[str],
    answers: tuple[int, int],
    directions: dict[int, np.ndarray],
    transfer: dict[str, Any],
    batch_size: int,
    desc: str,
) -> Any:
    """Every layer's directions ablated over ``prompts``, with a progress bar in the job's log:
    one clean pass per prompt batch serves every layer and gives the clean margins."""
    from crossprobe.ablate import ablation_effects_by_layer

    return ablation_effects_by_layer(
        model,
        tok,
        prompts,
        answers,
        directions,
        scope=transfer["scope"],
        positions=transfer["positions"],
        batch_size=batch_size,
        progress=True,
        desc=desc,
    )


def ablate_self(smk: Any) -> None:
    """Effects of a model's own probes and of k random directions per layer (the null)."""
    from crossprobe.ablate import random_directions
    from crossprobe.models import answer_token_ids
    from crossprobe.probes import load_probes

    spec, ds = _model(smk), _dataset_spec(smk)
    transfer = smk.params.transfer
    rows = _effect_setup(ds, smk.input.dataset, transfer)
    model, tok = _load(spec)
    prompts = _prompts(rows, ds, spec, tok)
    answers = answer_token_ids(tok, spec.answers_for(ds), model=spec.name)
    probes = load_probes(smk.input.probes)
    batch_size = _batch_size(model, tok, spec, prompts, ablation=True)
    keys, directions = {}, {}
    for layer in sorted({layer for _, layer in probes}):
        keys[layer] = sorted(k for k in probes if k[1] == layer)
        d_model = probes[keys[layer][0]].direction.shape[0]
        null = random_directions(
            d_model, transfer["null_directions"], seed=transfer["seed"] + layer
        )
        # Last: an explicit zero direction, whose Δm is the layer's measured noise floor.
        directions[layer] = np.concatenate(
            [
                np.stack([probes[k].direction for k in keys[layer]]),
                null,
                np.zeros((1, d_model), dtype=np.float32),
            ]
        )
    res = _ablate_layers(
        model, tok, prompts, answers, directions, transfer, batch_size, f"{spec.name}/{ds.name}"
    )
    _write_answers(
        smk.output.answer,
        smk.input.dataset,
        ds,
        spec,
        (rows, res.clean),
        model,
        tok,
        answers,
        batch_size,
    )
    columns: dict[str, np.ndarray] = {"clean": res.clean}
    for layer, dm in res.effects.items():
        n_probes = len(keys[layer])
        for i, (method, _) in enumerate(keys[layer]):
            columns[f"probe:{method}:{layer}"] = dm[i]
        n_null = dm.shape[0] - n_probes - 1
        for j in range(n_null):
            columns[f"null:{layer}:{j}"] = dm[n_probes + j]
        columns[f"zero:{layer}"] = dm[-1]
        log.info(
            "layer %d: %d probe and %d null directions; noise floor (RMS Δm of a zero "
            "direction) %.3g",
            layer,
            n_probes,
            n_null,
            float(np.sqrt(np.mean(dm[-1].astype(np.float64) ** 2))),
        )
    _write_parquet(smk.output.effects, _effects_frame(rows, columns))


def ablate_carried(smk: Any) -> None:
    """Effects in the target of every probe of the source on one dataset, carried through the
    cell's maps, and of the map-matched null (random source directions through the same maps)."""
    from crossprobe.align import carry, load_maps, matched_null, reference_length
    from crossprobe.models import answer_token_ids
    from crossprobe.probes import load_probes

    spec, ds = _model(smk), _dataset_spec(smk)
    transfer = smk.params.transfer
    maps = load_maps(smk.input.maps)
    rows = _effect_setup(ds, smk.input.dataset, transfer)
    probes = load_probes(smk.input.probes)
    model, tok = _load(spec)
    prompts = _prompts(rows, ds, spec, tok)
    answers = answer_token_ids(tok, spec.answers_for(ds), model=spec.name)
    batch_size = _batch_size(model, tok, spec, prompts, ablation=True)
    names: dict[int, list[str]] = {}
    directions: dict[int, list[np.ndarray]] = {}
    for ls, lt in sorted(maps):
        fmap = maps[(ls, lt)]
        reference = reference_length(fmap)
        for m in sorted(m for m, layer in probes if layer == ls):
            c = carry(fmap, probes[(m, ls)].direction, transfer["min_carried_length"],
                      reference=reference)  # fmt: skip
            names.setdefault(lt, []).append(f"carried:{m}:{ls}:{lt}")
            directions.setdefault(lt, []).append(c.vector)
        k = transfer["matched_null_directions"]
        null = matched_null(fmap, k, seed=transfer["seed"] + ls) if k else np.empty((0, 0))
        names[lt] += [f"matched:{ls}:{lt}:{j}" for j in range(len(null))]
        directions[lt] += list(null)
    res = _ablate_layers(
        model,
        tok,
        prompts,
        answers,
        {lt: np.stack(v).astype(np.float32) for lt, v in directions.items()},
        transfer,
        batch_size,
        f"{spec.name}/{ds.name} from {smk.wildcards.source}",
    )
    columns: dict[str, np.ndarray] = {"clean": res.clean}
    for lt, dm in res.effects.items():
        columns.update(zip(names[lt], dm, strict=True))
    log.info("%s: %d prompts", ds.name, len(prompts))
    _write_parquet(smk.output[0], _effects_frame(rows, columns).assign(dataset=ds.name))


def _test_xy(store: Any, layer: int) -> tuple[np.ndarray, np.ndarray]:
    rows = np.flatnonzero(store.split() == "test")
    return store.layer(layer, rows), store.labels()[rows]


def _floor(self_effects: pd.DataFrame, layer: int) -> float:
    from crossprobe.transfer import noise_floor

    col = f"zero:{layer}"
    return noise_floor(self_effects[col].to_numpy(np.float64) if col in self_effects else None)


def _null_effects(effects: pd.DataFrame, prefix: str) -> np.ndarray:
    """The effects of the random directions whose columns start with ``prefix``, [k, prompt]
    (``null:<layer>:``: the model's own; ``matched:<ls>:<lt>:``: carried through the map)."""
    cols = [c for c in effects if c.startswith(prefix)]
    if not cols:
        return np.empty((0, len(effects)))
    return np.stack([effects[c].to_numpy(np.float64) for c in cols])


def correlate(smk: Any) -> None:
    """Pearson_CE, CI, null, transfer AUROC and cosine for every probe of one cell: an ordered
    (source, target) pair on one dataset."""
    from crossprobe.align import carried_length, identity_map, load_maps, reference_length
    from crossprobe.cache import open_store
    from crossprobe.errors import CacheError
    from crossprobe.probes import load_probes
    from crossprobe.stats import auroc
    from crossprobe.transfer import CELL_COLUMNS, CellInputs, score_cell, scoring_floor

    s, t, d = smk.wildcards.source, smk.wildcards.target, smk.wildcards.dataset
    transfer = smk.params.transfer
    maps = load_maps(smk.input.maps) if s != t else {}
    fx_t = pd.read_parquet(smk.input.carried) if s != t else None
    cells, null_rows, prompt_rows = [], [], []
    src_store, tgt_store = open_store(smk.input.source_store), open_store(smk.input.target_store)
    src_probes, tgt_probes = (
        load_probes(smk.input.source_probes),
        load_probes(smk.input.target_probes),
    )
    src_fx = pd.read_parquet(smk.input.source_effects)
    tgt_self = pd.read_parquet(smk.input.target_effects)
    for other in (tgt_self, fx_t):
        if other is not None and not np.array_equal(other["row_hash"], src_fx["row_hash"]):
            raise CacheError(f"{d}: source and target effects cover different prompts")
    for pos, ls, lt in layer_pairs(src_store.attrs, tgt_store.attrs):
        fmap = maps[(ls, lt)] if s != t else identity_map(src_store.d_model)
        xs, ys = _test_xy(src_store, ls)
        xt, yt = _test_xy(tgt_store, lt)
        null = _null_effects(tgt_self, f"null:{lt}:")
        src_null = _null_effects(src_fx, f"null:{ls}:")
        matched = None if fx_t is None else _null_effects(fx_t, f"matched:{ls}:{lt}:")
        reference = reference_length(fmap)
        for method in sorted({m for m, layer in src_probes if layer == ls}):
            ps, pt = src_probes[(method, ls)], tgt_probes[(method, lt)]
            dm_s = src_fx[f"probe:{method}:{ls}"].to_numpy(np.float64)
            dm_t = (
                dm_s if fx_t is None else fx_t[f"carried:{method}:{ls}:{lt}"].to_numpy(np.float64)
            )
            length = carried_length(fmap, ps.direction, reference)
            inputs = CellInputs(
                dm_source=dm_s,
                dm_target=dm_t,
                groups=src_fx["split_key"].to_numpy(),
                carried_length=length,
                carried=s == t or length >= transfer["min_carried_length"],
                dm_matched_null=matched,
                dm_null=null,
                dm_source_null=src_null,
                carried_direction=fmap.carry_direction(ps.direction),
                target_direction=pt.direction,
                transfer_auroc=auroc(yt, xt @ fmap.carry_weight(ps.weight)),
                source_auroc=auroc(ys, ps.score(xs)),
                target_auroc=auroc(yt, pt.score(xt)),
                map_r2=fmap.r2_forward,
                floor_source=_floor(src_fx, ls),
                floor_target=_floor(tgt_self, lt),
            )
            res = score_cell(
                inputs,
                n_resamples=transfer["bootstrap"],
                ci=transfer["ci"],
                seed=transfer["seed"],
                min_effect_ratio=transfer["min_effect_ratio"],
                min_facts=transfer["min_facts"],
            )
            null_rhos = res.pop("_null_rhos")
            matched_rhos = res.pop("_matched_rhos")
            key = {
                "source": s,
                "target": t,
                "dataset": d,
                "method": method,
                "layer_position": pos,
                "source_layer": ls,
                "target_layer": lt,
            }
            # The min_sources condition needs the whole run: transfer_tables applies it.
            scored = (
                res["n"] >= scoring_floor(transfer["min_prompts"])
                and res["n_facts"] >= transfer["min_facts"]
                and res["carried"]
            )
            cells.append({**key, **res, "scored": bool(scored)})
            null_rows += [
                {**key, "null": kind, "null_index": j, "rho": r}
                for kind, rhos in (("target", null_rhos), ("matched", matched_rhos))
                for j, r in enumerate(rhos)
            ]
            prompt_rows.append(
                pd.DataFrame(
                    {
                        **key,
                        "row": src_fx["row"],
                        "row_hash": src_fx["row_hash"],
                        "dm_source": dm_s,
                        "dm_target": dm_t,
                    }
                )
            )
    with atomic_path(smk.output.cells) as tmp:
        pd.DataFrame(cells, columns=CELL_COLUMNS).to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(smk.output.null) as tmp:
        pd.DataFrame(null_rows).to_csv(tmp, index=False, float_format="%.6g")
    _write_parquet(smk.output.prompts, pd.concat(prompt_rows, ignore_index=True))


def transfer_tables(smk: Any) -> None:
    """transfer.csv, the transfer matrix, the overstatement summary and ProbeBench entries."""
    import yaml

    from crossprobe.io import write_json
    from crossprobe.transfer import (
        overstatement_summary,
        probebench_entries,
        scored_cells,
        transfer_matrix,
        with_answer_auroc,
    )

    table = pd.concat([pd.read_csv(p) for p in smk.input.cells], ignore_index=True)
    table = table.sort_values(["source", "target", "dataset", "method", "layer_position"])
    table["scored"] = scored_cells(
        table,
        min_prompts=smk.params.min_prompts,
        min_sources=smk.params.min_sources,
        controls=smk.params.controls,
        min_facts=smk.params.min_facts,
    )
    table = with_answer_auroc(table, pd.read_csv(smk.input.answers))
    nulls = pd.concat([pd.read_csv(p) for p in smk.input.null], ignore_index=True)
    with atomic_path(smk.output.table) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(smk.output.null) as tmp:
        nulls.to_csv(tmp, index=False, float_format="%.6g")
    matrix = transfer_matrix(table, list(smk.params.models))
    with atomic_path(smk.output.matrix) as tmp:
        matrix.to_csv(tmp, index=False, float_format="%.6g")
    write_json(smk.output.summary, overstatement_summary(table))
    out_dir = Path(smk.output.probebench)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        for pid, entries in probebench_entries(table).items():
            (tmp / f"{pid}.yaml").write_text(yaml.safe_dump(entries, sort_keys=False))


def plot_transfer(smk: Any) -> None:
    """The transfer matrix heatmap and its diagnostics."""
    from crossprobe import plots

    table = pd.read_csv(smk.input.table)
    matrix = pd.read_csv(smk.input.matrix)
    nulls = pd.read_csv(smk.input.null)
    plots.plot_transfer_matrix(matrix, list(smk.params.models), smk.output.matrix)
    plots.plot_profiles(table, smk.output.profiles)
    plots.plot_cosine_vs_rho(table, smk.output.scatter)
    plots.plot_null(table, nulls, smk.output.null)
    plots.plot_answers(pd.read_csv(smk.input.answers), table, smk.output.answers)


def similarity(smk: Any) -> None:
    """Cosines between probe directions, within every model and across every ordered pair."""
    from crossprobe.align import load_maps
    from crossprobe.plots import plot_similarity
    from crossprobe.probes import load_probes
    from crossprobe.similarity import across_models, within_model

    probes: dict[str, dict[str, Any]] = {m: {} for m in smk.params.models}
    dataset_of: dict[str, str] = {}  # a probe file's name -> its dataset
    for path in smk.input.probes:
        p = Path(path)
        probes[p.parent.name][p.stem] = load_probes(p)
        dataset_of[p.stem] = p.stem
    for folder in map(Path, getattr(smk.input, "regression", [])):
        for p in sorted(folder.glob("*.safetensors")):
            probes[folder.parent.name][f"{folder.name}.{p.stem}"] = load_probes(p)
            dataset_of[f"{folder.name}.{p.stem}"] = folder.name
    within = pd.concat([within_model(m, probes[m]) for m in smk.params.models], ignore_index=True)
    maps: dict[str, Any] = {}
    across = []
    for s, t in smk.params.pairs:
        for d in smk.params.datasets:
            path = smk.params.map_files[f"{s}/{t}/{d}"]
            fmap = maps.setdefault(path, load_maps(path))
            mine = {k: v for k, v in probes[s].items() if dataset_of[k] == d}
            across.append(across_models(s, t, mine, probes[t], fmap))
    _write_csv(smk.output.within, within)
    table = pd.concat(across, ignore_index=True) if across else across_models("", "", {}, {}, {})
    _write_csv(smk.output.across, table)
    plot_similarity(within, smk.output.figure)


ENTRY_POINTS.update(
    {
        "similarity": similarity,
        "align": align,
        "align_dataset": align,
        "ablate_self": ablate_self,
        "ablate_carried": ablate_carried,
        "answers_table": answers_table,
        "correlate": correlate,
        "transfer_tables": transfer_tables,
        "plot_transfer": plot_transfer,
    }
)


# ----------------------------------------------------------------------------- ratings, steering


def _rating_setup(
    spec: ModelSpec, ds: DatasetSpec, tok: Any
) -> tuple[DatasetSpec, tuple[int, ...], tuple[int, ...]]:
    """The dataset as its rating prompt for this model, the digit token ids and their values."""
    from dataclasses import replace

    from crossprobe.errors import ConfigError

    rating = ds.rating_spec
    fmt = spec.format_for(ds)

    def single(a: str) -> bool:
        return len(tok.encode(a, add_special_tokens=False)) == 1

    try:
        template, tokens = rating.for_model(fmt, single)
    except ConfigError as e:
        raise ConfigError(f"models.{spec.name} on datasets.{ds.name}.rating: {e}") from None
    ids = tuple(int(tok.encode(t, add_special_tokens=False)[0]) for t in tokens)
    # A model-level `answers` would replace the digits in the prompt checks: drop it here.
    return replace(ds, template=template, answers=tokens[:2]), ids, rating.values


def _rating_prompts(df: pd.DataFrame, ds: DatasetSpec, spec: ModelSpec, tok: Any) -> Any:
    from dataclasses import replace

    rated, ids, values = _rating_setup(spec, ds, tok)
    return _prompts(df, rated, replace(spec, answers=None), tok), ids, values


def rate(smk: Any) -> None:
    """Each row's expected self-rating and digit mass under one model (results/ratings/)."""
    from crossprobe.datasets import read_dataset
    from crossprobe.rating import rate as rate_prompts

    spec, ds = _model(smk), _dataset_spec(smk)
    df = read_dataset(smk.input.dataset)
    model, tok = _load(spec)
    prompts, ids, values = _rating_prompts(df, ds, spec, tok)
    log.info("rating prompt: %r; digits %s", prompts[0], tok.convert_ids_to_tokens(list(ids)))
    batch_size = _batch_size(model, tok, spec, prompts, ablation=False)
    ratings = rate_prompts(model, tok, prompts, ids, values, batch_size=batch_size)
    log.info(
        "%d rows: expected rating mean %.3f (sd %.3f), digit mass median %.3f",
        len(df),
        ratings.expected.mean(),
        ratings.expected.std(),
        float(np.median(ratings.digit_mass)),
    )
    out = df[["row", "row_hash", "split", "label"]].assign(
        rating=ratings.expected, digit_mass=ratings.digit_mass
    )
    _write_parquet(smk.output[0], out)


def steering_rows(df: pd.DataFrame, n: int) -> pd.DataFrame:
    """The steered rows: the first ``n`` of the ablation's rows by row hash, in row order."""
    rows = effect_rows(df)
    chosen = rows.sort_values("row_hash", kind="stable").head(n)
    return rows.loc[rows.index.isin(chosen.index)]


def _steer_responses(
    model: Any,
    tok: Any,
    spec: ModelSpec,
    ds: DatasetSpec,
    rows: pd.DataFrame,
    directions: dict[int, np.ndarray],
    norms: dict[int, float],
    smk: Any,
    desc: str,
) -> dict[str, tuple[np.ndarray, dict[int, np.ndarray]]]:
    """Per response (``margin``, and ``rating`` for a rated dataset): clean values and the
    change ``[direction, alpha, prompt]`` per layer."""
    from crossprobe.models import answer_token_ids
    from crossprobe.rating import expected_rating_readout
    from crossprobe.steer import steering_effects

    alphas = smk.params.steering["alphas"]
    positions = smk.params.transfer["positions"]
    prompts = _prompts(rows, ds, spec, tok)
    answers = answer_token_ids(tok, spec.answers_for(ds), model=spec.name)
    batch_size = _batch_size(model, tok, spec, prompts, ablation=True)
    out = {
        "margin": steering_effects(
            model, tok, prompts, answers, directions, alphas, norms,
            positions=positions, batch_size=batch_size, progress=True, desc=f"{desc} margin",
        )
    }  # fmt: skip
    if ds.rating is not None:
        rating_prompts, ids, values = _rating_prompts(rows, ds, spec, tok)
        out["rating"] = steering_effects(
            model, tok, rating_prompts, ids, directions, alphas, norms,
            positions=positions, batch_size=batch_size, progress=True, desc=f"{desc} rating",
            readout=expected_rating_readout(values),
        )  # fmt: skip
    return out


def _long_responses(
    responses: dict[str, tuple[np.ndarray, dict[int, np.ndarray]]],
    keys: dict[int, list[tuple[str, str, int]]],
    rows: pd.DataFrame,
    alphas: list[float],
    norms: dict[int, float],
    fixed: dict[str, Any],
) -> pd.DataFrame:
    """One row per (response, direction, dose, prompt): the change ``delta`` and the clean
    value. ``keys[layer][k]`` is direction k's (kind, probe, source layer)."""
    frames = []
    hashes = rows["row_hash"].to_numpy()
    facts = rows["split_key"].to_numpy()
    n = len(hashes)
    for response, (clean, effects) in responses.items():
        for layer, dm in effects.items():
            for k, (kind, probe, source_layer) in enumerate(keys[layer]):
                for j, alpha in enumerate(alphas):
                    frames.append(
                        pd.DataFrame(
                            {
                                **fixed,
                                "response": response,
                                "kind": kind,
                                "probe": probe,
                                "source_layer": source_layer,
                                "layer": layer,
                                "norm": norms[layer],
                                "alpha": float(alpha),
                                "row_hash": hashes,
                                "split_key": facts,
                                "clean": clean,
                                "delta": dm[k, j],
                            },
                            index=range(n),
                        )
                    )
    return pd.concat(frames, ignore_index=True)


def _steering_probes(probes_path: str, regression: Any, dataset: str) -> dict[tuple[str, int], Any]:
    """A model's probes on one dataset keyed by (probe name, layer): its classification
    methods, and ``ridge:<target>`` for each regression target of the dataset (from the model's
    ridge folder of that dataset, ``results/regression/<model>/<dataset>``, if any)."""
    from crossprobe.probes import load_probes

    probes = dict(load_probes(probes_path))
    for folder in [regression] if isinstance(regression, str) else regression:
        for path in sorted(Path(folder).glob("*.safetensors")):
            meta = json.loads(path.with_suffix(".json").read_text())["meta"]
            if meta.get("dataset") != dataset:
                raise ValueError(
                    f"{path}: ridge probes of {meta.get('dataset')!r}, not {dataset!r}"
                )
            for (_, layer), p in load_probes(path).items():
                probes[(f"ridge:{meta['target']}", layer)] = p
    return probes


def _norms(store_path: str, layers: Any) -> dict[int, float]:
    """Each layer's dose unit: the typical spread (median distance from the mean) of its
    `train` activations."""
    from crossprobe.cache import open_store
    from crossprobe.steer import typical_spread

    store = open_store(store_path)
    rows = np.flatnonzero(store.split() == "train")
    return {int(layer): typical_spread(store.layer(int(layer), rows)) for layer in layers}


def steer_self(smk: Any) -> None:
    """Dose-response of a model's own probes and of random directions, per layer."""
    from crossprobe.ablate import random_directions
    from crossprobe.datasets import read_dataset

    spec, ds = _model(smk), _dataset_spec(smk)
    st = smk.params.steering
    rows = steering_rows(read_dataset(smk.input.dataset), st["prompts"])
    probes = _steering_probes(smk.input.probes, getattr(smk.input, "regression", []), ds.name)
    layers = sorted({layer for _, layer in probes})
    norms = _norms(smk.input.store, layers)
    model, tok = _load(spec)
    keys: dict[int, list[tuple[str, str, int]]] = {}
    directions: dict[int, np.ndarray] = {}
    for layer in layers:
        names = sorted(name for name, ly in probes if ly == layer)
        d_model = probes[(names[0], layer)].direction.shape[0]
        null = random_directions(
            d_model, st["null_directions"], seed=smk.params.transfer["seed"] + layer
        )
        keys[layer] = [("probe", n, layer) for n in names] + [
            ("null", f"null:{j}", layer) for j in range(len(null))
        ]
        directions[layer] = np.concatenate(
            [np.stack([probes[(n, layer)].direction for n in names]), null]
        )
        log.info("layer %d: typical spread %.4g, %d probes, %d null", layer, norms[layer],
                 len(names), len(null))  # fmt: skip
    responses = _steer_responses(
        model, tok, spec, ds, rows, directions, norms, smk, f"{spec.name}/{ds.name}"
    )
    frame = _long_responses(
        responses, keys, rows, st["alphas"], norms, {"model": spec.name, "dataset": ds.name}
    )
    zero = frame.loc[frame["alpha"] == 0.0, "delta"].abs().max()
    log.info("zero dose: largest |change| %.3g (exactly 0 expected)", zero)
    _write_parquet(smk.output[0], frame)


def steer_carried(smk: Any) -> None:
    """Dose-response in the target of every probe of the source on one dataset, carried through
    the cell's maps (a direction the map does not carry is steered as a zero vector and marked
    so)."""
    from crossprobe.align import carry, load_maps, reference_length
    from crossprobe.datasets import read_dataset

    spec, ds = _model(smk), _dataset_spec(smk)
    st = smk.params.steering
    min_length = smk.params.transfer["min_carried_length"]
    maps = load_maps(smk.input.maps)
    rows = steering_rows(read_dataset(smk.input.dataset), st["prompts"])
    probes = _steering_probes(smk.input.probes, getattr(smk.input, "regression", []), ds.name)
    keys: dict[int, list[tuple[str, str, int]]] = {}
    carried: dict[int, list[np.ndarray]] = {}
    lengths: list[dict[str, Any]] = []
    for ls, lt in sorted(maps):
        names = sorted(name for name, ly in probes if ly == ls)
        keys.setdefault(lt, []).extend(("probe", n, ls) for n in names)
        reference = reference_length(maps[(ls, lt)])
        for n in names:
            c = carry(maps[(ls, lt)], probes[(n, ls)].direction, min_length, reference=reference)
            carried.setdefault(lt, []).append(c.vector)
            lengths.append(
                {"probe": n, "source_layer": ls, "layer": lt, "carried_length": c.length}
            )
    directions = {lt: np.stack(v).astype(np.float32) for lt, v in carried.items() if v}
    norms = _norms(smk.input.store, directions)
    model, tok = _load(spec)
    responses = _steer_responses(
        model, tok, spec, ds, rows, directions, norms, smk,
        f"{spec.name}/{ds.name} from {smk.wildcards.source}",
    )  # fmt: skip
    fixed = {"model": spec.name, "source": smk.wildcards.source, "dataset": ds.name}
    frame = _long_responses(responses, keys, rows, st["alphas"], norms, fixed)
    frame = frame.merge(pd.DataFrame(lengths), on=["probe", "source_layer", "layer"])
    _write_parquet(smk.output[0], frame.assign(carried=frame["carried_length"] >= min_length))


def steering_tables(smk: Any) -> None:
    """steering.csv (slopes), steering_curves.csv, steering_carried.csv and their figures."""
    from crossprobe.plots import plot_steering, plot_steering_carried
    from crossprobe.steer import (
        CARRIED_COLUMNS,
        carried_table,
        self_tables,
        slopes_frame,
        with_pearson_ce,
    )

    boot = {"n_resamples": smk.params.bootstrap, "ci": smk.params.ci, "seed": smk.params.seed}
    own = pd.concat([pd.read_parquet(p) for p in smk.input.own], ignore_index=True)
    slopes, curves = self_tables(own, **boot)
    own_slopes = {m: s for m, s in slopes_frame(own).groupby("model")}
    carried = []
    for path in getattr(smk.input, "carried", []):
        frame = pd.read_parquet(path)
        s, t = frame["source"].iloc[0], frame["model"].iloc[0]
        carried.append(carried_table(frame, own_slopes[s], own_slopes[t], **boot))
    across = (
        pd.concat(carried, ignore_index=True) if carried else pd.DataFrame(columns=CARRIED_COLUMNS)
    )
    across = with_pearson_ce(across, pd.read_csv(smk.input.transfer))
    _write_csv(smk.output.slopes, slopes)
    _write_csv(smk.output.curves, curves)
    _write_csv(smk.output.carried, across)
    plot_steering(curves, smk.output.figure)
    plot_steering_carried(across, smk.output.carried_figure)


ENTRY_POINTS.update(
    {
        "rate": rate,
        "steer_self": steer_self,
        "steer_carried": steer_carried,
        "steering_tables": steering_tables,
    }
)


# ----------------------------------------------------------------------------- text baselines


def embed(smk: Any) -> None:
    """A text baseline's embedding of every statement of one dataset, stored as activations
    (one layer, 0) so that every probe of the run is fit on it like on a model."""
    from crossprobe.baseline import DEFAULT_MODEL, bundled_model_path, embed_rows, load_embedder
    from crossprobe.cache import write_store
    from crossprobe.datasets import read_dataset

    _torch_threads()
    b = smk.params.baseline
    df = read_dataset(smk.input.dataset)
    name = b["source"] or DEFAULT_MODEL  # None: the bundled copy of all-MiniLM-L6-v2
    with _timed("load"):
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


# ----------------------------------------------------------------------------- AB against AA


def crosslabels(smk: Any) -> None:
    """Probes on each model's (and baseline's) activations for every model's own labels of one
    dataset (results/crosslabels/<dataset>.csv)."""
    from crossprobe.cache import open_store
    from crossprobe.crosslabels import COLUMNS, common_rows, crosslabel_rows, label_series
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
    _write_csv(smk.output[0], pd.DataFrame(table, columns=COLUMNS))


def crosslabels_table(smk: Any) -> None:
    """crosslabels.csv over every (activations, dataset), its AA-against-AB summary and figure."""
    from crossprobe.crosslabels import own_against_others
    from crossprobe.plots import plot_crosslabels

    table = _concat_csv(smk.input)
    _write_csv(smk.output.table, table)
    _write_csv(smk.output.summary, own_against_others(table))
    plot_crosslabels(table, smk.output.figure)


ENTRY_POINTS.update(
    {"embed": embed, "crosslabels": crosslabels, "crosslabels_table": crosslabels_table}
)


# ----------------------------------------------------------------------------- condition geometry

MODEL_RULES |= {"geometry_extract", "geometry_behaviour"}


def _geometry_prompts(smk: Any, spec: ModelSpec, tok: Any) -> tuple[list[str], np.ndarray]:
    """Every (condition, question) prompt of the job, condition-major, and its condition index."""
    from crossprobe.errors import ConfigError
    from crossprobe.geometry import condition_prompts

    g = smk.params.geometry
    fmt = g["prompt_format"]
    if fmt == "chat" and not getattr(tok, "chat_template", None):
        raise ConfigError(
            f"geometry.prompt_format: chat needs a chat template, and {spec.name}'s tokenizer "
            f"has none; give {spec.name} raw there"
        )
    conditions = [(str(n), str(t)) for n, t in g["conditions"]]
    prompts, index = condition_prompts(conditions, g["questions"], fmt, tok)
    log.info("%d prompts (%s), e.g. %r", len(prompts), fmt, prompts[0])
    return prompts, index


def geometry_extract(smk: Any) -> None:
    """Last-token activations of one model under every (condition, question), into a store
    (labels: the condition's index; every row is in split `test`)."""
    from crossprobe.cache import write_store
    from crossprobe.extract import extract_activations
    from crossprobe.geometry import row_hashes
    from crossprobe.models import decoder_blocks, hidden_size

    spec, g = _model(smk), smk.params.geometry
    model, tok = _load(spec)
    prompts, index = _geometry_prompts(smk, spec, tok)
    batch_size = _batch_size(model, tok, spec, prompts, ablation=False)
    n_layers = len(decoder_blocks(model))
    by_pos = layers_by_position(spec, n_layers)
    layers = list(dict.fromkeys(by_pos))
    attrs = {
        **_store_model_attrs(spec, model, n_layers, by_pos),
        "position": "last",
        "prompt_format": g["prompt_format"],
        "conditions": [n for n, _ in g["conditions"]],
        "condition_texts": [t for _, t in g["conditions"]],
        "questions": list(g["questions"]),
        "crossprobe_version": __version__,
    }

    def rows(sl: slice) -> np.ndarray:
        return extract_activations(
            model, tok, prompts[sl], layers, position="last", batch_size=batch_size,
            progress=True, desc=f"{spec.name} geometry rows {sl.start}-{sl.stop}",
        )  # fmt: skip

    write_store(
        smk.output[0],
        extract_rows=rows,
        n_rows=len(prompts),
        layers=layers,
        d_model=hidden_size(model.config),
        labels=index,
        split=np.full(len(prompts), "test"),
        row_hash=row_hashes(g["conditions"], g["questions"]),
        attrs=attrs,
    )


def geometry_behaviour(smk: Any) -> None:
    """The measured behaviour of one model: 1 − JSD/ln 2 between its next-token distributions
    under every two conditions, averaged over the probe questions."""
    import torch

    from crossprobe.ablate import last_token_logits
    from crossprobe.geometry import behaviour_frame, behaviour_matrix

    spec, g = _model(smk), smk.params.geometry
    model, tok = _load(spec)
    prompts, _ = _geometry_prompts(smk, spec, tok)
    batch_size = _batch_size(model, tok, spec, prompts, ablation=False)
    n_cond, n_probe = len(g["conditions"]), len(g["questions"])
    chunks = [
        torch.log_softmax(logits.to(torch.float32), dim=-1).cpu().numpy()
        for logits in last_token_logits(model, tok, prompts, batch_size=batch_size)
    ]
    logprobs = np.concatenate(chunks).reshape(n_cond, n_probe, -1)
    matrix = behaviour_matrix(logprobs)
    names = [n for n, _ in g["conditions"]]
    off = matrix[~np.eye(n_cond, dtype=bool)]
    log.info("behaviour over %d pairs: mean %.4f, min %.4f, max %.4f",
             off.size, off.mean(), off.min(), off.max())  # fmt: skip
    _write_parquet(smk.output[0], behaviour_frame(names, matrix).assign(model=spec.name))


def _behaviours(smk: Any) -> dict[str, pd.DataFrame]:
    """Each behaviour model's table (source, condition, value)."""
    from crossprobe.geometry import read_behaviour_table

    frames = [
        read_behaviour_table(p) if smk.params.behaviour != "measured" else pd.read_parquet(p)
        for p in smk.input.behaviour
    ]
    table = pd.concat(frames, ignore_index=True)
    if "model" not in table.columns:
        table = table.assign(model=smk.params.behaviour_model)
    table = table.astype({"source": str, "condition": str, "model": str})
    return {str(m): sub.reset_index(drop=True) for m, sub in table.groupby("model", sort=False)}


def geometry_tables(smk: Any) -> None:
    """geometry.csv, geometry_behaviour.csv, geometry_layers.csv, the pairs behind them and the
    two figures: every model's own geometry against every behaviour, and through the maps."""
    from crossprobe.align import load_maps
    from crossprobe.cache import open_store
    from crossprobe.errors import CacheError
    from crossprobe.geometry import (
        TABLE_COLUMNS,
        WORDS_KEY,
        analysis_rows,
        carry_activations,
        condition_geometry,
        geometry_frame,
        layer_sensitivity,
        source_pairs,
        word_overlap,
    )
    from crossprobe.plots import plot_geometry, plot_geometry_behaviour

    names = list(smk.params.names)
    stores = {Path(p).parent.name: open_store(p) for p in smk.input.stores}
    for st in stores.values():
        if list(st.attrs["conditions"]) != names:
            raise CacheError(f"{st.path}: its conditions are not the run's; rerun geometry_extract")
    own: dict[tuple[str, int], tuple[int, np.ndarray]] = {}
    for m, st in stores.items():
        for pos, layer in enumerate(st.attrs["layers_by_position"]):
            own[(m, pos)] = (
                int(layer),
                condition_geometry(st.layer(int(layer)), st.labels(), len(names)),
            )
    geometry = pd.concat(
        [geometry_frame(m, pos, layer, names, cos) for (m, pos), (layer, cos) in own.items()],
        ignore_index=True,
    )
    behaviours = _behaviours(smk)
    analyses: list[tuple[dict[str, Any], np.ndarray, pd.DataFrame]] = []
    for a, beh in behaviours.items():
        for (b, pos), (layer, cos) in own.items():
            key = {"geometry_model": b, "behaviour_model": a, "via": "own",
                   "activations_model": b, "layer_position": pos, "layer": layer,
                   "activations_layer": layer}  # fmt: skip
            analyses.append((key, cos, beh))
    for (s, t), path in zip(smk.params.pairs, smk.input.maps, strict=True):
        if s not in behaviours:
            continue
        maps = load_maps(path)
        for pos, ls, lt in layer_pairs(stores[s].attrs, stores[t].attrs):
            x = carry_activations(maps[(ls, lt)], stores[s].layer(ls))
            key = {"geometry_model": t, "behaviour_model": s, "via": "map",
                   "activations_model": s, "layer_position": pos, "layer": lt,
                   "activations_layer": ls}  # fmt: skip
            try:
                cos = condition_geometry(x, stores[s].labels(), len(names))
            except ValueError as e:  # a map that sends every condition to one point
                log.warning("%s -> %s, layers %d -> %d: %s; its rows are NaN", s, t, ls, lt, e)
                cos = np.full((len(names), len(names)), np.nan)
            analyses.append((key, cos, behaviours[s]))
    texts = list(next(iter(stores.values())).attrs["condition_texts"])
    for a, beh in behaviours.items():  # the baseline that knows only the wording
        analyses.append(({**WORDS_KEY, "behaviour_model": a}, word_overlap(texts), beh))
    rows, pairs = [], []
    for key, cos, beh in analyses:
        rows += analysis_rows(key, cos, names, beh)
        pairs.append(source_pairs(cos, names, beh).assign(**key))
        log.info("%s", {k: key[k] for k in ("geometry_model", "behaviour_model", "via", "layer")})
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    pair_frame = pd.concat(pairs, ignore_index=True)
    _write_csv(smk.output.geometry, geometry)
    _write_csv(smk.output.table, table)
    _write_csv(smk.output.layers, layer_sensitivity(table))
    _write_csv(smk.output.behaviour, pair_frame)
    n_pos = len(next(iter(stores.values())).attrs["layers_by_position"])
    fig_pos = smk.params.figure_layer
    fig_pos = n_pos // 2 if fig_pos is None else fig_pos % n_pos
    first = smk.params.models[0]
    plot_geometry(geometry, first, fig_pos, smk.output.figure)
    plot_geometry_behaviour(pair_frame, table, smk.output.scatter)


ENTRY_POINTS.update(
    {
        "geometry_extract": geometry_extract,
        "geometry_behaviour": geometry_behaviour,
        "geometry_tables": geometry_tables,
    }
)
