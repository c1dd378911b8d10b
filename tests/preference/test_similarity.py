"""Probe similarity: known cosines within a model and through a map."""

import numpy as np
import pytest

from crossprobe.align import LinearMap, identity_map
from crossprobe.preference.similarity import across_models, within_model
from crossprobe.probes import fit_dim


def _probe(direction, layer=3):
    d = np.asarray(direction, dtype=float)
    x = np.stack([d, -d, 2 * d, -2 * d])
    return fit_dim(x, np.array([1, 0, 1, 0]), layer)


def test_within_model_cosines_are_those_of_the_directions():
    probes = {"a": {("dim", 3): _probe([1, 0, 0])}, "b": {("dim", 3): _probe([1, 1, 0])}}
    t = within_model("m", probes).set_index(["probe_a", "probe_b"])["cosine"]
    assert t[("a/dim", "a/dim")] == pytest.approx(1.0)
    assert t[("a/dim", "b/dim")] == pytest.approx(1 / np.sqrt(2))
    assert len(t) == 4


def test_across_models_carries_the_source_direction_through_the_map():
    src = {"a": {("dim", 3): _probe([1, 0, 0])}}
    tgt = {"a": {("dim", 5): _probe([0, 1, 0])}}
    same = across_models("s", "t", src, src, {(3, 3): identity_map(3)})
    assert same["cosine"].iloc[0] == pytest.approx(1.0)
    # A map that rotates the first axis onto the second makes the carried direction the target's.
    rot = np.array([[0.0, 1, 0], [1, 0, 0], [0, 0, 1]])
    ident = identity_map(3)
    fmap = LinearMap(**{**ident.__dict__, "A": rot, "B": rot.T})
    out = across_models("s", "t", src, tgt, {(3, 5): fmap})
    assert out["cosine"].iloc[0] == pytest.approx(1.0)
    assert list(out[["source_probe", "target_probe"]].iloc[0]) == ["a/dim", "a/dim"]
