"""Activation extraction against transformers' own ``hidden_states``.

In transformers 5 ``hidden_states[-1]`` is the *final-normed* output (``last_hidden_state``), not
the raw output of the last block; ``hidden_states[l + 1]`` is the raw output of block ``l`` for
every other block. So the comparisons use blocks 0 .. L-2 (the tiny models have 3 blocks), and
the last block is checked against a forward hook in ``test_last_block_is_raw_output``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers as T
from _tiny import ARCHS, tiny_model, tiny_tokenizer

import crossprobe.extract as ex
from crossprobe.errors import ConfigError
from crossprobe.extract import extract_activations
from crossprobe.models import decoder_blocks, forward_hooks

PROMPTS = [
    "the cat is big",
    "sky",
    "the dog is not a small red fish in the sea of london",
    "paris is the capital of france",
    "water is wet",
    "snow is white and the night is dark",
    "fire",
]


def _reference(model, tok, prompts, layers, position="last"):
    """Each prompt alone (no padding), from ``hidden_states[l + 1]``."""
    rows = []
    with torch.no_grad():
        for p in prompts:
            enc = tok([p], return_tensors="pt")
            hs = model(**enc, output_hidden_states=True).hidden_states
            if position == "last":
                rows.append(np.stack([hs[i + 1][0, -1].numpy() for i in layers]))
            else:
                rows.append(np.stack([hs[i + 1][0].mean(0).numpy() for i in layers]))
    return np.stack(rows)


@pytest.mark.parametrize("arch", ARCHS)
def test_matches_hidden_states(arch):
    model = tiny_model(getattr(T, arch))
    tok = tiny_tokenizer()
    got = extract_activations(model, tok, PROMPTS, [0, 1], batch_size=4)
    assert got.dtype == np.float32 and got.shape == (len(PROMPTS), 2, 32)
    np.testing.assert_allclose(got, _reference(model, tok, PROMPTS, [0, 1]), atol=1e-5)


@pytest.mark.parametrize("arch", ["LlamaConfig", "GPT2Config"])
def test_batch_equals_alone_and_mean(arch):
    model = tiny_model(getattr(T, arch))
    tok = tiny_tokenizer()
    alone = np.concatenate([extract_activations(model, tok, [p], [1, 0]) for p in PROMPTS])
    batched = extract_activations(model, tok, PROMPTS, [1, 0], batch_size=len(PROMPTS))
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    np.testing.assert_allclose(batched, _reference(model, tok, PROMPTS, [1, 0]), atol=1e-5)
    mean = extract_activations(model, tok, PROMPTS, [0, 1], position="mean", batch_size=3)
    np.testing.assert_allclose(
        mean, _reference(model, tok, PROMPTS, [0, 1], position="mean"), atol=1e-5
    )


@pytest.mark.parametrize("arch", ["LlamaConfig", "GPT2Config"])
def test_left_padding_side_is_overridden(arch):
    model = tiny_model(getattr(T, arch))
    tok = tiny_tokenizer()
    expected = extract_activations(model, tok, PROMPTS, [0, 1], batch_size=len(PROMPTS))
    tok.padding_side = "left"
    got = extract_activations(model, tok, PROMPTS, [0, 1], batch_size=len(PROMPTS))
    np.testing.assert_array_equal(got, expected)
    assert tok.padding_side == "right"


def test_last_block_is_raw_output():
    model = tiny_model(T.LlamaConfig)
    tok = tiny_tokenizer()
    blocks = decoder_blocks(model)
    seen = []
    with forward_hooks([(blocks[2], lambda _m, _a, o: seen.append(o[0, -1].clone()))]):
        for p in PROMPTS[:3]:
            model(**tok([p], return_tensors="pt"))
    got = extract_activations(model, tok, PROMPTS[:3], [2])
    np.testing.assert_allclose(got[:, 0], torch.stack(seen).numpy(), atol=1e-5)


def test_early_stop_skips_later_blocks():
    model = tiny_model(T.LlamaConfig, num_hidden_layers=4)
    tok = tiny_tokenizer()
    blocks = decoder_blocks(model)
    calls = [0] * len(blocks)

    def counter(i):
        def hook(_m, _a, _o):
            calls[i] += 1

        return hook

    with forward_hooks((b, counter(i)) for i, b in enumerate(blocks)):
        extract_activations(model, tok, PROMPTS, [1, 0], batch_size=2)
    n_batches = 4
    assert calls == [n_batches, n_batches, 0, 0]
    assert all(len(b._forward_hooks) == 0 for b in blocks)


def test_oom_backoff(monkeypatch):
    model = tiny_model(T.LlamaConfig)
    tok = tiny_tokenizer()
    prompts = PROMPTS * 3
    expected = extract_activations(model, tok, prompts, [0, 1], batch_size=1)

    real = ex._forward
    sizes = []

    def flaky(model, enc):
        b = enc["input_ids"].shape[0]
        sizes.append(b)
        if b > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")
        return real(model, enc)

    monkeypatch.setattr(ex, "_forward", flaky)
    got = extract_activations(model, tok, prompts, [0, 1], batch_size=16)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert sizes[:3] == [16, 8, 4]
    assert sum(s for s in sizes if s <= 3) == len(prompts)


def test_oom_runtime_error_and_other_errors(monkeypatch):
    model = tiny_model(T.LlamaConfig)
    tok = tiny_tokenizer()

    def always_oom(model, enc):
        raise RuntimeError("HIP out of memory")

    monkeypatch.setattr(ex, "_forward", always_oom)
    with pytest.raises(RuntimeError, match="out of memory"):  # gives up at batch size 1
        extract_activations(model, tok, PROMPTS, [0], batch_size=4)

    def broken(model, enc):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(ex, "_forward", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        extract_activations(model, tok, PROMPTS, [0], batch_size=4)


def test_bad_arguments():
    model = tiny_model(T.LlamaConfig)
    tok = tiny_tokenizer()
    with pytest.raises(ConfigError):
        extract_activations(model, tok, PROMPTS, [3])
    with pytest.raises(ConfigError):
        extract_activations(model, tok, PROMPTS, [0], position="first")
    assert extract_activations(model, tok, [], [0, 1]).shape == (0, 2, 32)
    # negative block indices count from the end
    a = extract_activations(model, tok, PROMPTS, [-2])
    b = extract_activations(model, tok, PROMPTS, [1])
    np.testing.assert_array_equal(a, b)


def test_gemma3_multimodal_wrapper():
    """Gemma 3 checkpoints with a vision tower load as Gemma3ForConditionalGeneration."""
    from _tiny import tiny_config
    from transformers import AutoModelForCausalLM

    vision = T.SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        image_size=28,
        patch_size=14,
    )
    cfg = T.Gemma3Config(
        text_config=tiny_config(T.Gemma3TextConfig).to_dict(),
        vision_config=vision.to_dict(),
        mm_tokens_per_image=4,
        image_token_index=99,
        boi_token_index=97,
        eoi_token_index=98,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    model.eval().requires_grad_(False)
    blocks = decoder_blocks(model)
    assert blocks is model.model.language_model.layers
    tok = tiny_tokenizer()
    got = extract_activations(model, tok, PROMPTS[:3], [0, 1], batch_size=2)
    np.testing.assert_allclose(got, _reference(model, tok, PROMPTS[:3], [0, 1]), atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("arch", ["LlamaConfig", "GPT2Config"])
def test_bf16_on_cuda_matches_float32_on_cpu(arch):
    model = tiny_model(getattr(T, arch))
    tok = tiny_tokenizer()
    ref = extract_activations(model, tok, PROMPTS, [0, 1], batch_size=3)
    gpu = model.to(device="cuda", dtype=torch.bfloat16)
    got = extract_activations(gpu, tok, PROMPTS, [0, 1], batch_size=3)
    assert got.dtype == np.float32 and got.shape == ref.shape
    # bfloat16 keeps 8 bits of mantissa: a few parts in a thousand per op, a few ops deep.
    np.testing.assert_allclose(got, ref, atol=0.05 * float(np.abs(ref).max()))


@pytest.mark.parametrize("arch", ["LlamaConfig", "GPT2Config"])
def test_mean_leaves_out_the_first_and_special_tokens(arch):
    """`position: mean` with skip_first averages the content positions only (the sink of a
    real LM would otherwise sit in every row); `all` averages every prompt token."""
    model = tiny_model(getattr(T, arch))
    tok = tiny_tokenizer()
    prompts = ["the cat <bos> is big", "paris is the capital of france", "sky <eos> water"]
    special = set(tok.all_special_ids)
    got = extract_activations(
        model, tok, prompts, [0, 1], position="mean", positions="skip_first", batch_size=2
    )
    every = extract_activations(model, tok, prompts, [0, 1], position="mean", positions="all")
    np.testing.assert_allclose(every, _reference(model, tok, prompts, [0, 1], "mean"), atol=1e-5)
    with torch.no_grad():
        for r, p in enumerate(prompts):
            enc = tok([p], return_tensors="pt")
            ids = enc["input_ids"][0].tolist()
            keep = [t for t in range(len(ids)) if t > 0 and ids[t] not in special]
            keep = sorted(set(keep) | {len(ids) - 1})
            hs = model(**enc, output_hidden_states=True).hidden_states
            for j, layer in enumerate([0, 1]):
                want = hs[layer + 1][0, keep].mean(0).numpy()
                np.testing.assert_allclose(got[r, j], want, atol=1e-5)
    assert np.abs(got - every).max() > 1e-4
    last = extract_activations(model, tok, prompts, [0], positions="skip_first")
    np.testing.assert_array_equal(last, extract_activations(model, tok, prompts, [0]))
