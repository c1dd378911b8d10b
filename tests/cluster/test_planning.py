"""Snakemake's signature lookups, remembered per function: the same answers as without."""

from __future__ import annotations

import importlib
import inspect

import pytest

from crossprobe.cluster import planning


@pytest.fixture
def restored():
    """Snakemake's own lookup back in place after each test."""
    modules = [importlib.import_module(m) for m in planning._USERS]
    saved = [m.get_function_params for m in modules]
    yield modules
    for m, f in zip(modules, saved, strict=True):
        m.get_function_params = f


def test_cached_lookups_give_snakemakes_answers(restored, monkeypatch):
    common = restored[0]
    original = getattr(common.get_function_params, "__wrapped__", common.get_function_params)
    monkeypatch.delenv("CROSSPROBE_SIGNATURE_CACHE", raising=False)
    for m in restored:
        m.get_function_params = original
    assert planning.cache_signatures()
    cached = common.get_function_params
    assert all(m.get_function_params is cached for m in restored)

    class Resource:
        def evaluate(self, wildcards, attempt=1):
            return attempt

    def with_kwargs(wildcards, **kw):
        return kw

    for func in (lambda wildcards: 0, with_kwargs, Resource().evaluate, Resource().evaluate):
        assert dict(cached(func)) == dict(inspect.signature(func).parameters)
    # Two instances' bound methods share one entry; the aux-parameter filter is unchanged.
    kw = {"attempt": 2, "input": [], "threads": 1}
    assert common.get_input_function_aux_params(Resource().evaluate, kw) == {"attempt": 2}
    assert common.get_input_function_aux_params(with_kwargs, kw) == kw
    assert planning.cache_signatures()  # a second call wraps nothing twice
    assert common.get_function_params is cached


def test_the_cache_can_be_switched_off(restored, monkeypatch):
    original = getattr(restored[0].get_function_params, "__wrapped__", None)
    if original is not None:
        for m in restored:
            m.get_function_params = original
    monkeypatch.setenv("CROSSPROBE_SIGNATURE_CACHE", "0")
    assert not planning.cache_signatures()
    assert not hasattr(restored[0].get_function_params, "__wrapped__")
