"""Jobs of the preference study: ratings, ridge probes, held-one-dataset-out, similarity and
steering."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crossprobe.config import DatasetSpec, ModelSpec
from crossprobe.io import atomic_path
from crossprobe.jobs import (
    batch_size_for,
    concat_csv,
    dataset_spec,
    effect_rows,
    load_model,
    log,
    model_prompts,
    model_spec,
    write_csv,
    write_parquet,
)


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
    write_csv(smk.output.table, pd.DataFrame(rows, columns=PROBE_COLUMNS))


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
    write_csv(smk.output[0], heldout_table(held))


def _with_self_rating(df: pd.DataFrame, ratings_path: str | None, where: str) -> pd.DataFrame:
    """The dataset's table with the model's own ratings as the column ``self_rating``."""
    from crossprobe.errors import CacheError, ConfigError
    from crossprobe.preference.rating import TARGET

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
    from crossprobe.preference.plots import plot_regression

    table, heldout = concat_csv(smk.input.tables), concat_csv(smk.input.heldout)
    write_csv(smk.output.table, table)
    write_csv(smk.output.heldout, heldout)
    plot_regression(table, heldout, smk.output.figure)


def similarity(smk: Any) -> None:
    """Cosines between probe directions, within every model and across every ordered pair."""
    from crossprobe.align import load_maps
    from crossprobe.preference.plots import plot_similarity
    from crossprobe.preference.similarity import across_models, within_model
    from crossprobe.probes import load_probes

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
    write_csv(smk.output.within, within)
    table = pd.concat(across, ignore_index=True) if across else across_models("", "", {}, {}, {})
    write_csv(smk.output.across, table)
    plot_similarity(within, smk.output.figure)


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
    return model_prompts(df, rated, replace(spec, answers=None), tok), ids, values


def rate(smk: Any) -> None:
    """Each row's expected self-rating and digit mass under one model (results/ratings/)."""
    from crossprobe.datasets import read_dataset
    from crossprobe.preference.rating import rate as rate_prompts

    spec, ds = model_spec(smk), dataset_spec(smk)
    df = read_dataset(smk.input.dataset)
    model, tok = load_model(spec)
    prompts, ids, values = _rating_prompts(df, ds, spec, tok)
    log.info("rating prompt: %r; digits %s", prompts[0], tok.convert_ids_to_tokens(list(ids)))
    batch_size = batch_size_for(model, tok, spec, prompts, ablation=False)
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
    write_parquet(smk.output[0], out)


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
    from crossprobe.preference.rating import expected_rating_readout
    from crossprobe.preference.steer import steering_effects

    alphas = smk.params.steering["alphas"]
    positions = smk.params.transfer["positions"]
    prompts = model_prompts(rows, ds, spec, tok)
    answers = answer_token_ids(tok, spec.answers_for(ds), model=spec.name)
    batch_size = batch_size_for(model, tok, spec, prompts, ablation=True)
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
    from crossprobe.preference.steer import typical_spread

    store = open_store(store_path)
    rows = np.flatnonzero(store.split() == "train")
    return {int(layer): typical_spread(store.layer(int(layer), rows)) for layer in layers}


def steer_self(smk: Any) -> None:
    """Dose-response of a model's own probes and of random directions, per layer."""
    from crossprobe.ablate import random_directions
    from crossprobe.datasets import read_dataset

    spec, ds = model_spec(smk), dataset_spec(smk)
    st = smk.params.steering
    rows = steering_rows(read_dataset(smk.input.dataset), st["prompts"])
    probes = _steering_probes(smk.input.probes, getattr(smk.input, "regression", []), ds.name)
    layers = sorted({layer for _, layer in probes})
    norms = _norms(smk.input.store, layers)
    model, tok = load_model(spec)
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
    write_parquet(smk.output[0], frame)


def steer_carried(smk: Any) -> None:
    """Dose-response in the target of every probe of the source on one dataset, carried through
    the cell's maps (a direction the map does not carry is steered as a zero vector and marked
    so)."""
    from crossprobe.align import carry, load_maps, reference_length
    from crossprobe.datasets import read_dataset

    spec, ds = model_spec(smk), dataset_spec(smk)
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
    model, tok = load_model(spec)
    responses = _steer_responses(
        model, tok, spec, ds, rows, directions, norms, smk,
        f"{spec.name}/{ds.name} from {smk.wildcards.source}",
    )  # fmt: skip
    fixed = {"model": spec.name, "source": smk.wildcards.source, "dataset": ds.name}
    frame = _long_responses(responses, keys, rows, st["alphas"], norms, fixed)
    frame = frame.merge(pd.DataFrame(lengths), on=["probe", "source_layer", "layer"])
    write_parquet(smk.output[0], frame.assign(carried=frame["carried_length"] >= min_length))


def steering_tables(smk: Any) -> None:
    """steering.csv (slopes), steering_curves.csv, steering_carried.csv and their figures."""
    from crossprobe.preference.plots import plot_steering, plot_steering_carried
    from crossprobe.preference.steer import (
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
    write_csv(smk.output.slopes, slopes)
    write_csv(smk.output.curves, curves)
    write_csv(smk.output.carried, across)
    plot_steering(curves, smk.output.figure)
    plot_steering_carried(across, smk.output.carried_figure)


JOBS = {
    "rate": rate,
    "ridge": ridge,
    "heldout": heldout,
    "regression_tables": regression_tables,
    "similarity": similarity,
    "steer_self": steer_self,
    "steer_carried": steer_carried,
    "steering_tables": steering_tables,
}
MODEL_JOBS = frozenset({"rate", "steer_self", "steer_carried"})
