"""Saving figures (PNG with a PDF beside it, atomically), on a backend without a display."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from crossprobe.io import atomic_path  # noqa: E402

__all__ = ["plt", "save_figure"]


def save_figure(fig: plt.Figure, path: str | Path) -> None:
    """Save ``fig`` as ``path`` (PNG) and beside it as PDF, atomically, then close it."""
    path = Path(path)
    for target in (path, path.with_suffix(".pdf")):
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=target.suffix[1:], dpi=150, bbox_inches="tight")
    plt.close(fig)
