"""What every job shares: its log, its timings and threads, the specs and models it loads,
and the tables it writes atomically. Job modules of the studies import from here, never from
each other."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from crossprobe.config import DatasetSpec, ModelSpec
from crossprobe.io import atomic_path

log = logging.getLogger("crossprobe")


@contextlib.contextmanager
def logging_to(path: str | None) -> Iterator[None]:
    """Send logging, stdout and stderr (progress bars) of one job to its log file."""
    if not path:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with (
        open(path, "w", buffering=1) as f,
        contextlib.redirect_stdout(f),
        contextlib.redirect_stderr(f),
    ):
        handler = logging.StreamHandler(f)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            yield
        finally:
            root.removeHandler(handler)


def process_age() -> float:
    """Seconds since this process started (interpreter start-up plus imports so far)."""
    try:
        import psutil

        return max(0.0, time.time() - psutil.Process().create_time())
    except Exception:  # psutil missing or restricted: the record just lacks start-up time
        return float("nan")


THREADS = [1]


TIMINGS: dict[str, float] = {"imports": 0.0, "load": 0.0}


@contextlib.contextmanager
def timed(key: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        TIMINGS[key] += time.perf_counter() - t0


def torch_threads() -> None:
    """Give torch the job's thread count (imported only by jobs that run a model)."""
    import torch

    torch.set_num_threads(THREADS[0])


def model_spec(smk: Any) -> ModelSpec:
    d = dict(smk.params.model)
    d["layers"] = tuple(d["layers"])
    return ModelSpec(**d)


def dataset_spec(smk: Any) -> DatasetSpec:
    return dataset_from_params(smk.params.dataset)


def dataset_from_params(params: dict[str, Any]) -> DatasetSpec:
    return DatasetSpec(**{**params, "answers": tuple(params["answers"])})


def model_prompts(df: pd.DataFrame, ds: DatasetSpec, spec: ModelSpec, tok: Any) -> list[str]:
    """The prompt text of each row for model ``spec`` (its format on ``ds``), after the checks
    the plan ran (again here: a hub model may not have been in the cache then)."""
    from crossprobe.errors import ConfigError
    from crossprobe.prompts import format_prompts, tokenizer_prompt_check

    fmt = spec.format_for(ds)
    if fmt == "chat" and not getattr(tok, "chat_template", None):
        raise ConfigError(
            f"models.{spec.name}: prompt_format chat needs a chat template, and its tokenizer has "
            f"none; use prompt_format raw (models.{spec.name}.prompt_format: raw)"
        )
    problems = tokenizer_prompt_check(tok)(ds, fmt, spec.answers_for(ds))
    if problems:
        raise ConfigError(f"model {spec.name}, dataset {ds.name} ({fmt}): " + "; ".join(problems))
    return format_prompts(tok, df["statement"].tolist(), ds.template, fmt, ds.system_prompt)


#: Whether this process keeps the last model it loaded for the next job (the allocation's job
#: server of a SLURM group sets it: crossprobe.cluster.server).
KEEP_MODEL = [False]
_KEPT: dict[str, Any] = {}


def _model_key(spec: ModelSpec, dmap: Any) -> str:
    """What decides the loaded model: its spec, its placement and its folder's config file."""
    config = Path(str(spec.source)) / "config.json"
    stamp = config.stat().st_mtime_ns if config.is_file() else None
    return repr((spec, dmap, stamp))


def drop_kept_model() -> None:
    """Forget the kept model (after a failed job, or when another model is needed)."""
    if _KEPT:
        _KEPT.clear()
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def check_kept_model() -> None:
    """Drop the kept model if a job left a hook on it (the next job must see the clean model)."""
    model = _KEPT.get("model")
    if model is not None and any(m._forward_hooks or m._forward_pre_hooks for m in model.modules()):
        log.warning("a job left a hook on %s; it is loaded afresh for the next job", _KEPT["name"])
        drop_kept_model()


def load_model(spec: ModelSpec) -> tuple[Any, Any]:
    """The model and tokenizer of ``spec`` (the kept ones where this process keeps models and
    the last job loaded the same model: the log says "reusing" instead of "loading")."""
    with timed("imports"):
        import torch

        from crossprobe.cluster.resources import device_map
        from crossprobe.models import load_model, load_tokenizer

        torch_threads()
    # A job that holds several GPUs (a model larger than one) spreads the model over them.
    dmap = device_map(torch.cuda.device_count() if torch.cuda.is_available() else 0)
    key = _model_key(spec, dmap) if KEEP_MODEL[0] else None
    if key is not None and _KEPT.get("key") == key:
        log.info("reusing %s, loaded by an earlier job of this allocation", spec.name)
        return _KEPT["model"], _KEPT["tokenizer"]
    drop_kept_model()
    log.info("loading %s from %s%s", spec.name, spec.source, f" (device_map={dmap})" * bool(dmap))
    with timed("load"):
        tok = load_tokenizer(
            spec.source, revision=spec.revision, trust_remote_code=spec.trust_remote_code
        )
        model = load_model(spec.source, device_map=dmap, **spec.load_kwargs())
    if key is not None:
        _KEPT.update(key=key, name=spec.name, model=model, tokenizer=tok)
    return model, tok


def batch_size_for(
    model: Any, tok: Any, spec: ModelSpec, prompts: list[str], *, ablation: bool
) -> int:
    """The model's ``batch_size``, or for ``auto`` one sized from free GPU memory."""
    from crossprobe.models import resolve_batch_size

    if spec.batch_size != "auto":
        return int(spec.batch_size)
    from crossprobe.ablate import ROWS_PER_BATCH_FACTOR

    seq_len = max((len(ids) for ids in tok(prompts)["input_ids"]), default=1)
    bs = resolve_batch_size(
        model, "auto", seq_len, rows_per_prompt=ROWS_PER_BATCH_FACTOR if ablation else 1
    )
    log.info("batch size %d (auto, prompts up to %d tokens)", bs, seq_len)
    return bs


def layers_by_position(spec: ModelSpec, n_layers: int) -> list[int]:
    """Each configured layer resolved to a block index, keeping positions (duplicates kept)."""
    from crossprobe.models import resolve_layers

    return [resolve_layers([x], n_layers, model=spec.name)[0] for x in spec.layers]


def write_csv(path: str, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")


def concat_csv(paths: Any) -> pd.DataFrame:
    return pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)


def concat_tables(smk: Any) -> None:
    """Concatenate per-key CSV tables into one."""
    write_csv(smk.output[0], concat_csv(smk.input))


def store_pairs(stores: str | list[str]) -> dict[str, Any]:
    """Activation stores by dataset, from one path or several."""
    from crossprobe.cache import open_store

    opened = [open_store(p) for p in ([stores] if isinstance(stores, str) else stores)]
    return {st.attrs["dataset"]: st for st in opened}


def layer_pairs(
    source_attrs: dict[str, Any], target_attrs: dict[str, Any]
) -> list[tuple[int, int, int]]:
    """(position, source layer, target layer), paired by position in the layer list."""
    seen, out = set(), []
    pairs = zip(source_attrs["layers_by_position"], target_attrs["layers_by_position"], strict=True)
    for pos, (ls, lt) in enumerate(pairs):
        if (ls, lt) not in seen:
            seen.add((ls, lt))
            out.append((pos, int(ls), int(lt)))
    return out


def write_parquet(path: str, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def model_attrs(spec: ModelSpec, model: Any, n_layers: int, by_pos: list[int]) -> dict[str, Any]:
    """What an activation store records of the model that wrote it."""
    return {
        "model": spec.name,
        "model_source": spec.source,
        "revision": spec.revision,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "n_layers": n_layers,
        "layer_spec": list(spec.layers),
        "layers_by_position": by_pos,
    }


def effect_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows every ablation uses: `test` rows with label 1, in row order."""
    return df[(df["split"] == "test") & (df["label"] > 0.5)]
