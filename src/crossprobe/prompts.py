"""Prompt text for one model: the dataset's template as it is (``raw``), or wrapped in the
model's own chat template (``chat``), and the checks that keep the read position honest.

With ``chat`` a prompt is the chat template rendered over an optional system turn and the
user turn ``template.format(statement=…)``, with the generation prompt on: the read position is
the last token of that text and the answer is the next token, the model's first token as the
assistant. A template that writes the tokenizer's own BOS is rendered without it when the
tokenizer adds BOS itself, so the prompt starts with exactly one.

The checks (:func:`prompt_problems`) run when the workflow is planned, on a rendered sample:

- a chat prompt needs a model with a chat template;
- no token may follow the prompt: a tokenizer that appends EOS (or a template that ends in an
  end-of-turn token) moves the read position off the prompt's last token;
- a prompt that ends in whitespace (a chat template's ``"assistant\\n"``) must not be followed
  by an answer that starts with a space: the model would never write that token there.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from crossprobe.config import DatasetSpec

PromptFormat = Literal["raw", "chat"]

#: The statement a plan-time check renders (any statement shows the template's shape).
SAMPLE_STATEMENT = "Paris is in France."


def chat_messages(user: str, system_prompt: str | None) -> list[dict[str, str]]:
    """The conversation one prompt is: an optional system turn and the user turn."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*messages, {"role": "user", "content": user}]


def render_chat(
    chat_template: str,
    user: str,
    system_prompt: str | None,
    *,
    bos_token: str | None = None,
    eos_token: str | None = None,
    adds_bos: bool = False,
) -> str:
    """``user`` (and the system prompt) rendered by ``chat_template`` with the generation
    prompt on; a leading ``bos_token`` is dropped when the tokenizer adds one itself."""
    from transformers.utils.chat_template_utils import render_jinja_template

    # Annotated ``-> str`` in transformers, it returns (rendered texts, generation indices).
    result: Any = render_jinja_template(
        conversations=[chat_messages(user, system_prompt)],
        chat_template=chat_template,
        add_generation_prompt=True,
        bos_token=bos_token or "",
        eos_token=eos_token or "",
    )
    text: str = result[0][0]
    if adds_bos and bos_token and text.startswith(bos_token):
        text = text[len(bos_token) :]
    return text


def _adds_bos(tokenizer: Any) -> bool:
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] == bos


def format_prompts(
    tokenizer: Any,
    statements: Sequence[str],
    template: str,
    fmt: PromptFormat,
    system_prompt: str | None = None,
) -> list[str]:
    """The prompt text of each statement for a model with ``tokenizer``."""
    from crossprobe.datasets import format_prompt

    users = [format_prompt(template, s) for s in statements]
    if fmt == "raw":
        return users
    if fmt != "chat":
        raise ValueError(f"unknown prompt format {fmt!r}: use 'raw' or 'chat'")
    chat_template = getattr(tokenizer, "chat_template", None)
    if not chat_template:
        raise ValueError("the tokenizer has no chat template: use prompt_format raw")
    adds_bos = _adds_bos(tokenizer)
    return [
        render_chat(
            chat_template,
            u,
            system_prompt,
            bos_token=tokenizer.bos_token,
            eos_token=tokenizer.eos_token,
            adds_bos=adds_bos,
        )
        for u in users
    ]


_END_MARKS = ("end", "eot", "eos", "</")


def end_token_ids(tokenizer: Any) -> list[int]:
    """EOS and the special tokens that close a turn (``<|im_end|>``, ``<end_of_turn>``,
    ``<|eot_id|>``, ``</s>``...): a prompt must not end with one."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    for text in tokenizer.all_special_tokens:
        if any(mark in text.lower() for mark in _END_MARKS):
            i = tokenizer.convert_tokens_to_ids(text)
            if isinstance(i, int):
                ids.add(i)
    return sorted(ids)


def prompt_problems(
    prompt: str,
    ids: Sequence[int],
    prompt_ids: Sequence[int],
    answers: tuple[str, str],
    end_ids: Sequence[int],
) -> list[str]:
    """What is wrong with reading the next token after ``prompt``, given its encoding ``ids``
    (with the tokenizer's special tokens) and ``prompt_ids`` (without); ``end_ids``: the EOS
    and end-of-turn ids."""
    out = []
    n = len(prompt_ids)
    if n and list(ids[-n:]) != list(prompt_ids):
        out.append(
            f"the tokenizer appends token(s) {list(ids[len(ids) - 1 :])} after the prompt, so "
            "the last position is not the prompt's last token; use a tokenizer that adds no "
            "end token"
        )
    elif n and prompt_ids[-1] in set(end_ids):
        out.append(
            f"the prompt ends in an end-of-sequence or end-of-turn token ({prompt_ids[-1]}), "
            "so the model is asked for the token after a finished turn; use a template with a "
            "generation prompt, or prompt_format raw"
        )
    out += trailing_space_problems(prompt, answers)
    return out


def trailing_space_problems(prompt: str, answers: tuple[str, str]) -> list[str]:
    """A prompt that ends in whitespace cannot be answered by a token that starts with a space."""
    spaced = [a for a in answers if a[:1].isspace()]
    if not (prompt[-1:].isspace() and spaced):
        return []
    return [
        f"the prompt ends in whitespace ({prompt[-1:]!r}) and answer(s) {spaced} start with a "
        "space; give the answers without it (e.g. ['True', 'False'])"
    ]


def sample_prompt(ds: DatasetSpec) -> str:
    from crossprobe.datasets import format_prompt

    return format_prompt(ds.template, SAMPLE_STATEMENT)


def tokenizer_prompt_check(tok: Any) -> Any:
    """Prompt checks with a loaded transformers tokenizer (exact: it renders and encodes)."""

    ends = end_token_ids(tok)

    def check(ds: DatasetSpec, fmt: PromptFormat, answers: tuple[str, str]) -> list[str]:

        text = format_prompts(tok, [SAMPLE_STATEMENT], ds.template, fmt, ds.system_prompt)[0]
        ids = tok(text)["input_ids"]
        bare = tok(text, add_special_tokens=False)["input_ids"]
        return prompt_problems(text, ids, bare, answers, ends if fmt == "chat" else [])

    return check


def gguf_prompt_check(header: Any) -> Any:
    """Prompt checks from a GGUF header: its chat template, and its BOS/EOS flags."""

    meta, tokens = header.metadata, header.tokens

    def token(key: str) -> str | None:
        i = meta.get(key)
        return tokens[int(i)] if tokens and isinstance(i, int) and 0 <= i < len(tokens) else None

    bos, eos = token("tokenizer.ggml.bos_token_id"), token("tokenizer.ggml.eos_token_id")
    template = meta.get("tokenizer.chat_template")

    def check(ds: DatasetSpec, fmt: str, answers: tuple[str, str]) -> list[str]:
        out = []
        if meta.get("tokenizer.ggml.add_eos_token"):
            out.append(
                "the GGUF's tokenizer appends EOS after every prompt "
                "(tokenizer.ggml.add_eos_token), so the last position is not the prompt's last "
                "token; use a checkpoint whose tokenizer adds no end token"
            )
        text = sample_prompt(ds)
        if fmt == "chat" and template:
            text = render_chat(
                template,
                text,
                ds.system_prompt,
                bos_token=bos,
                eos_token=eos,
                adds_bos=bool(meta.get("tokenizer.ggml.add_bos_token")),
            )
            if eos and text.endswith(eos):
                out.append(
                    "the chat template ends the prompt with the end-of-sequence token, so the "
                    "model is asked for the token after a finished turn; use a template with a "
                    "generation prompt, or prompt_format raw"
                )
        return out + trailing_space_problems(text, answers)

    return check


def raw_prompt_check(path: Path) -> Any:
    """Raw-prompt checks from a tokenizer.json alone (no transformers import)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))

    def check(ds: DatasetSpec, fmt: str, answers: tuple[str, str]) -> list[str]:
        text = sample_prompt(ds)
        ids = tok.encode(text, add_special_tokens=True).ids
        bare = tok.encode(text, add_special_tokens=False).ids
        return prompt_problems(text, ids, bare, answers, [])

    return check
