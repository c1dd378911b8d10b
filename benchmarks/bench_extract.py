"""Activation extraction throughput: crossprobe against common ways of doing the same thing.

Every method runs on the same model and prompts in one process, interleaved round by round (the
best round counts), and its activations are compared with crossprobe's. Run from the repository
root::

    .venv/bin/python benchmarks/bench_extract.py            # default, a few minutes on 2 cores
    .venv/bin/python benchmarks/bench_extract.py --quick    # smoke run
    .venv/bin/python benchmarks/bench_extract.py --breakdown  # the zoo's time by stage only

Methods (all under ``torch.inference_mode``, batch size 32 where batched):

- ``crossprobe``: :func:`crossprobe.extract.extract_activations` with the batch size that the
  workflow's default ``batch_size: auto`` picks for the model (printed), and again at 32; on
  the Llama also on a copy of the model with the other attention (SDPA against eager).
- ``per-prompt hidden_states``: one unpadded prompt at a time, ``output_hidden_states=True``.
- ``batched hidden_states``: batches in input order, right padding, last token from the mask.
- ``batched hooks + stop``: forward hooks on the blocks, stopping after the deepest one.
- ``nnsight`` / ``nnsight + stop``: ``LanguageModel.trace`` saving the block outputs (its own
  copy of the tokenizer, which nnsight switches to left padding: the last token is at -1).
- ``TransformerLens``: ``TransformerBridge.run_with_cache`` with ``stop_at_layer`` on its own
  copy of the model (the bridge switches attention to eager in place).

``hidden_states[ℓ + 1]`` is block ℓ's raw output except for the last block (final norm applied),
so the benchmark uses blocks below the last one.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    llama_100m,
    n_params,
    n_tokens,
    print_machine,
    table,
    word_prompts,
    word_tokenizer,
    zoo_model,
)

from crossprobe.extract import StopForward, extract_activations  # noqa: E402
from crossprobe.models import block_output_tensor, decoder_blocks, last_token_index  # noqa: E402

BATCH = 32
Method = Callable[[], np.ndarray]


def per_prompt(model, tok, prompts, layers) -> np.ndarray:
    rows = []
    for p in prompts:
        enc = tok([p], return_tensors="pt")
        hs = model(**enc, output_hidden_states=True, use_cache=False).hidden_states
        rows.append(torch.stack([hs[i + 1][0, -1] for i in layers]))
    return torch.stack(rows).float().numpy()


def batched_hidden_states(model, tok, prompts, layers) -> np.ndarray:
    out = []
    for s in range(0, len(prompts), BATCH):
        tok.padding_side = "right"
        enc = tok(prompts[s : s + BATCH], return_tensors="pt", padding=True)
        hs = model(**enc, output_hidden_states=True, use_cache=False).hidden_states
        last = last_token_index(enc["attention_mask"])
        rows = torch.arange(len(last))
        out.append(torch.stack([hs[i + 1][rows, last] for i in layers], 1))
    return torch.cat(out).float().numpy()


def batched_hooks(model, tok, prompts, layers) -> np.ndarray:
    blocks = decoder_blocks(model)
    out = []
    for s in range(0, len(prompts), BATCH):
        tok.padding_side = "right"
        enc = tok(prompts[s : s + BATCH], return_tensors="pt", padding=True)
        last = last_token_index(enc["attention_mask"])
        got: dict[int, torch.Tensor] = {}

        def hook(i, got=got, last=last):
            def f(_m, _a, o):
                got[i] = block_output_tensor(o)[torch.arange(len(last)), last]
                if i == max(layers):
                    raise StopForward

            return f

        handles = [blocks[i].register_forward_hook(hook(i)) for i in layers]
        try:
            with contextlib.suppress(StopForward):
                model(**enc, use_cache=False)
        finally:
            for h in handles:
                h.remove()
        out.append(torch.stack([got[i] for i in layers], 1))
    return torch.cat(out).float().numpy()


def nnsight_method(model, tok, layers, *, stop: bool) -> Callable[[list[str]], np.ndarray] | str:
    try:
        from nnsight import LanguageModel
    except ImportError as e:
        return f"not installed ({e})"
    own_tok = copy.deepcopy(tok)  # nnsight switches its tokenizer to left padding
    lm = LanguageModel(model, tokenizer=own_tok)
    blocks_path = lm.model.layers

    def run(prompts: list[str]) -> np.ndarray:
        out = []
        for s in range(0, len(prompts), BATCH):
            saved = []
            with lm.trace(prompts[s : s + BATCH]) as tracer:
                for i in layers:
                    saved.append(blocks_path[i].output.save())
                if stop:
                    tracer.stop()
            if own_tok.padding_side != "left":
                raise RuntimeError("expected nnsight to pad on the left")
            out.append(torch.stack([v[:, -1] for v in saved], 1))
        return torch.cat(out).float().numpy()

    return run


def transformer_lens_method(model, tok, layers) -> Callable[[list[str]], np.ndarray] | str:
    try:
        from transformer_lens.model_bridge import TransformerBridge
        from transformers import AutoTokenizer
    except ImportError as e:
        return f"not installed ({e})"
    tmp = tempfile.mkdtemp()
    tok.save_pretrained(tmp)  # the bridge reloads its tokenizer by name
    try:
        bridge = TransformerBridge.boot_transformers(
            "meta-llama/Llama-3.2-1B",  # selects the Llama adapter; weights come from hf_model
            hf_model=copy.deepcopy(model),
            tokenizer=AutoTokenizer.from_pretrained(tmp),
        )
    except Exception as e:  # noqa: BLE001
        return f"cannot wrap the model ({type(e).__name__}: {e})"
    names = {f"blocks.{i}.hook_out" for i in layers}
    stop_at = max(layers) + 1

    def run(prompts: list[str]) -> np.ndarray:
        out = []
        for s in range(0, len(prompts), BATCH):
            tok.padding_side = "right"
            enc = tok(prompts[s : s + BATCH], return_tensors="pt", padding=True)
            _, cache = bridge.run_with_cache(
                enc["input_ids"],
                attention_mask=enc["attention_mask"],
                names_filter=lambda n: n in names,
                stop_at_layer=stop_at,
            )
            last = last_token_index(enc["attention_mask"])
            rows = torch.arange(len(last))
            out.append(torch.stack([cache[f"blocks.{i}.hook_out"][rows, last] for i in layers], 1))
        return torch.cat(out).float().numpy()

    return run


def bench_model(
    name, model, tok, prompts, layers, rounds, *, extras: bool, slow_n: int, alt_attn: str = ""
):
    """Time every method; per-prompt runs on the first ``slow_n`` prompts only. ``alt_attn``
    adds crossprobe on a copy of the model with that attention implementation."""
    from crossprobe.models import resolve_batch_size

    auto = resolve_batch_size(model, "auto", max(len(ids) for ids in tok(prompts)["input_ids"]))
    print(f"{name}: crossprobe's batch_size auto gives {auto} prompts per pass", flush=True)
    methods: dict[str, tuple[Callable[[list[str]], np.ndarray], bool]] = {
        "crossprobe": (
            lambda p: extract_activations(model, tok, p, layers, batch_size=auto),
            False,
        ),
        f"crossprobe (batch {BATCH})": (
            lambda p: extract_activations(model, tok, p, layers, batch_size=BATCH),
            False,
        ),
    }
    if alt_attn:
        alt = copy.deepcopy(model)
        alt.set_attn_implementation(alt_attn)
        methods[f"crossprobe ({alt_attn})"] = (
            lambda p: extract_activations(alt, tok, p, layers, batch_size=auto),
            False,
        )
    methods |= {
        "per-prompt hidden_states": (lambda p: per_prompt(model, tok, p, layers), True),
        "batched hidden_states": (lambda p: batched_hidden_states(model, tok, p, layers), False),
        "batched hooks + stop": (lambda p: batched_hooks(model, tok, p, layers), False),
    }
    skipped: dict[str, str] = {}
    if extras:
        for label, make in (
            ("nnsight", lambda: nnsight_method(model, tok, layers, stop=False)),
            ("nnsight + stop", lambda: nnsight_method(model, tok, layers, stop=True)),
            (
                "TransformerLens (stop_at_layer)",
                lambda: transformer_lens_method(model, tok, layers),
            ),
        ):
            fn = make()
            if isinstance(fn, str):
                skipped[label] = fn
            else:
                methods[label] = (fn, False)
    with torch.inference_mode():  # warm-up
        for fn, _ in methods.values():
            fn(prompts[:4])
    times = {m: float("inf") for m in methods}
    results: dict[str, np.ndarray] = {}

    for _ in range(rounds):
        for m, (fn, slow) in methods.items():
            p = prompts[:slow_n] if slow else prompts
            with torch.inference_mode():
                t = time.perf_counter()
                results[m] = fn(p)
                times[m] = min(times[m], time.perf_counter() - t)
    ref = results["crossprobe"]
    tps = {
        m: n_tokens(tok, prompts[:slow_n] if methods[m][1] else prompts) / times[m] for m in methods
    }
    rows = []
    for m in methods:
        r = ref[: len(results[m])]
        diff = float(np.abs(results[m] - r).max())
        rows.append([m, round(tps[m], 1), round(tps["crossprobe"] / tps[m], 2), f"{diff:.2e}"])
    print(
        f"\n### {name}: {n_params(model) / 1e6:.1f}M parameters, blocks {layers}, "
        f"{len(prompts)} prompts ({n_tokens(tok, prompts)} tokens; per-prompt loop on the first "
        f"{slow_n}), best of {rounds} rounds\n"
    )
    print(table(["method", "tokens/s", "crossprobe ×", "max |Δ| vs crossprobe"], rows))
    for m, why in skipped.items():
        print(f"\n{m}: skipped: {why}")
    return tps


def breakdown(model, tok, prompts, rounds: int) -> None:
    """Where a zoo extraction of blocks [0, 1] spends its time: the forward pass stopped at
    successive points (a pre-hook or hook raising ``StopForward``), interleaved, best round."""
    from crossprobe.extract import _pad_right
    from crossprobe.models import resolve_batch_size

    blocks = decoder_blocks(model)
    ids = sorted(tok(prompts)["input_ids"], key=len, reverse=True)
    bs = resolve_batch_size(model, "auto", len(ids[0]))
    batches = [_pad_right(ids[i : i + bs], tok.pad_token_id, "cpu") for i in range(0, len(ids), bs)]

    def stop(*_a: object) -> None:
        raise StopForward

    points = {
        "embedding, mask and rotary (stop before block 0)": (blocks[0], True),
        "through block 0": (blocks[0], False),
        "through block 1's attention (stop before its MLP)": (blocks[1].mlp, True),
        "through block 1 (the whole extraction's forward pass)": (blocks[1], False),
    }
    best = dict.fromkeys(points, float("inf"))
    with torch.inference_mode():
        for b in batches:  # warm-up
            model(**b, use_cache=False)
        for _ in range(rounds):
            for k, (module, pre) in points.items():
                if pre:
                    handle = module.register_forward_pre_hook(stop)
                else:
                    handle = module.register_forward_hook(stop)
                t = time.perf_counter()
                for b in batches:
                    with contextlib.suppress(StopForward):
                        model(**b, use_cache=False)
                best[k] = min(best[k], time.perf_counter() - t)
                handle.remove()
    *_, total = best.values()  # the last point is the whole pass
    print(
        f"\n### zoo model: where the forward pass of an extraction of blocks [0, 1] spends its "
        f"time ({len(prompts)} prompts, {bs} a pass, best of {rounds} rounds)\n"
    )
    rows = [[k, round(v * 1000, 1), round(v / total, 2)] for k, v in best.items()]
    print(table(["forward pass stopped after", "ms", "share of the whole"], rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: few prompts, one round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--attn", default="eager", help="attention of the 100M model (eager, sdpa)")
    ap.add_argument("--no-extras", action="store_true", help="skip nnsight and TransformerLens")
    ap.add_argument(
        "--breakdown", action="store_true", help="only the zoo model's time by forward-pass stage"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    n, rounds = (48, 1) if args.quick else (args.prompts, args.rounds)
    print_machine()

    zoo, zoo_tok, zoo_prompts = zoo_model()
    step = max(1, len(zoo_prompts) // n)
    zp = zoo_prompts[::step][:n]
    if args.breakdown:
        breakdown(zoo, zoo_tok, zp, 9 if not args.quick else 1)
        return
    bench_model(
        "zoo model (random-init Llama, 3 blocks, width 64)",
        zoo,
        zoo_tok,
        zp,
        [0, 1],
        max(rounds, 3),
        extras=not args.no_extras,
        slow_n=n,
    )

    big = llama_100m(args.attn)
    tok = word_tokenizer()
    prompts = word_prompts(n)
    tps = bench_model(
        f"Llama 768×12 ({args.attn} attention)",
        big,
        tok,
        prompts,
        [3, 6, 9],
        rounds,
        extras=not args.no_extras,
        slow_n=min(n, 128),
        alt_attn="sdpa" if args.attn == "eager" else "eager",
    )
    a, b = tps["per-prompt hidden_states"], tps["batched hidden_states"]
    c = tps["crossprobe"]
    print(
        f"\ngoals (100M): ≥ 1.55× batched: {c / b:.2f}× {'met' if c / b >= 1.55 else 'missed'}; "
        f"≥ 2.7× per-prompt: {c / a:.2f}× {'met' if c / a >= 2.7 else 'missed'}"
    )


if __name__ == "__main__":
    main()
