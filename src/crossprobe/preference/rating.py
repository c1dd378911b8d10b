"""Self-rated targets: the rating a model gives a statement, read from its own logits.

A dataset with ``rating`` gains the regression target ``self_rating`` for every model: each row's
statement is put into a rating prompt (by default ``"{statement} On a scale of 1 to 9, how true
is this? Answer:"``), and the label is the **expected rating** under the model's next-token
distribution restricted to the scale's digit tokens (``" 1"`` … ``" 9"`` for raw prompts,
``"1"`` … ``"9"`` after a chat template's generation prompt):

    rating = Σ_d p(d) · v_d / Σ_d p(d)

with ``p`` the model's softmax over its whole vocabulary at the prompt's last token and ``v_d``
the digit's value. The digits' share of the probability, ``Σ_d p(d)`` (the *digit mass*), is
recorded beside it: a model that puts little mass on digits is not answering the question, and
its rating is a readout of how it ranks the digits, nothing more.

The rating is computed by a rule from the model's own logits, so a study runs end to end with no
human labels. It measures what the model says about the statement under this prompt, not what
it believes: the number depends on the prompt's wording, the scale, and the digits' prior
(models prefer some digits whatever the statement). See docs/definitions.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from jaxtyping import Float

from crossprobe.errors import ConfigError

#: The target name a dataset's self-rating goes by in the regression tables and probe files.
TARGET = "self_rating"
DEFAULT_TEMPLATE = "{statement} On a scale of 1 to 9, how true is this? Answer:"


@dataclass(frozen=True)
class RatingSpec:
    """How a dataset's statements are rated by each model (``datasets.<name>.rating``)."""

    template: str = DEFAULT_TEMPLATE
    """The rating prompt, with ``{statement}``."""
    low: int = 1
    """The lowest digit of the scale."""
    high: int = 9
    """The highest digit of the scale."""

    def __post_init__(self) -> None:
        if "{statement}" not in self.template:
            raise ConfigError(
                f"rating template {self.template!r} has no `{{statement}}` placeholder; add it"
            )
        if not 0 <= self.low < self.high <= 9:
            raise ConfigError(
                f"rating scale {self.low}..{self.high}: use single digits with low < high "
                "(0 to 9), so that each rating is one token"
            )

    @property
    def values(self) -> tuple[int, ...]:
        return tuple(range(self.low, self.high + 1))

    def tokens(self, prompt_format: Literal["raw", "chat"]) -> tuple[str, ...]:
        """The digit strings read after the prompt: space-prefixed after raw text, bare after a
        chat template's generation prompt (which ends the assistant's header)."""
        prefix = " " if prompt_format == "raw" else ""
        return tuple(f"{prefix}{v}" for v in self.values)

    def for_model(
        self, prompt_format: Literal["raw", "chat"], single_token: Callable[[str], bool]
    ) -> tuple[str, tuple[str, ...]]:
        """The rating template and digit strings for a tokenizer (``single_token`` says whether
        a string is one token of it).

        After raw text a digit is written with its space: ``" 7"`` where that is one token
        (Llama 3, GPT-2); where the tokenizer splits it into a space and the digit (SmolLM2,
        Gemma 3 split every number into digits), the prompt ends with that space and the bare
        digit is read, as the model would see the text. A chat prompt is read at bare digits.
        ``ConfigError`` if the digits are not single tokens either way.
        """
        bare = tuple(str(v) for v in self.values)
        if prompt_format == "raw" and all(single_token(t) for t in self.tokens("raw")):
            return self.template, self.tokens("raw")
        if all(single_token(t) for t in bare):
            spaced = prompt_format == "raw" and not self.template[-1:].isspace()
            return self.template + " " * spaced, bare
        missing = [t for t in bare if not single_token(t)]
        raise ConfigError(
            f"the rating digits {missing} are not single tokens of this tokenizer (nor with a "
            "leading space); drop the dataset's `rating`, or use a model whose tokenizer has "
            "digit tokens"
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> RatingSpec | None:
        if d is None:
            return None
        return cls(**d)


def expected_rating_readout(values: Sequence[float]) -> Any:
    """A readout for :mod:`crossprobe.ablate`: the expected value under the softmax of the
    digit logits ``[rows, k]`` (the whole-vocabulary softmax renormalised over the digits)."""
    v = torch.tensor([float(x) for x in values], dtype=torch.float32)

    def read(logits: torch.Tensor) -> torch.Tensor:
        if logits.shape[-1] != v.numel():
            raise ValueError(f"rating logits {tuple(logits.shape)} do not fit {v.numel()} digits")
        p = torch.softmax(logits.to(torch.float32), dim=-1)
        return p @ v.to(p.device)

    return read


class Ratings(NamedTuple):
    expected: Float[np.ndarray, " row"]
    """The expected rating per prompt."""
    digit_mass: Float[np.ndarray, " row"]
    """The probability the model puts on the scale's digits, of the whole vocabulary."""


def rate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    digit_ids: Sequence[int],
    values: Sequence[float],
    *,
    batch_size: int = 32,
) -> Ratings:
    """Expected rating and digit mass per prompt, from one pass: the whole vocabulary's logits
    at each prompt's last token (float32 on CPU; a bfloat16 model's head output on a GPU)."""
    from crossprobe.ablate import last_token_logits

    ids = list(int(i) for i in digit_ids)
    if len(ids) != len(values) or len(set(ids)) != len(ids):
        raise ValueError(f"{len(ids)} distinct digit tokens needed for {len(values)} values")
    v = torch.tensor([float(x) for x in values], dtype=torch.float64)
    expected, mass = [], []
    for logits in last_token_logits(model, tokenizer, prompts, batch_size=batch_size):
        logp = torch.log_softmax(logits.to(torch.float64), dim=-1)[:, ids]
        mass.append(logp.exp().sum(dim=-1).cpu().numpy())
        expected.append((torch.softmax(logp, dim=-1) @ v.to(logp.device)).cpu().numpy())
    if not expected:
        return Ratings(np.empty(0), np.empty(0))
    return Ratings(np.concatenate(expected), np.concatenate(mass))
