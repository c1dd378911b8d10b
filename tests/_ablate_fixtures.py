"""Tiny random-init causal LMs and a word-level tokenizer for fast ablation tests."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

WORDS = (
    "the",
    "cat",
    "dog",
    "sky",
    "sea",
    "sun",
    "moon",
    "tree",
    "river",
    "stone",
    "is",
    "was",
    "are",
    "not",
    "very",
    "quite",
    "blue",
    "green",
    "red",
    "big",
    "small",
    "hot",
    "cold",
    "wet",
    "dry",
    "old",
    "new",
    "a",
    "an",
    "and",
    "or",
    "of",
    "in",
    "on",
    "at",
    "to",
    "True",
    "False",
)
SPECIALS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")
VOCAB_SIZE = 64
HIDDEN = 32
# Larger than the usual 0.02 so that ablation effects are far above float32 rounding.
INIT_STD = 0.2

PROMPTS = (
    "the cat is blue",
    "the sky is not very green and the sea is red",
    "a dog",
    "the old stone was cold",
    "an old tree is big and the river is wet",
    "the sun is hot",
    "the moon was quite small",
    "a new tree on the river",
    "the sea is dry",
    "cold",
)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate((*SPECIALS, *WORDS))}
    assert len(vocab) <= VOCAB_SIZE
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        bos_token="[BOS]",
        eos_token="[EOS]",
    )


def answer_ids(tokenizer: PreTrainedTokenizerFast) -> tuple[int, int]:
    return tokenizer.convert_tokens_to_ids("True"), tokenizer.convert_tokens_to_ids("False")


def _finish(model: PreTrainedModel) -> PreTrainedModel:
    model.eval()
    model.requires_grad_(False)
    return model


def tiny_llama(n_layers: int = 3, seed: int = 0) -> PreTrainedModel:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
        initializer_range=INIT_STD,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
        tie_word_embeddings=False,
    )
    return _finish(LlamaForCausalLM(cfg))


def tiny_gpt2(n_layers: int = 2, seed: int = 0) -> PreTrainedModel:
    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=VOCAB_SIZE,
        n_embd=HIDDEN,
        n_layer=n_layers,
        n_head=4,
        n_positions=64,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        initializer_range=INIT_STD,
        bos_token_id=2,
        eos_token_id=3,
    )
    return _finish(GPT2LMHeadModel(cfg))
