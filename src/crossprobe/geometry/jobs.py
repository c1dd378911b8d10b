"""Jobs of the condition-geometry study."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crossprobe import __version__
from crossprobe.config import ModelSpec
from crossprobe.jobs import (
    batch_size_for,
    layer_pairs,
    layers_by_position,
    load_model,
    log,
    model_attrs,
    model_spec,
    write_csv,
    write_parquet,
)


def _geometry_prompts(smk: Any, spec: ModelSpec, tok: Any) -> tuple[list[str], np.ndarray]:
    """Every (condition, question) prompt of the job, condition-major, and its condition index."""
    from crossprobe.errors import ConfigError
    from crossprobe.geometry.conditions import condition_prompts

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
    from crossprobe.geometry.conditions import row_hashes
    from crossprobe.models import decoder_blocks, hidden_size

    spec, g = model_spec(smk), smk.params.geometry
    model, tok = load_model(spec)
    prompts, index = _geometry_prompts(smk, spec, tok)
    batch_size = batch_size_for(model, tok, spec, prompts, ablation=False)
    n_layers = len(decoder_blocks(model))
    by_pos = layers_by_position(spec, n_layers)
    layers = list(dict.fromkeys(by_pos))
    attrs = {
        **model_attrs(spec, model, n_layers, by_pos),
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
    from crossprobe.geometry.conditions import behaviour_frame, behaviour_matrix

    spec, g = model_spec(smk), smk.params.geometry
    model, tok = load_model(spec)
    prompts, _ = _geometry_prompts(smk, spec, tok)
    batch_size = batch_size_for(model, tok, spec, prompts, ablation=False)
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
    write_parquet(smk.output[0], behaviour_frame(names, matrix).assign(model=spec.name))


def _behaviours(smk: Any) -> dict[str, pd.DataFrame]:
    """Each behaviour model's table (source, condition, value)."""
    from crossprobe.geometry.conditions import read_behaviour_table

    frames = [
        read_behaviour_table(p) if smk.params.behaviour != "measured" else pd.read_parquet(p)
        for p in smk.input.behaviour
    ]
    table = pd.concat(frames, ignore_index=True)
    if "model" not in table.columns:
        table = table.assign(model=smk.params.behaviour_model)
    table = table.astype({"source": str, "condition": str, "model": str})
    return {str(m): sub.reset_index(drop=True) for m, sub in table.groupby("model", sort=False)}


def _analyses(
    smk: Any,
    stores: dict[str, Any],
    own: dict[tuple[str, int], tuple[int, np.ndarray]],
    names: list[str],
) -> list[tuple[dict[str, Any], np.ndarray, pd.DataFrame]]:
    """Every (key, condition geometry, behaviour) the tables compare: each model's own geometry
    against each behaviour, each source's activations carried through the maps into each
    target, and the wording-only baseline."""
    from crossprobe.align import load_maps
    from crossprobe.geometry.conditions import (
        WORDS_KEY,
        carry_activations,
        condition_geometry,
        word_overlap,
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
    return analyses


def geometry_tables(smk: Any) -> None:
    """geometry.csv, geometry_behaviour.csv, geometry_layers.csv, the pairs behind them and the
    two figures: every model's own geometry against every behaviour, and through the maps."""
    from crossprobe.cache import open_store
    from crossprobe.errors import CacheError
    from crossprobe.geometry.conditions import (
        TABLE_COLUMNS,
        analysis_rows,
        condition_geometry,
        geometry_frame,
        layer_sensitivity,
        source_pairs,
    )
    from crossprobe.geometry.plots import plot_geometry, plot_geometry_behaviour

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
    analyses = _analyses(smk, stores, own, names)
    rows, pairs = [], []
    for key, cos, beh in analyses:
        rows += analysis_rows(key, cos, names, beh)
        pairs.append(source_pairs(cos, names, beh).assign(**key))
        log.info("%s", {k: key[k] for k in ("geometry_model", "behaviour_model", "via", "layer")})
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    pair_frame = pd.concat(pairs, ignore_index=True)
    write_csv(smk.output.geometry, geometry)
    write_csv(smk.output.table, table)
    write_csv(smk.output.layers, layer_sensitivity(table))
    write_csv(smk.output.behaviour, pair_frame)
    n_pos = len(next(iter(stores.values())).attrs["layers_by_position"])
    fig_pos = smk.params.figure_layer
    fig_pos = n_pos // 2 if fig_pos is None else fig_pos % n_pos
    first = smk.params.models[0]
    plot_geometry(geometry, first, fig_pos, smk.output.figure)
    plot_geometry_behaviour(pair_frame, table, smk.output.scatter)


JOBS = {
    "geometry_extract": geometry_extract,
    "geometry_behaviour": geometry_behaviour,
    "geometry_tables": geometry_tables,
}
MODEL_JOBS = frozenset({"geometry_extract", "geometry_behaviour"})
