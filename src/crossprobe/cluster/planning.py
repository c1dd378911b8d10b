"""Planning a large DAG faster: Snakemake's signature inspections, done once per function.

When Snakemake plans a job it inspects the signature of every input function, params function
and resource it evaluates (``snakemake.common.get_function_params``: ``inspect.signature`` on
each call, every resource's own ``Resource.evaluate`` included), several times per job. At 24
models x 17 datasets (39,642 jobs) that is about 737,000 inspections of a few hundred distinct
functions. :func:`cache_signatures` makes the lookup remember each function's parameters: the
same answer, computed once. A bound method is keyed by its function, whose parameters (less
``self``) are the same for every instance. The figures are in BENCHMARKS.md ("Planning the
DAG").
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

#: The modules that call ``get_function_params`` by a name of their own.
_USERS = ("snakemake.common", "snakemake.rules", "snakemake.jobs")


def _cached(original: Callable[[Callable[..., Any]], Any]) -> Callable[[Callable[..., Any]], Any]:
    cache: dict[Any, Any] = {}

    def get_function_params(func: Callable[..., Any]) -> Mapping[str, inspect.Parameter] | Any:
        key = (getattr(func, "__func__", func), inspect.ismethod(func))
        try:
            return cache[key]
        except KeyError:
            params = cache[key] = original(func)
            return params
        except TypeError:  # an unhashable callable: not remembered
            return original(func)

    get_function_params.__wrapped__ = original  # type: ignore[attr-defined]
    return get_function_params


def cache_signatures() -> bool:
    """Make Snakemake inspect each function's signature once; False (and nothing changed) where
    this Snakemake has no ``get_function_params`` to cache, or where the environment sets
    ``CROSSPROBE_SIGNATURE_CACHE=0`` (``benchmarks/bench_dag.py`` plans both ways)."""
    import importlib
    import os

    if os.environ.get("CROSSPROBE_SIGNATURE_CACHE") == "0":
        return False
    modules = [importlib.import_module(name) for name in _USERS]
    original = getattr(modules[0], "get_function_params", None)
    if original is None or hasattr(original, "__wrapped__"):
        return original is not None
    cached = _cached(original)
    for module in modules:
        if getattr(module, "get_function_params", None) is original:
            module.get_function_params = cached  # type: ignore[attr-defined]
    return True
