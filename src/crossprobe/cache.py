"""The activation cache: one checksummed Zarr v3 store per (model, dataset), built resumably.

Layout of ``<model>/<dataset>.zarr``:

- ``activations``: float32 ``[row, layer, d_model]``, chunks ``(chunk_rows, 1, d_model)`` so one
  layer for all rows is a cheap read; zstd-compressed, then crc32c-checksummed per chunk.
- ``labels`` (int64 or float64), ``split`` (int8 codes; names in attribute ``split_names``),
  ``row_hash`` (strings).
- attributes: the caller's ``attrs`` plus ``layers``, ``n_rows``, ``d_model``, ``chunk_rows``,
  ``split_names`` and finally ``complete: true``.

The store is built at ``crossprobe.io.tmp_path_for(path)``. Each chunk of rows is computed,
written (by a background thread, while the next chunk is computed), and only then marked done
(one marker chunk per row chunk), so a killed build resumes where it stopped when called again
with the same arguments and ends bit-identical to an uninterrupted build. A temporary store
built with other arguments is discarded. The finished store is renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from jaxtyping import Float
from zarr.codecs import Crc32cCodec, ZstdCodec

from crossprobe.errors import CacheError, ConfigError
from crossprobe.io import jsonable, tmp_path_for

SPLIT_NAMES: tuple[str, ...] = ("train", "align", "test")
_BUILD_KEY = "_build"
_RESERVED = ("layers", "n_rows", "d_model", "chunk_rows", "split_names", "complete", _BUILD_KEY)


def _codecs() -> list[Any]:
    return [ZstdCodec(level=3), Crc32cCodec()]


def _array(group: zarr.Group, name: str) -> zarr.Array:
    """The array ``name`` of ``group`` (a ``ValueError`` if it is missing or a group)."""
    arr = group[name]
    if not isinstance(arr, zarr.Array):
        raise ValueError(f"{name} is a {type(arr).__name__}, not an array")
    return arr


def _plain(obj: Any) -> Any:
    """``obj`` as plain JSON types (what reading the attributes back gives)."""
    return json.loads(json.dumps(obj, default=jsonable))


# ---------------------------------------------------------------------------------------------
# Writing


def _prepare_meta(
    n_rows: int, labels: Any, split: Any, row_hash: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lab = np.asarray(labels)
    if lab.dtype.kind in "biu":
        lab = lab.astype(np.int64)
    elif lab.dtype.kind == "f":
        lab = lab.astype(np.float64)
    else:
        raise ConfigError(f"labels must be numbers, got dtype {lab.dtype}")
    spl = np.asarray(split)
    if spl.dtype.kind in "iu":
        if spl.size and (spl.min() < 0 or spl.max() >= len(SPLIT_NAMES)):
            raise ConfigError(f"split codes must be in 0..{len(SPLIT_NAMES) - 1} ({SPLIT_NAMES})")
        codes = spl.astype(np.int8)
    else:
        names = spl.astype(str)
        bad = sorted(set(names.tolist()) - set(SPLIT_NAMES))
        if bad:
            raise ConfigError(f"unknown split names {bad}: use {list(SPLIT_NAMES)}")
        lookup = {s: i for i, s in enumerate(SPLIT_NAMES)}
        codes = np.array([lookup[s] for s in names.tolist()], dtype=np.int8)
    hashes = np.asarray(row_hash).astype(str)
    for name, arr in (("labels", lab), ("split", codes), ("row_hash", hashes)):
        if arr.shape != (n_rows,):
            raise ValueError(f"{name} has shape {arr.shape}, expected ({n_rows},) for n_rows")
    return lab, codes, hashes


def _build_key(
    attrs: dict[str, Any],
    layers: list[int],
    n_rows: int,
    d_model: int,
    chunk_rows: int,
    meta: tuple[np.ndarray, ...],
) -> str:
    digest = hashlib.sha256()
    for arr in meta:
        digest.update(str(arr.dtype).encode())
        digest.update("\x00".join(map(str, arr.tolist())).encode())
        digest.update(b"\x01")
    return json.dumps(
        {
            "attrs": attrs,
            "layers": layers,
            "n_rows": n_rows,
            "d_model": d_model,
            "chunk_rows": chunk_rows,
            "meta_sha256": digest.hexdigest(),
        },
        sort_keys=True,
        default=jsonable,
    )


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


def _open_partial(tmp: Path, key: str) -> zarr.Group | None:
    """The temporary store if it was set up with the same build key, else ``None``."""
    if not tmp.exists():
        return None
    try:
        group = zarr.open_group(tmp, mode="r+")
        if group.attrs.get(_BUILD_KEY) != key:
            return None
        for name in ("activations", "done", "labels", "split", "row_hash"):
            group[name]  # noqa: B018 - raises if the array is missing
        return group
    except Exception:  # noqa: BLE001 - anything unreadable is started afresh
        return None


def _create(
    tmp: Path,
    key: str,
    *,
    n_rows: int,
    n_layers: int,
    d_model: int,
    chunk_rows: int,
    n_chunks: int,
    meta: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> zarr.Group:
    _remove(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    group = zarr.open_group(tmp, mode="w")
    group.create_array(
        "activations",
        shape=(n_rows, n_layers, d_model),
        chunks=(max(1, chunk_rows), 1, max(1, d_model)),
        dtype="float32",
        compressors=_codecs(),
        fill_value=0.0,
        config={"write_empty_chunks": True},
    )
    group.create_array(
        "done",
        shape=(n_chunks,),
        chunks=(1,),
        dtype="bool",
        fill_value=False,
    )
    lab, codes, hashes = meta
    for name, arr, dtype in (
        ("labels", lab, lab.dtype),
        ("split", codes, np.int8),
        ("row_hash", hashes, str),
    ):
        a = group.create_array(
            name,
            shape=(n_rows,),
            chunks=(max(1, n_rows),),
            dtype=dtype,
            compressors=_codecs(),
            config={"write_empty_chunks": True},
        )
        if n_rows:
            a[:] = arr
    # Set last: its presence means the store is set up and its chunks can be resumed.
    group.attrs[_BUILD_KEY] = key
    return group


def _chunk_done(done: zarr.Array, c: int) -> bool:
    try:
        return bool(done[c])
    except Exception:  # noqa: BLE001 - a marker cut short by a kill: redo that chunk
        return False


def write_store(
    path: str | os.PathLike[str],
    *,
    extract_rows: Callable[[slice], np.ndarray] | np.ndarray,
    n_rows: int,
    layers: list[int],
    d_model: int,
    labels: Any,
    split: Any,
    row_hash: Any,
    attrs: dict[str, Any],
    chunk_rows: int = 256,
) -> None:
    """Build the activation store at ``path``, resuming a killed build of the same store.

    ``extract_rows(slice)`` returns the float32 activations ``[rows, layer, d_model]`` of those
    rows; it is called once per chunk of ``chunk_rows`` rows still to do. An array may be given
    instead. ``extract_rows`` must be deterministic for a resumed store to equal a fresh one.
    """
    final = Path(path)
    tmp = tmp_path_for(final)
    layers = [int(x) for x in layers]
    if chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be at least 1, got {chunk_rows}")
    user_attrs = _user_attrs(attrs, layers=layers, n_rows=n_rows, d_model=d_model)
    meta = _prepare_meta(n_rows, labels, split, row_hash)
    get_rows = _row_source(extract_rows, (n_rows, len(layers), d_model))
    n_chunks = -(-n_rows // chunk_rows)
    key = _build_key(user_attrs, layers, n_rows, d_model, chunk_rows, meta)
    group = _open_partial(tmp, key)
    if group is None:
        group = _create(
            tmp,
            key,
            n_rows=n_rows,
            n_layers=len(layers),
            d_model=d_model,
            chunk_rows=chunk_rows,
            n_chunks=n_chunks,
            meta=meta,
        )
    _write_chunks(group, get_rows, n_rows, chunk_rows, (len(layers), d_model))
    shutil.rmtree(tmp / "done")
    # zarr writes each file through a `<name>.<uuid>.partial` beside it; a run killed mid-write
    # leaves that file behind, and it must not travel into the finished store.
    for stray in tmp.rglob("*.partial"):
        stray.unlink()
    group.attrs.put(
        {
            **user_attrs,
            "layers": layers,
            "n_rows": n_rows,
            "d_model": d_model,
            "chunk_rows": chunk_rows,
            "split_names": list(SPLIT_NAMES),
            "complete": True,
        }
    )
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove(final)
    os.replace(tmp, final)


def _user_attrs(attrs: dict[str, Any], **reserved: Any) -> dict[str, Any]:
    """The caller's attributes, plain; a reserved one (set by `write_store`) only if it agrees."""
    for k in sorted(k for k in _RESERVED if k in attrs):
        expected = reserved.get(k)
        if expected is None or _plain(attrs[k]) != expected:
            raise ConfigError(f"attribute {k!r} is set by write_store; leave it out of attrs")
    return _plain({k: v for k, v in attrs.items() if k not in _RESERVED})


def _row_source(
    extract_rows: Callable[[slice], np.ndarray] | np.ndarray, shape: tuple[int, int, int]
) -> Callable[[slice], np.ndarray]:
    """``extract_rows`` as a function of a row slice (an array is checked against ``shape``)."""
    if not isinstance(extract_rows, np.ndarray):
        return extract_rows
    full = extract_rows
    if full.shape != shape:
        raise ValueError(f"activations have shape {full.shape}, expected {shape}")
    return lambda s: full[s]


def _write_chunks(
    group: Any,
    get_rows: Callable[[slice], np.ndarray],
    n_rows: int,
    chunk_rows: int,
    row_shape: tuple[int, int],
) -> None:
    """Compute and write every chunk not yet marked done.

    Chunk c is compressed and written by one background thread while chunk c + 1 is computed;
    at most one write is in flight, and its error (if any) surfaces before the next one.
    """
    acts = _array(group, "activations")
    done = _array(group, "done")

    def write(rows: slice, c: int, block: np.ndarray) -> None:
        acts[rows] = block
        done[c] = True  # only once the chunk's data is on disk

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="zarr-writer") as writer:
        pending: Future[None] | None = None
        for c in range(-(-n_rows // chunk_rows)):
            if _chunk_done(done, c):
                continue
            rows = slice(c * chunk_rows, min(n_rows, (c + 1) * chunk_rows))
            block = np.asarray(get_rows(rows), dtype=np.float32)
            expected = (rows.stop - rows.start, *row_shape)
            if block.shape != expected:
                raise ValueError(
                    f"extract_rows({rows.start}:{rows.stop}) gave shape {block.shape}, "
                    f"expected {expected}"
                )
            if pending is not None:
                pending.result()
            pending = writer.submit(write, rows, c, block)
        if pending is not None:
            pending.result()


# ---------------------------------------------------------------------------------------------
# Reading


class LayerNotCached(CacheError, KeyError):
    """The store holds no activations for the requested layer."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


def _broken(path: Path, why: str) -> CacheError:
    return CacheError(f"activation store {path} is unusable ({why}): delete it and rerun")


@dataclass(frozen=True)
class ActivationStore:
    """A complete activation store opened for reading."""

    path: Path
    attrs: dict[str, Any]
    layers: list[int]
    n_rows: int
    d_model: int
    _group: zarr.Group = field(repr=False, compare=False)

    def _read(self, name: str, selection: Any) -> np.ndarray:
        try:
            return np.asarray(self._group[name][selection])
        except Exception as e:  # noqa: BLE001 - checksum, decompression or missing data
            raise _broken(self.path, f"reading {name!r} failed: {e}") from e

    def layer(
        self, layer: int, rows: np.ndarray | slice | None = None
    ) -> Float[np.ndarray, "row d_model"]:
        """Activations of block ``layer`` for ``rows`` (all rows by default), float32."""
        if layer not in self.layers:
            raise LayerNotCached(
                f"layer {layer} is not in activation store {self.path}; "
                f"available layers: {self.layers}"
            )
        j = self.layers.index(layer)
        if rows is None:
            rows = slice(None)
        if isinstance(rows, slice):
            return self._read("activations", (rows, j, slice(None))).astype(np.float32)
        idx = np.asarray(rows)
        if idx.dtype == bool:
            if idx.shape != (self.n_rows,):
                raise ValueError(f"boolean rows have shape {idx.shape}, expected ({self.n_rows},)")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64)
        if idx.size == 0:
            return np.empty((0, self.d_model), dtype=np.float32)
        if idx.min() < -self.n_rows or idx.max() >= self.n_rows:
            raise IndexError(f"row index out of range for a store of {self.n_rows} rows")
        idx = idx % self.n_rows
        lo, hi = int(idx.min()), int(idx.max()) + 1
        block = self._read("activations", (slice(lo, hi), j, slice(None)))
        return block[idx - lo].astype(np.float32)

    def labels(self) -> np.ndarray:
        return self._read("labels", slice(None))

    def split(self) -> np.ndarray:
        """Split name per row: ``train``, ``align`` or ``test``."""
        names = np.asarray(self.attrs.get("split_names", SPLIT_NAMES), dtype=str)
        return names[self._read("split", slice(None)).astype(np.int64)]

    def row_hash(self) -> np.ndarray:
        # Zarr gives numpy's variable-width StringDType; return a plain fixed-width str array.
        return np.array(self._read("row_hash", slice(None)).tolist(), dtype=str)


def open_store(path: str | os.PathLike[str]) -> ActivationStore:
    """Open a complete activation store; ``CacheError`` if it is missing or incomplete."""
    p = Path(path)
    if not p.exists():
        raise CacheError(f"activation store {p} does not exist: delete it and rerun the workflow")
    try:
        group = zarr.open_group(p, mode="r")
        attrs: dict[str, Any] = dict(group.attrs)
    except Exception as e:  # noqa: BLE001
        raise _broken(p, f"cannot open it: {e}") from e
    if attrs.get("complete") is not True:
        raise _broken(p, "not complete")
    try:
        layers = [int(x) for x in attrs["layers"]]
        n_rows = int(attrs["n_rows"])
        d_model = int(attrs["d_model"])
        acts = _array(group, "activations")
        for name in ("labels", "split", "row_hash"):
            shape = _array(group, name).shape
            if shape != (n_rows,):
                raise ValueError(f"{name} has shape {shape}, expected ({n_rows},)")
    except Exception as e:  # noqa: BLE001
        raise _broken(p, f"bad layout: {e}") from e
    if acts.shape != (n_rows, len(layers), d_model):
        raise _broken(
            p, f"activations have shape {acts.shape}, expected {(n_rows, len(layers), d_model)}"
        )
    if acts.nchunks_initialized != acts.nchunks:
        raise _broken(p, f"{acts.nchunks - acts.nchunks_initialized} activation chunks are missing")
    return ActivationStore(
        path=p, attrs=attrs, layers=layers, n_rows=n_rows, d_model=d_model, _group=group
    )
