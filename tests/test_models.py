from __future__ import annotations

import pytest
import torch
import transformers as T
from _tiny import ARCHS, tiny_config, tiny_model, tiny_tokenizer

from crossprobe.errors import ConfigError
from crossprobe.models import (
    answer_token_ids,
    block_output_tensor,
    decoder_blocks,
    forward_hooks,
    hidden_size,
    last_token_index,
    load_config,
    load_model,
    load_tokenizer,
    num_layers,
    replace_block_output,
    resolve_layers,
)

# resolve_layers ------------------------------------------------------------------------------


def test_resolve_layers_known_answers():
    assert resolve_layers([0.5, 1.0, 0.0], 36) == [18, 35, 0]
    # round half up: 0.5 * (4 - 1) = 1.5 -> 2
    assert resolve_layers([0.5], 4) == [2]
    assert resolve_layers([0.25], 36) == [9]  # 8.75 -> 9
    assert resolve_layers([-1, -36, 3], 36) == [35, 0, 3]
    # order kept, duplicates dropped
    assert resolve_layers([5, 0.5, 18, -31], 36) == [5, 18]


@pytest.mark.parametrize("bad", [36, -37, 1.5, -0.1, float("nan"), "3", True])
def test_resolve_layers_out_of_range(bad):
    with pytest.raises(ConfigError) as e:
        resolve_layers([bad], 36, model="org/m")
    assert "org/m" in str(e.value)
    assert repr(bad) in str(e.value) or str(bad) in str(e.value)


# config facts and block discovery ------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_decoder_blocks_found(arch):
    model = tiny_model(getattr(T, arch))
    blocks = decoder_blocks(model)
    assert isinstance(blocks, torch.nn.ModuleList)
    assert len(blocks) == num_layers(model.config) == 3
    assert hidden_size(model.config) == 32


def test_num_layers_text_config():
    text = tiny_config(T.Gemma3TextConfig, num_hidden_layers=5, hidden_size=48)
    cfg = T.Gemma3Config(text_config=text.to_dict())
    assert num_layers(cfg) == 5
    assert hidden_size(cfg) == 48


def test_decoder_blocks_fallback_largest_modulelist():
    class Inner(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.small = torch.nn.ModuleList([torch.nn.Linear(2, 2) for _ in range(3)])
            self.stack = torch.nn.ModuleList([torch.nn.Linear(8, 8) for _ in range(3)])

    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = T.LlamaConfig(num_hidden_layers=3)
            self.body = Inner()

    model = Odd()
    assert decoder_blocks(model) is model.body.stack
    model.config = T.LlamaConfig(num_hidden_layers=7)
    with pytest.raises(ConfigError, match="7 decoder blocks"):
        decoder_blocks(model)


# block outputs -------------------------------------------------------------------------------


def test_block_output_tensor_and_replace():
    x = torch.randn(3, 4, 5)
    y = torch.randn(3, 4, 5)
    # a plain tensor is the hidden state itself: never x[0]
    assert block_output_tensor(x) is x
    assert replace_block_output(x, y) is y
    extra = torch.ones(1)
    t = (x, extra)
    assert block_output_tensor(t) is x
    r = replace_block_output(t, y)
    assert isinstance(r, tuple) and r[0] is y and r[1] is extra


def test_forward_hooks_removed_on_error():
    model = tiny_model(T.LlamaConfig)
    ids = torch.tensor([[4, 5, 6, 7]])
    before = model(input_ids=ids).logits.clone()
    blocks = decoder_blocks(model)

    def zero(_m, _a, out):
        return replace_block_output(out, torch.zeros_like(block_output_tensor(out)))

    with pytest.raises(RuntimeError, match="boom"), forward_hooks([(blocks[1], zero)]):
        changed = model(input_ids=ids).logits
        assert not torch.equal(changed, before)
        raise RuntimeError("boom")
    assert all(len(b._forward_hooks) == 0 for b in blocks)
    after = model(input_ids=ids).logits
    assert torch.equal(after, before)


def test_last_token_index_right_and_left():
    right = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 0, 1], [1, 1, 1, 1]])
    assert last_token_index(right).tolist() == [2, 0, 3]
    assert last_token_index(left).tolist() == [3, 3, 3]


# answers -------------------------------------------------------------------------------------


def test_answer_token_ids():
    tok = tiny_tokenizer()
    pos, neg = answer_token_ids(tok, ("True", "False"), model="tiny")
    assert pos != neg
    assert tok.convert_ids_to_tokens([pos, neg]) == ["True", "False"]


def test_answer_token_ids_multi_token():
    tok = tiny_tokenizer()
    with pytest.raises(ConfigError) as e:
        answer_token_ids(tok, ("True", "not true"), model="org/tiny")
    msg = str(e.value)
    assert "org/tiny" in msg and "'not true'" in msg and "2 tokens" in msg


def test_answer_token_ids_same_token():
    tok = tiny_tokenizer()
    with pytest.raises(ConfigError, match="same token"):
        answer_token_ids(tok, ("True", "True"), model="tiny")


# loading from a directory (the same code path as a hub id) -----------------------------------


def test_load_from_directory(tmp_path):
    model = tiny_model(T.LlamaConfig)
    tok = tiny_tokenizer()
    tok.pad_token = None  # load_tokenizer must fall back to eos
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)

    cfg = load_config(str(tmp_path))
    assert num_layers(cfg) == 3
    tok2 = load_tokenizer(str(tmp_path))
    assert tok2.padding_side == "right"
    assert tok2.pad_token == "<eos>"
    loaded = load_model(str(tmp_path), dtype="float32", device="cpu")
    assert not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    assert next(loaded.parameters()).dtype == torch.float32
    ids = torch.tensor([[4, 5, 6]])
    assert torch.allclose(loaded(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-6)
    # dtype "auto" on CPU is float32
    auto = load_model(str(tmp_path), device="cpu")
    assert next(auto.parameters()).dtype == torch.float32


def test_load_errors_name_the_path(tmp_path):
    missing = str(tmp_path / "nope")
    for fn in (load_tokenizer, load_model, load_config):
        with pytest.raises(ConfigError, match="nope"):
            fn(missing)


def test_load_model_refuses_pickle_weights(tmp_path):
    model = tiny_model(T.LlamaConfig)
    model.save_pretrained(tmp_path)
    # transformers 5 always saves safetensors: turn it into a pickle-only checkpoint by hand
    (tmp_path / "model.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(ConfigError, match="allow_pickle"):
        load_model(str(tmp_path), device="cpu")
    loaded = load_model(str(tmp_path), device="cpu", allow_pickle=True)
    assert num_layers(loaded.config) == 3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_load_model_auto_device_and_dtype_on_gpu(tmp_path):
    tiny_model(T.LlamaConfig).save_pretrained(tmp_path)
    model = load_model(str(tmp_path))
    p = next(model.parameters())
    assert p.device.type == "cuda"
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    assert p.dtype == expected


def test_auto_batch_size_follows_free_memory_and_prompt_length():
    from crossprobe.models import MAX_AUTO_BATCH, auto_batch_size

    cfg = tiny_config(T.LlamaConfig)
    mib, gib = 2**20, 2**30
    one = auto_batch_size(cfg, 64, 16 * mib, 2)
    assert 8 < one < MAX_AUTO_BATCH // 2
    assert auto_batch_size(cfg, 64, 32 * mib, 2) in (2 * one, 2 * one + 1)  # twice the memory
    assert auto_batch_size(cfg, 128, 16 * mib, 2) < one  # longer prompts, fewer per pass
    assert auto_batch_size(cfg, 64, 16 * mib, 4) < one  # float32 rows are bigger
    assert auto_batch_size(cfg, 64, 16 * mib, 2, rows_per_prompt=8) == one // 8
    assert auto_batch_size(cfg, 64, 0, 2) == 1  # never below one prompt
    assert auto_batch_size(cfg, 1, 10**15, 2) == MAX_AUTO_BATCH
    # A 8B-class config (width 4096, MLP 14336, 32 heads) in bf16 on 40 GiB free at 64 tokens.
    big = T.LlamaConfig(hidden_size=4096, intermediate_size=14336, num_attention_heads=32)
    per_row = 64 * (6 * 4096 + 3 * 14336) * 2 + 32 * 64**2 * 4
    assert auto_batch_size(big, 64, 40 * gib, 2) == int(0.5 * 40 * gib // per_row)


def test_resolve_batch_size_on_cpu():
    from crossprobe.models import CPU_AUTO_MEMORY, auto_batch_size, resolve_batch_size

    model = tiny_model(T.LlamaConfig)
    assert resolve_batch_size(model, 7, 32) == 7
    auto = resolve_batch_size(model, "auto", 32, rows_per_prompt=8)
    assert auto == auto_batch_size(model.config, 32, CPU_AUTO_MEMORY, 4, 8)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_resolve_batch_size_from_free_gpu_memory():
    from crossprobe.models import auto_batch_size, resolve_batch_size

    model = tiny_model(T.LlamaConfig).to("cuda", torch.bfloat16)
    free, _ = torch.cuda.mem_get_info()
    got = resolve_batch_size(model, "auto", 32)
    expected = auto_batch_size(model.config, 32, free, 2)
    assert got >= 1 and abs(got - expected) <= max(1, expected // 10)
