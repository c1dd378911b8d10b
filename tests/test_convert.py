"""GGUF checkpoints: header reading, planning-time checks, and conversion with a known answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _gguf import TEXTS, write_llama_gguf

from crossprobe.config import validate_config
from crossprobe.convert import (
    GGUF_JSON,
    check_header,
    convert_gguf,
    read_header,
    sha256_file,
    single_token_check,
)
from crossprobe.errors import ConfigError
from crossprobe.models import load_model, load_tokenizer


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "tiny-llama.F32.gguf"
    model, tok = write_llama_gguf(path)
    return path, model, tok


def test_header_reads_layers_width_and_parameters(tiny_gguf):
    path, model, _ = tiny_gguf
    h = read_header(path, tokens=True)
    assert h.architecture == "llama"
    assert h.n_layers == model.config.num_hidden_layers
    assert h.d_model == model.config.hidden_size
    assert h.n_params == sum(p.numel() for p in model.parameters())
    assert h.vocab_size == model.config.vocab_size == len(h.tokens)
    check_header(h, "models.tiny.gguf")


def test_answers_are_checked_against_the_vocabulary(tiny_gguf):
    path, _, tok = tiny_gguf
    single = single_token_check(read_header(path, tokens=True))
    assert single is not None
    for answer in (" True", " False"):
        assert single(answer) == (len(tok.encode(answer, add_special_tokens=False)) == 1)
    assert single(" True") and not single(" Perhapsnot")


def test_not_a_gguf_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(ConfigError, match="not a GGUF file"):
        read_header(bad)
    trunc = tmp_path / "cut.gguf"
    trunc.write_bytes(b"GGUF\x03\x00\x00\x00\x01")
    with pytest.raises(ConfigError, match="truncated"):
        read_header(trunc)


def test_unsupported_architecture_names_the_key(tiny_gguf, tmp_path):
    path, _, _ = tiny_gguf
    h = read_header(path)
    other = type(h)(**{**h.__dict__, "architecture": "made-up-arch"})
    with pytest.raises(ConfigError, match="models.x.gguf: .*'made-up-arch'.*cannot load"):
        check_header(other, "models.x.gguf")


def test_conversion_reproduces_the_model_exactly(tiny_gguf, tmp_path):
    path, model, tok = tiny_gguf
    out = tmp_path / "converted"
    record = convert_gguf(str(path.parent), path.name, out, local_file=str(path))
    assert record["sha256"] == sha256_file(path)
    assert json.loads((out / GGUF_JSON).read_text())["dtype"] == "float32"
    cfg = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in cfg
    converted = load_model(str(out), dtype="float32", device="cpu")
    ctok = load_tokenizer(str(out))
    prompts = [TEXTS[0], "The city of Oslo is in Peru. True or false? Answer:"]
    for p in prompts:  # the tokenizer comes back from the GGUF's vocabulary and merges
        assert ctok(p)["input_ids"] == tok(p)["input_ids"]
    ids = torch.tensor([tok(prompts[1])["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(converted(ids).logits, model(ids).logits, rtol=0, atol=1e-5)


def _config(model_entry, tmp_path):
    return {
        "models": {"tiny": model_entry},
        "datasets": {"larger_than": {"builtin": "larger_than"}},
        "layers": [0, 2],
    }


def test_config_checks_the_gguf_before_any_job(tiny_gguf, tmp_path):
    path, _, _ = tiny_gguf
    run = validate_config(_config({"gguf": str(path)}, tmp_path))
    spec = run.models["tiny"]
    assert spec.is_gguf and spec.source == "results/models/tiny"
    assert spec.local_gguf == path
    run = validate_config(_config({"path": str(path.parent), "gguf": path.name}, tmp_path))
    assert run.models["tiny"].gguf_folder_and_file == (str(path.parent), path.name)
    with pytest.raises(ConfigError, match=r"models.tiny.gguf: file .* does not exist"):
        validate_config(_config({"gguf": str(tmp_path / "missing.gguf")}, tmp_path))
    with pytest.raises(ConfigError, match=r"models.tiny.layers: .*out of range"):
        validate_config({**_config({"gguf": str(path)}, tmp_path), "layers": [0, 7]})
    bad = {**_config({"gguf": str(path)}, tmp_path)}
    bad["datasets"] = {"d": {"builtin": "larger_than", "answers": [" Perhapsnot", " False"]}}
    with pytest.raises(ConfigError, match=r"answer ' Perhapsnot' .* not exactly one token"):
        validate_config(bad)
    with pytest.raises(ConfigError, match="exactly one of `path`"):
        validate_config(_config({"gguf": str(path), "zoo": {"arch": "llama"}}, tmp_path))


def test_not_a_gguf_in_the_config_names_the_model(tmp_path):
    bad = tmp_path / "weights.gguf"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ConfigError, match=r"models.tiny.gguf: .*not a GGUF file"):
        validate_config(_config({"gguf": str(bad)}, tmp_path))


def test_sizing_reads_the_parameter_count_from_the_header(tiny_gguf):
    from crossprobe.cluster.resources import model_footprint

    path, model, _ = tiny_gguf
    run = validate_config(_config({"gguf": str(path)}, Path(".")))
    fp = model_footprint(run.models["tiny"])
    assert fp.n_params == sum(p.numel() for p in model.parameters())
    assert (fp.n_layers, fp.d_model) == (3, 64)
