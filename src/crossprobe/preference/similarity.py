"""Probe similarity: cosines between the probe directions of every pair of datasets.

Within a model, per layer: every probe (``<dataset>/<method>``, and ``<dataset>.<target>/ridge``
for regression probes) against every other at the same layer. Across models, per ordered pair
and layer pair: each source probe carried into the target through the pair's map
(``d_{s→t} = A·d_s``, the direction ablation uses) against each of the target's own probes; the
pairs with the same dataset and method are the cosine baseline of ``transfer.csv``.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from crossprobe.align import LinearMap
from crossprobe.probes import Probe
from crossprobe.stats import cosine

WITHIN_COLUMNS = ["model", "layer", "probe_a", "probe_b", "cosine"]
ACROSS_COLUMNS = [
    "source",
    "target",
    "source_layer",
    "target_layer",
    "source_probe",
    "target_probe",
    "cosine",
]

Probes = Mapping[str, Mapping[tuple[str, int], Probe]]
"""Probe files by name (``<dataset>`` or ``<dataset>.<target>``), each keyed (method, layer)."""


def _by_layer(probes: Probes) -> dict[int, dict[str, Probe]]:
    out: dict[int, dict[str, Probe]] = {}
    for name, file in sorted(probes.items()):
        for (method, layer), probe in sorted(file.items()):
            out.setdefault(layer, {})[f"{name}/{method}"] = probe
    return out


def within_model(model: str, probes: Probes) -> pd.DataFrame:
    """Cosine of every ordered pair of a model's probes at each layer (1 on the diagonal)."""
    rows = [
        {
            "model": model,
            "layer": layer,
            "probe_a": a,
            "probe_b": b,
            "cosine": cosine(pa.direction, pb.direction),
        }
        for layer, at in sorted(_by_layer(probes).items())
        for a, pa in at.items()
        for b, pb in at.items()
    ]
    return pd.DataFrame(rows, columns=WITHIN_COLUMNS)


def across_models(
    source: str,
    target: str,
    source_probes: Probes,
    target_probes: Probes,
    maps: Mapping[tuple[int, int], LinearMap],
) -> pd.DataFrame:
    """Cosine of each source probe carried into ``target`` against each of its own probes."""
    src, tgt = _by_layer(source_probes), _by_layer(target_probes)
    rows = []
    for (ls, lt), fmap in sorted(maps.items()):
        for a, pa in src.get(ls, {}).items():
            carried = fmap.carry_direction(pa.direction)
            for b, pb in tgt.get(lt, {}).items():
                rows.append(
                    {
                        "source": source,
                        "target": target,
                        "source_layer": ls,
                        "target_layer": lt,
                        "source_probe": a,
                        "target_probe": b,
                        "cosine": cosine(carried, pb.direction),
                    }
                )
    return pd.DataFrame(rows, columns=ACROSS_COLUMNS)
