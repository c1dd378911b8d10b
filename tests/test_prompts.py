"""Prompt formats (raw text, or the model's own chat template) and the plan-time checks that keep
the read position on the prompt's last token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from tokenizers.processors import TemplateProcessing
from transformers import PreTrainedTokenizerFast

from crossprobe.config import validate_config
from crossprobe.datasets import format_prompt
from crossprobe.errors import ConfigError
from crossprobe.prompts import end_token_ids, format_prompts, prompt_problems

# ChatML-like, ending in a newline after the generation prompt (as SmolLM2's does).
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Gemma-like: writes the BOS itself, ends without whitespace.
WITH_BOS = (
    "{{ bos_token }}{% for m in messages %}<turn>{{ m['role'] }}: {{ m['content'] }}</turn>"
    "{% endfor %}{% if add_generation_prompt %}<turn>model:{% endif %}"
)
# No generation prompt: the prompt ends with the end-of-turn token.
FINISHED = "{% for m in messages %}{{ m['content'] }}<|im_end|>{% endfor %}"

WORDS = ["True", "False", "Yes", "No", "Paris", "is", "in", "France", ".", "Answer", ":", "?"]
SPECIAL = ["<unk>", "<pad>", "<bos>", "<eos>", "<|im_start|>", "<|im_end|>", "<turn>", "</turn>"]


def tokenizer(*, bos: bool = False, eos: bool = False, chat: str | None = None):
    vocab = {w: i for i, w in enumerate([*SPECIAL, *WORDS])}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = Whitespace()
    single = " ".join([*(["<bos>"] if bos else []), "$A", *(["<eos>"] if eos else [])])
    tok.post_processor = TemplateProcessing(
        single=single, special_tokens=[("<bos>", vocab["<bos>"]), ("<eos>", vocab["<eos>"])]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        additional_special_tokens=SPECIAL[4:],
    )
    if chat is not None:
        fast.chat_template = chat
    return fast


def test_raw_is_the_template_text():
    tok = tokenizer(chat=CHATML)
    got = format_prompts(tok, ["Paris is in France."], "{statement} Answer:", "raw")
    assert got == [format_prompt("{statement} Answer:", "Paris is in France.")]


def test_chat_wraps_the_statement_as_the_user_turn_with_the_generation_prompt():
    tok = tokenizer(chat=CHATML)
    got = format_prompts(tok, ["Paris is in France."], "{statement} Answer:", "chat", "Be brief.")
    assert got == [
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nParis is in France. Answer:<|im_end|>\n"
        "<|im_start|>assistant\n"
    ]
    # Without a system prompt there is no system turn.
    bare = format_prompts(tok, ["Paris is in France."], "{statement}", "chat")[0]
    assert bare.startswith("<|im_start|>user\n")


def test_a_template_that_writes_bos_is_not_given_a_second_one():
    statement = ["Paris is in France."]
    adds = tokenizer(bos=True, chat=WITH_BOS)
    text = format_prompts(adds, statement, "{statement}", "chat")[0]
    ids = adds(text)["input_ids"]
    assert ids.count(adds.bos_token_id) == 1 and ids[0] == adds.bos_token_id
    keeps = tokenizer(bos=False, chat=WITH_BOS)
    text = format_prompts(keeps, statement, "{statement}", "chat")[0]
    assert text.startswith("<bos>") and keeps(text)["input_ids"].count(keeps.bos_token_id) == 1


def test_chat_without_a_template_is_an_error():
    with pytest.raises(ValueError, match="no chat template"):
        format_prompts(tokenizer(), ["x"], "{statement}", "chat")


def _problems(tok, fmt, answers=(" True", " False"), template="{statement} Answer:"):
    text = format_prompts(tok, ["Paris is in France."], template, fmt)[0]
    ends = end_token_ids(tok)
    return prompt_problems(
        text,
        tok(text)["input_ids"],
        tok(text, add_special_tokens=False)["input_ids"],
        answers,
        ends if fmt == "chat" else [],
    )


def test_checks_known_answers():
    assert _problems(tokenizer(), "raw") == []
    assert _problems(tokenizer(bos=True), "raw") == []  # a BOS before the prompt moves nothing
    (eos,) = _problems(tokenizer(eos=True), "raw")
    assert "appends" in eos
    (space,) = _problems(tokenizer(chat=CHATML), "chat")
    assert "whitespace" in space and "' True'" in space
    assert _problems(tokenizer(chat=CHATML), "chat", answers=("True", "False")) == []
    assert _problems(tokenizer(bos=True, chat=WITH_BOS), "chat") == []
    assert end_token_ids(tokenizer()) == [3, 5, 7]  # <eos>, <|im_end|>, </turn>
    (done,) = _problems(tokenizer(chat=FINISHED), "chat", answers=("True", "False"))
    assert "end-of-turn" in done
    # A raw template that ends in a space before a space-prefixed answer is caught too.
    (raw_space,) = _problems(tokenizer(), "raw", template="{statement} Answer: ")
    assert "whitespace" in raw_space


# ---------------------------------------------------------------------------------------------
# At plan time, naming the key


def local_model(tmp_path: Path, name: str, tok) -> str:
    d = tmp_path / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 4}))
    tok.save_pretrained(d)
    return str(d)


def _cfg(models, **dataset):
    zoo = {"zoo": {"arch": "llama", "tokenizer": "word"}}
    return {
        "models": {"zoo": zoo, **models},
        "datasets": {"larger_than": {"builtin": "larger_than", **dataset}},
    }


def _fails(cfg, *fragments):
    with pytest.raises(ConfigError) as e:
        validate_config(cfg)
    for f in fragments:
        assert f in str(e.value), str(e.value)


def test_plan_time_chat_checks_name_the_key(tmp_path):
    chat = local_model(tmp_path, "chat", tokenizer(chat=CHATML))
    plain = local_model(tmp_path, "plain", tokenizer())
    eos = local_model(tmp_path, "eos", tokenizer(eos=True))
    answers = {"answers": ["True", "False"]}
    # An instruct model in chat (read at "True" / "False"), a zoo model in raw (read at " True"
    # / " False"), on the same dataset: fine.
    run = validate_config(_cfg({"it": {"path": chat, "prompt_format": "chat", **answers}}))
    ds = run.datasets["larger_than"]
    assert run.models["it"].format_for(ds) == "chat"
    assert run.models["it"].answers_for(ds) == ("True", "False")
    assert run.models["zoo"].format_for(ds) == "raw"
    assert run.models["zoo"].answers_for(ds) == (" True", " False")
    # A space-prefixed answer after a template that ends in a newline.
    _fails(
        _cfg({"it": {"path": chat, "prompt_format": "chat"}}),
        "models.it.prompt_format",
        "whitespace",
        "['True', 'False']",
    )
    # No chat template: the model's tokenizer, or a zoo model (the dataset asks for chat).
    _fails(
        _cfg({"p": {"path": plain, "prompt_format": "chat", **answers}}), "models.p.prompt_format"
    )
    _fails(
        _cfg({"it": {"path": chat, **answers}}, prompt_format="chat"),
        "datasets.larger_than.prompt_format",
        "zoo",
    )
    # A tokenizer that appends EOS moves the read position, whatever the format.
    _fails(_cfg({"e": {"path": eos}}), "models.e", "appends")
