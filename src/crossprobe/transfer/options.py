"""The transfer study's section of the config (``transfer``): how probes are carried and scored."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from crossprobe.errors import ConfigError

if TYPE_CHECKING:
    from crossprobe.config import DatasetSpec


@dataclass(frozen=True)
class TransferOptions:
    """How probes are carried across models and scored."""

    map: Literal["ridge", "procrustes"] = "ridge"
    scope: Literal["layer", "from_layer"] = "layer"
    positions: Literal["all", "skip_first"] = "skip_first"
    min_prompts: int = 200
    allow_unscored: bool = False
    null_directions: int = 32
    bootstrap: int = 1000
    ci: float = 0.95
    min_sources: int = 3
    min_effect_ratio: float = 2.0
    """An ablation must move the margin this many times a typical random direction's (and more
    than 95% of the random directions) before its cell can beat the null."""
    min_facts: int = 30
    """Facts (groups) a cell needs to be scored and to beat its null."""
    min_carried_length: float = 0.1
    """A carried direction shorter than this, relative to random unit directions through the
    same map, is not carried: not ablated, not steered, not scored."""
    matched_null_directions: int = 8
    """Random source directions carried through the map per layer pair (the map-matched null)."""
    align_on: str | tuple[str, ...] = "each"
    """The rows each map is fit on: ``"each"`` (one map per dataset, on its own `align` rows) or
    the names of the datasets whose `align` rows one map per pair pools (the alignment set)."""
    seed: int = 0

    def align_set(self, dataset: str) -> tuple[str, ...]:
        """The datasets whose `align` rows fit the map that carries ``dataset``'s probes."""
        return (dataset,) if self.align_on == "each" else tuple(self.align_on)

    def pair_align_set(self, datasets: Iterable[str]) -> tuple[str, ...]:
        """The datasets whose `align` rows fit a pair's one map (rule `align`): the alignment
        set, or with ``each`` (where only the geometry stages use a pair's map) every dataset of
        the run (``datasets``)."""
        return tuple(datasets) if self.align_on == "each" else tuple(self.align_on)


def transfer_options(entry: dict[str, Any], datasets: Mapping[str, DatasetSpec]) -> TransferOptions:
    """``transfer`` with its alignment set checked against the run's datasets."""
    align_on = entry.get("align_on", "each")
    if align_on != "each":
        unknown = [d for d in align_on if d not in datasets]
        if unknown:
            raise ConfigError(
                f"transfer.align_on: {unknown} are not datasets of this run ({sorted(datasets)}); "
                "name datasets under `datasets:`, or write `each` for one map per dataset."
            )
        entry = {**entry, "align_on": tuple(align_on)}
    return TransferOptions(**entry)
