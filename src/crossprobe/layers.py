"""Layer specs: relative depths or block indices, resolved without importing torch."""

from __future__ import annotations

import math
from collections.abc import Sequence

from crossprobe.errors import ConfigError


def resolve_layers(spec: Sequence[int | float], n_layers: int, *, model: str = "") -> list[int]:
    """Block indices from a layer spec.

    A float in [0, 1] is a relative depth ``r`` → ``floor(r·(L−1) + 0.5)`` (round half up);
    an int is a block index, negative counting from the end. Order is kept, duplicates dropped.
    """
    out: list[int] = []
    who = f"model {model!r}" if model else "the model"
    for v in spec:
        if isinstance(v, bool):
            raise ConfigError(f"layer {v!r} for {who} is a bool: use an int index or a float depth")
        if isinstance(v, float):
            if not (0.0 <= v <= 1.0) or math.isnan(v):
                raise ConfigError(
                    f"relative layer depth {v!r} for {who} is outside [0, 1]; "
                    "use a float in [0, 1] or an int block index"
                )
            idx = math.floor(v * (n_layers - 1) + 0.5)
        elif isinstance(v, int):
            if not (-n_layers <= v < n_layers):
                raise ConfigError(
                    f"layer {v} is out of range for {who} with {n_layers} blocks; "
                    f"use an index in [{-n_layers}, {n_layers - 1}] or a float depth in [0, 1]"
                )
            idx = v % n_layers
        else:
            raise ConfigError(
                f"layer {v!r} for {who} must be an int index or a float depth in [0, 1]"
            )
        if idx not in out:
            out.append(idx)
    return out
