"""The condition-geometry study's section of the config (``geometry``), resolved and checked
when the workflow is planned."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from crossprobe.errors import ConfigError

if TYPE_CHECKING:
    from crossprobe.config import ModelSpec


@dataclass(frozen=True)
class GeometryOptions:
    """The condition-geometry study (``geometry``; :mod:`crossprobe.geometry.conditions`)."""

    enabled: bool = False
    """Run the geometry stages (false leaves them out of the run)."""
    models: tuple[str, ...] = ()
    """The models the geometry stages run on (every model of the run unless the key names some)."""
    conditions: tuple[tuple[str, str], ...] = ()
    """(name, text) of each condition: a system prompt, or a prefix of raw text."""
    questions: tuple[str, ...] = ()
    """The questions every condition is crossed with; the centroids average over them."""
    probe_questions: tuple[str, ...] = ()
    """Questions for the measured behaviour, disjoint from ``questions``."""
    behaviour: str = "measured"
    """``measured`` (the built-in JSD similarity, from each model's logits) or a table's path."""
    behaviour_model: str | None = None
    """The model a user's table (without a ``model`` column) describes."""
    prompt_format: Mapping[str, Literal["raw", "chat"]] = field(default_factory=dict)
    """Prompt format per model; a model not named takes its own ``prompt_format``, else raw."""
    via_map: bool = True
    """Also carry each model's activations into every other model through the pair's maps."""
    figure_layer: int | None = None
    """Position in the layer list of the clustered heatmap's layer; None: the middle one."""

    @property
    def measured(self) -> bool:
        return self.behaviour == "measured"

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.conditions]

    def format_for(self, spec: ModelSpec) -> Literal["raw", "chat"]:
        """The prompt format ``spec`` gets in the geometry stages."""
        return self.prompt_format.get(spec.name) or spec.prompt_format or "raw"


def geometry_options(entry: Mapping[str, Any], models: Mapping[str, ModelSpec]) -> GeometryOptions:
    """``geometry`` resolved (conditions and questions read) and checked, when enabled; a user
    behaviour table is read and checked against the conditions here, before any job."""
    if not entry["enabled"]:
        return GeometryOptions()
    from crossprobe.geometry.conditions import (
        MEASURED,
        check_behaviour_table,
        conditions_set,
        read_behaviour_table,
    )

    cs = conditions_set(entry["conditions"], entry["questions"], entry["probe_questions"])
    chosen = tuple(entry["models"] or models)
    not_run = sorted(set(chosen) - set(models))
    if not_run:
        raise ConfigError(
            f"geometry.models: {not_run} are not models of this run ({', '.join(models)})"
        )
    unknown = sorted(set(entry["prompt_format"]) - set(models))
    if unknown:
        raise ConfigError(
            f"geometry.prompt_format: {unknown} are not models of this run ({', '.join(models)})"
        )
    behaviour, owner = entry["behaviour"], entry["behaviour_model"]
    if owner is not None and owner not in chosen:
        raise ConfigError(
            f"geometry.behaviour_model: {owner!r} is not a model of the study "
            f"(geometry.models: {', '.join(chosen)})"
        )
    if behaviour != MEASURED:
        where = f"geometry.behaviour ({behaviour})"
        if not Path(behaviour).is_file():
            raise ConfigError(
                f"{where}: the file does not exist; give a CSV or Parquet table with columns "
                f"source, condition, value, or `{MEASURED}`"
            )
        table = read_behaviour_table(behaviour)
        check_behaviour_table(table, [n for n, _ in cs.conditions], where, chosen)
        if "model" not in table.columns and owner is None:
            raise ConfigError(
                f"{where}: the table has no `model` column; name the model it describes with "
                "geometry.behaviour_model"
            )
    n_layers = len(next(iter(models.values())).layers) if models else 0
    fig = entry["figure_layer"]
    if fig is not None and not -n_layers <= fig < n_layers:
        raise ConfigError(
            f"geometry.figure_layer: {fig} is not a position in the {n_layers}-entry layer list"
        )
    return GeometryOptions(
        enabled=True,
        models=chosen,
        conditions=cs.conditions,
        questions=cs.questions,
        probe_questions=cs.probe_questions,
        behaviour=str(behaviour),
        behaviour_model=owner,
        prompt_format=dict(entry["prompt_format"]),
        via_map=bool(entry["via_map"]),
        figure_layer=fig,
    )
