"""The preference study's sections of the config: ``regression`` (ridge probes) and ``steering``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from crossprobe.errors import ConfigError


@dataclass(frozen=True)
class RegressionOptions:
    """Ridge probes on the datasets' targets and their held-one-dataset-out evaluation."""

    train_k: tuple[int, ...] = (2,)
    min_rows: int = 20


@dataclass(frozen=True)
class SteeringOptions:
    """Steering dose-response within and across models."""

    enabled: bool = True
    alphas: tuple[float, ...] = (-0.5, -0.25, 0.0, 0.25, 0.5)
    """Doses in units of the layer's typical spread (median ‖x − mean‖ on train); 0 is among
    them."""
    null_directions: int = 20
    """Random directions per layer: the permutation p-value's resolution is 1/(k+1), so k ≥ 20
    lets it go below 0.05."""
    prompts: int = 64

    def __post_init__(self) -> None:
        if 0.0 not in self.alphas:
            raise ConfigError(
                f"steering.alphas {list(self.alphas)} lacks 0: the zero dose is the exact "
                "no-change check; add 0.0"
            )
        if len(set(self.alphas)) < 2:
            raise ConfigError("steering.alphas: give at least two distinct doses")


def regression_options(entry: Mapping[str, Any]) -> RegressionOptions:
    """``regression`` (with its schema defaults) as typed options."""
    return RegressionOptions(train_k=tuple(entry["train_k"]), min_rows=int(entry["min_rows"]))


def steering_options(entry: Mapping[str, Any]) -> SteeringOptions:
    """``steering`` (with its schema defaults) as typed options, checked."""
    return SteeringOptions(
        enabled=bool(entry["enabled"]),
        alphas=tuple(float(a) for a in entry["alphas"]),
        null_directions=int(entry["null_directions"]),
        prompts=int(entry["prompts"]),
    )
