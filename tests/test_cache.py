from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from crossprobe.cache import LayerNotCached, open_store, write_store
from crossprobe.errors import CacheError, ConfigError
from crossprobe.io import tmp_path_for

N, LAYERS, D, CHUNK = 50, [3, 7, 11], 16, 8
ATTRS = {"model": "org/tiny", "revision": "abc", "position": "last", "dtype": "float32"}


def rows_for(s: slice) -> np.ndarray:
    """Deterministic activations for rows ``s``."""
    r = np.arange(s.start, s.stop)[:, None, None]
    layer = np.arange(len(LAYERS))[None, :, None]
    d = np.arange(D)[None, None, :]
    return (np.sin(r * 1.7 + layer * 0.3 + d * 0.11) * (1 + r)).astype(np.float32)


FULL = rows_for(slice(0, N))
LABELS = np.arange(N) % 2
SPLIT = np.array(["train", "align", "test", "train", "test"] * (N // 5))
HASHES = np.array([f"{i:064x}" for i in range(N)])


def _write(path, extract=FULL, attrs=ATTRS, **kw):
    write_store(
        path,
        extract_rows=extract,
        n_rows=N,
        layers=LAYERS,
        d_model=D,
        labels=LABELS,
        split=SPLIT,
        row_hash=HASHES,
        attrs=attrs,
        chunk_rows=CHUNK,
        **kw,
    )


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_round_trip(tmp_path):
    path = tmp_path / "m" / "d.zarr"
    _write(path)
    assert not tmp_path_for(path).exists()
    st = open_store(path)
    assert st.layers == LAYERS and st.n_rows == N and st.d_model == D
    for k, v in ATTRS.items():
        assert st.attrs[k] == v
    assert st.attrs["complete"] is True and st.attrs["chunk_rows"] == CHUNK
    for j, layer in enumerate(LAYERS):
        got = st.layer(layer)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, FULL[:, j])
    np.testing.assert_array_equal(st.labels(), LABELS)
    np.testing.assert_array_equal(st.split(), SPLIT)
    np.testing.assert_array_equal(st.row_hash(), HASHES)
    assert st.split().dtype.kind == "U"


def test_layer_row_selection(tmp_path):
    path = tmp_path / "d.zarr"
    _write(path)
    st = open_store(path)
    idx = np.array([40, 2, 17, 2])
    np.testing.assert_array_equal(st.layer(7, idx), FULL[idx, 1])
    np.testing.assert_array_equal(st.layer(11, slice(5, 20)), FULL[5:20, 2])
    mask = SPLIT == "test"
    np.testing.assert_array_equal(st.layer(3, mask), FULL[mask, 0])
    with pytest.raises(KeyError) as e:
        st.layer(4)
    assert isinstance(e.value, CacheError) and "[3, 7, 11]" in str(e.value)
    assert isinstance(e.value, LayerNotCached)


def test_chunk_layout_and_codecs(tmp_path):
    import zarr

    path = tmp_path / "d.zarr"
    _write(path)
    a = zarr.open_group(path, mode="r")["activations"]
    assert a.chunks == (CHUNK, 1, D)
    names = [type(c).__name__ for c in a.metadata.codecs]
    assert "Crc32cCodec" in names and "ZstdCodec" in names


def test_callable_and_shape_check(tmp_path):
    calls = []

    def extract(s):
        calls.append((s.start, s.stop))
        return rows_for(s)

    path = tmp_path / "d.zarr"
    _write(path, extract=extract)
    assert calls == [(i, min(N, i + CHUNK)) for i in range(0, N, CHUNK)]
    np.testing.assert_array_equal(open_store(path).layer(7), FULL[:, 1])
    with pytest.raises(ValueError, match="shape"):
        _write(tmp_path / "e.zarr", extract=lambda s: rows_for(s)[:, :2])


def test_bad_split_and_reserved_attrs(tmp_path):
    with pytest.raises(ConfigError, match="split"):
        write_store(
            tmp_path / "d.zarr",
            extract_rows=FULL,
            n_rows=N,
            layers=LAYERS,
            d_model=D,
            labels=LABELS,
            split=np.array(["dev"] * N),
            row_hash=HASHES,
            attrs=ATTRS,
        )
    with pytest.raises(ConfigError, match="complete"):
        _write(tmp_path / "d.zarr", attrs={**ATTRS, "complete": True})


_KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import test_cache as t

    def extract(s):
        if s.start >= {kill_at} * t.CHUNK:
            os.kill(os.getpid(), signal.SIGKILL)
        return t.rows_for(s)

    t._write({path!r}, extract=extract)
    """
)


def _killed_build(path: Path, kill_at: int) -> None:
    code = _KILLED_RUN.format(tests=str(Path(__file__).parent), kill_at=kill_at, path=str(path))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr.decode()
    assert tmp_path_for(path).exists() and not path.exists()


def test_resume_after_kill_is_bit_identical(tmp_path):
    ref = tmp_path / "ref.zarr"
    _write(ref, extract=rows_for)

    path = tmp_path / "resumed.zarr"
    _killed_build(path, kill_at=3)
    # As a kill in the middle of one of zarr's writes leaves it (and as a loaded machine makes
    # likely): the file zarr was writing through.
    stray = next(tmp_path_for(path).rglob("zarr.json")).with_suffix(".0123abcd.partial")
    stray.write_bytes(b"cut short")
    calls = []

    def extract(s):
        calls.append(s.start)
        return rows_for(s)

    _write(path, extract=extract)
    # Chunks 0-1 were not recomputed; chunk 2 may have been in flight to the writer thread when
    # the process died while computing chunk 3, and then it is not marked done.
    assert calls[0] in (2 * CHUNK, 3 * CHUNK), calls
    assert calls == list(range(calls[0], N, CHUNK))
    assert _files(path) == _files(ref)


def test_partial_with_other_attrs_is_discarded(tmp_path):
    path = tmp_path / "d.zarr"
    _killed_build(path, kill_at=2)
    calls = []

    def extract(s):
        calls.append(s.start)
        return rows_for(s)

    other = {**ATTRS, "revision": "def"}
    _write(path, extract=extract, attrs=other)
    assert calls == list(range(0, N, CHUNK))
    assert open_store(path).attrs["revision"] == "def"


def test_corrupted_chunk_is_detected(tmp_path):
    path = tmp_path / "d.zarr"
    _write(path)
    chunk = path / "activations" / "c" / "1" / "1" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    st = open_store(path)
    np.testing.assert_array_equal(st.layer(3), FULL[:, 0])  # other layers still read
    with pytest.raises(CacheError, match="delete it and rerun"):
        st.layer(7)


def test_truncated_or_missing_chunk_is_detected(tmp_path):
    path = tmp_path / "d.zarr"
    _write(path)
    chunk = path / "activations" / "c" / "0" / "2" / "0"
    chunk.write_bytes(chunk.read_bytes()[:-7])
    with pytest.raises(CacheError, match="delete it and rerun"):
        open_store(path).layer(11)
    chunk.unlink()
    with pytest.raises(CacheError, match="missing"):
        open_store(path)


def test_incomplete_or_missing_store_refused(tmp_path):
    path = tmp_path / "d.zarr"
    with pytest.raises(CacheError, match=r"d\.zarr.*delete it and rerun"):
        open_store(path)
    _killed_build(path, kill_at=2)
    with pytest.raises(CacheError, match="not complete"):
        open_store(tmp_path_for(path))


def test_rewrite_replaces_existing(tmp_path):
    path = tmp_path / "d.zarr"
    _write(path)
    _write(path, extract=FULL * 2, attrs={**ATTRS, "revision": "new"})
    st = open_store(path)
    assert st.attrs["revision"] == "new"
    np.testing.assert_array_equal(st.layer(3), 2 * FULL[:, 0])
