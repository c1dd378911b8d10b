"""How long Snakemake takes to plan a large crossprobe DAG (no job runs, no weights are read).

Writes 24 local model directories (config.json and tokenizer files only, Llama-like configs from
0.5B to 70B parameters so that the GPU sizing has work to do) and a config of 24 models x 17
datasets (built-in families under different names) x 2 probe methods x 3 layers, then times
`snakemake -n` twice: with the local workflow profile, and with the SLURM profile (which also
sizes every job's partition, GPUs, memory and time).

    .venv/bin/python benchmarks/bench_dag.py [--models 24] [--datasets 17] [--cprofile OUT.prof]
        [--compare-cache]

With ``--compare-cache`` the local dry run is timed twice more, without and then with
crossprobe's cache of Snakemake's signature lookups (``crossprobe.cluster.planning``), side by
side on the same workspace.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
FAMILIES = ("larger_than", "arithmetic", "parity", "membership", "category")
#: (hidden, layers, heads, kv heads, intermediate, vocab): about 0.6B, 1.8B, 8B, 46B, 70B
#: parameters: one H100, one H200, or several GPUs each.
SIZES = (
    (896, 24, 14, 2, 4864, 151936),
    (1536, 28, 12, 2, 8960, 151936),
    (4096, 32, 32, 8, 14336, 128256),
    (7168, 60, 56, 8, 28672, 152064),
    (8192, 80, 64, 8, 28672, 128256),
)


def write_model_dir(path: Path, size: tuple[int, ...]) -> None:
    """A directory that passes config validation: config.json and tokenizer files, no weights."""
    hidden, layers, heads, kv, inter, vocab = size
    path.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "intermediate_size": inter,
        "vocab_size": vocab,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    }
    (path / "config.json").write_text(json.dumps(config, indent=1))
    (path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 4096}))
    _tokenizer().save(str(path / "tokenizer.json"))


def _tokenizer():
    """A word-level tokenizer in which every built-in answer is one token."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    words = ["<unk>", "True", "False", "Yes", "No", "true", "false", "or", "?", "Answer", ":"]
    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = Whitespace()
    return tok


def write_workspace(root: Path, n_models: int, n_datasets: int) -> Path:
    models = {}
    for i in range(n_models):
        name = f"m{i:02d}"
        write_model_dir(root / "models" / name, SIZES[i % len(SIZES)])
        models[name] = {"path": f"models/{name}", "dtype": "bfloat16"}
    datasets = {
        f"d{j:02d}_{FAMILIES[j % len(FAMILIES)]}": {"builtin": FAMILIES[j % len(FAMILIES)]}
        for j in range(n_datasets)
    }
    config = {
        "models": models,
        "datasets": datasets,
        "layers": [0.0, 0.5, 1.0],
        "probes": ["dim", "logreg"],
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def plan(
    root: Path, extra: list[str], cprofile: str | None, env: dict[str, str] | None = None
) -> tuple[float, int, str]:
    """Wall seconds and job count of one dry run."""
    cmd = [sys.executable]
    if cprofile:
        cmd += ["-m", "cProfile", "-o", cprofile]
    cmd += [str(Path(sys.executable).parent / "snakemake"), "-s", str(SNAKEFILE)]
    cmd += ["--directory", str(root), "--configfile", str(root / "config.yaml"), "-n", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    if proc.returncode:
        sys.exit(f"snakemake failed:\n{out[-4000:]}")
    total = re.findall(r"^total\s+(\d+)\s*$", out, flags=re.M)
    return wall, int(total[-1]) if total else -1, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=24)
    ap.add_argument("--datasets", type=int, default=17)
    ap.add_argument("--cprofile", help="write a cProfile of the local dry run to this file")
    ap.add_argument("--workdir", help="keep the workspace here (default: a temporary directory)")
    ap.add_argument(
        "--compare-cache",
        action="store_true",
        help="time the local dry run without and with the signature cache",
    )
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.workdir or tmp).resolve()
        root.mkdir(parents=True, exist_ok=True)
        write_workspace(root, args.models, args.datasets)
        grid = f"{args.models} models x {args.datasets} datasets x 2 probes x 3 layers"
        print(f"crossprobe DAG benchmark: {grid}, {os.cpu_count()} CPUs")
        wall, jobs, _ = plan(root, ["--quiet", "rules"], args.cprofile)
        print(f"local profile:  {jobs} jobs planned in {wall:.1f} s")
        if args.compare_cache:
            for label, value in (("off", "0"), ("on", "1")):
                env = {**os.environ, "CROSSPROBE_SIGNATURE_CACHE": value}
                wall, jobs, _ = plan(root, ["--quiet", "rules"], None, env)
                print(f"local profile, signature cache {label}: {jobs} jobs in {wall:.1f} s")
        slurm = ["--profile", str(REPO / "profiles" / "slurm")]
        wall, jobs, out = plan(root, slurm, None)
        gpus = sorted(set(re.findall(r"gpu=(\d+), gpu_model=(\w+)", out)))
        print(f"SLURM profile:  {jobs} jobs planned and sized in {wall:.1f} s")
        print("GPU requests:   " + ", ".join(f"{n} x {m}" for n, m in gpus))


if __name__ == "__main__":
    main()
