"""Jobs of the transfer study: maps, ablations (own and carried), cells, tables and figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from crossprobe import __version__
from crossprobe.config import DatasetSpec, ModelSpec
from crossprobe.io import atomic_path
from crossprobe.jobs import (
    batch_size_for,
    dataset_spec,
    effect_rows,
    layer_pairs,
    load_model,
    log,
    model_prompts,
    model_spec,
    store_pairs,
    write_csv,
    write_parquet,
)


def align(smk: Any) -> None:
    """Fit the maps of one ordered model pair on the align split of one dataset, or pooled over
    the datasets of the alignment set."""
    from crossprobe.align import fit_map, save_maps
    from crossprobe.errors import CacheError

    src, tgt = store_pairs(smk.input.source), store_pairs(smk.input.target)
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
            model, tok, model_prompts(negatives, ds, spec, tok), answers, batch_size=batch_size
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
    write_parquet(path, out)


def answers_table(smk: Any) -> None:
    """Each model's own answer AUROC and accuracy per dataset (results/tables/answers.csv)."""
    from crossprobe.transfer.cells import answer_summary

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

    spec, ds = model_spec(smk), dataset_spec(smk)
    transfer = smk.params.transfer
    rows = _effect_setup(ds, smk.input.dataset, transfer)
    model, tok = load_model(spec)
    prompts = model_prompts(rows, ds, spec, tok)
    answers = answer_token_ids(tok, spec.answers_for(ds), model=spec.name)
    probes = load_probes(smk.input.probes)
    batch_size = batch_size_for(model, tok, spec, prompts, ablation=True)
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
    write_parquet(smk.output.effects, _effects_frame(rows, columns))


def ablate_carried(smk: Any) -> None:
    """Effects in the target of every probe of the source on one dataset, carried through the
    cell's maps, and of the map-matched null (random source directions through the same maps)."""
    from crossprobe.align import carry, load_maps, matched_null, reference_length
    from crossprobe.models import answer_token_ids
    from crossprobe.probes import load_probes

    spec, ds = model_spec(smk), dataset_spec(smk)
    transfer = smk.params.transfer
    maps = load_maps(smk.input.maps)
    rows = _effect_setup(ds, smk.input.dataset, transfer)
    probes = load_probes(smk.input.probes)
    model, tok = load_model(spec)
    prompts = model_prompts(rows, ds, spec, tok)
    answers = answer_token_ids(tok, spec.answers_for(ds), model=spec.name)
    batch_size = batch_size_for(model, tok, spec, prompts, ablation=True)
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
    write_parquet(smk.output[0], _effects_frame(rows, columns).assign(dataset=ds.name))


def _test_xy(store: Any, layer: int) -> tuple[np.ndarray, np.ndarray]:
    rows = np.flatnonzero(store.split() == "test")
    return store.layer(layer, rows), store.labels()[rows]


def _floor(self_effects: pd.DataFrame, layer: int) -> float:
    from crossprobe.transfer.cells import noise_floor

    col = f"zero:{layer}"
    return noise_floor(self_effects[col].to_numpy(np.float64) if col in self_effects else None)


def _null_effects(effects: pd.DataFrame, prefix: str) -> np.ndarray:
    """The effects of the random directions whose columns start with ``prefix``, [k, prompt]
    (``null:<layer>:``: the model's own; ``matched:<ls>:<lt>:``: carried through the map)."""
    cols = [c for c in effects if c.startswith(prefix)]
    if not cols:
        return np.empty((0, len(effects)))
    return np.stack([effects[c].to_numpy(np.float64) for c in cols])


class _Cell(NamedTuple):
    """What one cell's scoring reads: both models' stores, probes and own effects, the carried
    effects (None on the diagonal) and the maps."""

    source: str
    target: str
    dataset: str
    src_store: Any
    tgt_store: Any
    src_probes: dict[tuple[str, int], Any]
    tgt_probes: dict[tuple[str, int], Any]
    src_fx: pd.DataFrame
    tgt_self: pd.DataFrame
    carried: pd.DataFrame | None
    maps: dict[tuple[int, int], Any]


def _read_cell(smk: Any) -> _Cell:
    from crossprobe.align import load_maps
    from crossprobe.cache import open_store
    from crossprobe.errors import CacheError
    from crossprobe.probes import load_probes

    s, t, d = smk.wildcards.source, smk.wildcards.target, smk.wildcards.dataset
    cell = _Cell(
        source=s,
        target=t,
        dataset=d,
        src_store=open_store(smk.input.source_store),
        tgt_store=open_store(smk.input.target_store),
        src_probes=load_probes(smk.input.source_probes),
        tgt_probes=load_probes(smk.input.target_probes),
        src_fx=pd.read_parquet(smk.input.source_effects),
        tgt_self=pd.read_parquet(smk.input.target_effects),
        carried=pd.read_parquet(smk.input.carried) if s != t else None,
        maps=load_maps(smk.input.maps) if s != t else {},
    )
    for other in (cell.tgt_self, cell.carried):
        if other is not None and not np.array_equal(other["row_hash"], cell.src_fx["row_hash"]):
            raise CacheError(f"{d}: source and target effects cover different prompts")
    return cell


def _cell_inputs(cell: _Cell, method: str, ls: int, lt: int, min_length: float) -> Any:
    """The :class:`~crossprobe.transfer.cells.CellInputs` of one probe family at one layer
    pair."""
    from crossprobe.align import carried_length, identity_map, reference_length
    from crossprobe.stats import auroc
    from crossprobe.transfer.cells import CellInputs

    carried_fx = cell.carried
    diagonal = carried_fx is None
    fmap = identity_map(cell.src_store.d_model) if diagonal else cell.maps[(ls, lt)]
    xs, ys = _test_xy(cell.src_store, ls)
    xt, yt = _test_xy(cell.tgt_store, lt)
    ps, pt = cell.src_probes[(method, ls)], cell.tgt_probes[(method, lt)]
    dm_s = cell.src_fx[f"probe:{method}:{ls}"].to_numpy(np.float64)
    dm_t = (
        dm_s
        if carried_fx is None
        else carried_fx[f"carried:{method}:{ls}:{lt}"].to_numpy(np.float64)
    )
    length = carried_length(fmap, ps.direction, reference_length(fmap))
    return CellInputs(
        dm_source=dm_s,
        dm_target=dm_t,
        groups=cell.src_fx["split_key"].to_numpy(),
        carried_length=length,
        carried=diagonal or length >= min_length,
        dm_matched_null=None
        if carried_fx is None
        else _null_effects(carried_fx, f"matched:{ls}:{lt}:"),
        dm_null=_null_effects(cell.tgt_self, f"null:{lt}:"),
        dm_source_null=_null_effects(cell.src_fx, f"null:{ls}:"),
        carried_direction=fmap.carry_direction(ps.direction),
        target_direction=pt.direction,
        transfer_auroc=auroc(yt, xt @ fmap.carry_weight(ps.weight)),
        source_auroc=auroc(ys, ps.score(xs)),
        target_auroc=auroc(yt, pt.score(xt)),
        map_r2=fmap.r2_forward,
        floor_source=_floor(cell.src_fx, ls),
        floor_target=_floor(cell.tgt_self, lt),
    )


def correlate(smk: Any) -> None:
    """Pearson_CE, CI, null, transfer AUROC and cosine for every probe of one cell: an ordered
    (source, target) pair on one dataset."""
    from crossprobe.transfer.cells import CELL_COLUMNS, score_cell, scoring_floor

    transfer = smk.params.transfer
    cell = _read_cell(smk)
    cells, null_rows, prompt_rows = [], [], []
    for pos, ls, lt in layer_pairs(cell.src_store.attrs, cell.tgt_store.attrs):
        for method in sorted({m for m, layer in cell.src_probes if layer == ls}):
            inputs = _cell_inputs(cell, method, ls, lt, transfer["min_carried_length"])
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
                "source": cell.source,
                "target": cell.target,
                "dataset": cell.dataset,
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
            rows = cell.src_fx[["row", "row_hash"]]
            prompt_rows.append(
                pd.DataFrame(
                    {
                        **key,
                        "row": rows["row"],
                        "row_hash": rows["row_hash"],
                        "dm_source": inputs.dm_source,
                        "dm_target": inputs.dm_target,
                    }  # fmt: skip
                )
            )
    write_csv(smk.output.cells, pd.DataFrame(cells, columns=CELL_COLUMNS))
    write_csv(smk.output.null, pd.DataFrame(null_rows))
    write_parquet(smk.output.prompts, pd.concat(prompt_rows, ignore_index=True))


def transfer_tables(smk: Any) -> None:
    """transfer.csv, the transfer matrix, the overstatement summary and ProbeBench entries."""
    import yaml

    from crossprobe.io import write_json
    from crossprobe.transfer.cells import (
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
    from crossprobe.transfer import plots

    table = pd.read_csv(smk.input.table)
    matrix = pd.read_csv(smk.input.matrix)
    nulls = pd.read_csv(smk.input.null)
    plots.plot_transfer_matrix(matrix, list(smk.params.models), smk.output.matrix)
    plots.plot_profiles(table, smk.output.profiles)
    plots.plot_cosine_vs_rho(table, smk.output.scatter)
    plots.plot_null(table, nulls, smk.output.null)
    plots.plot_answers(pd.read_csv(smk.input.answers), table, smk.output.answers)


JOBS = {
    "align": align,
    "align_dataset": align,
    "ablate_self": ablate_self,
    "ablate_carried": ablate_carried,
    "answers_table": answers_table,
    "correlate": correlate,
    "transfer_tables": transfer_tables,
    "plot_transfer": plot_transfer,
}
MODEL_JOBS = frozenset({"ablate_self", "ablate_carried"})
