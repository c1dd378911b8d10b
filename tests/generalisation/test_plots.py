"""Figures: the generalisation heatmaps' layout and colour scale."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from crossprobe.generalisation.plots import GENERALISATION_SCALES, generalisation_figure


def _table(n_datasets: int, n_layers: int) -> pd.DataFrame:
    rng = np.random.default_rng(n_datasets * 10 + n_layers)
    names = [f"dataset_with_a_long_name_{i}" if i % 3 == 0 else f"d{i}" for i in range(n_datasets)]
    rows = [
        {
            "layer": 4 * layer,
            "method": method,
            "train_dataset": a,
            "eval_dataset": b,
            "auroc": rng.uniform(),
            "recovered_accuracy": rng.uniform(),
        }
        for layer, method, a, b in itertools.product(
            range(n_layers), ["dim", "logreg"], names, names
        )
    ]
    return pd.DataFrame(rows)


def _texts(fig) -> list:
    """Every visible text of the figure but the values printed inside the cells."""
    texts = [fig._suptitle] if fig._suptitle is not None else []
    for ax in fig.axes:
        texts += [ax.title, ax.xaxis.label, ax.yaxis.label]
        texts += ax.get_xticklabels() + ax.get_yticklabels()
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


@pytest.mark.parametrize(("n_datasets", "n_layers"), [(1, 1), (6, 2), (3, 6), (20, 2)])
def test_generalisation_figure_texts_never_overlap(n_datasets, n_layers):
    import matplotlib.pyplot as plt

    fig = generalisation_figure(_table(n_datasets, n_layers), "model-x")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in _texts(fig)]
    overlaps = [
        (a, b)
        for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2)
        if box_a.overlaps(box_b) and box_a.width > 0 and box_b.width > 0
    ]
    plt.close(fig)
    assert not overlaps, overlaps[:5]


def test_auroc_scale_is_diverging_at_chance_over_the_whole_range():
    scale = GENERALISATION_SCALES["auroc"]
    assert (scale["vmin"], scale["center"], scale["vmax"]) == (0.0, 0.5, 1.0)
    table = _table(2, 1)
    table.loc[0, "auroc"] = 0.01  # perfectly anti-predictive
    fig = generalisation_figure(table, "m")
    mesh = [ax for ax in fig.axes if "AUROC" in ax.get_title()][0].collections[0]
    low = mesh.cmap(mesh.norm(0.01))
    chance = mesh.cmap(mesh.norm(0.5))
    assert np.linalg.norm(np.subtract(low, chance)) > 0.5  # no longer the colour of chance
