"""Is the measurement stable on a real model? SmolLM2-135M against copies of itself.

Runs the workflow (the real rules, through Snakemake) on SmolLM2-135M-Instruct (the GGUF that
``make real-models`` installs) and on zoo entries derived from it:

- ``rot``: its exact functional copy in a random orthonormal basis (the known answer: ρ ≈ 1);
- ``noise-1e-3``, ``noise-1e-2``, ``noise-3e-2``: every weight matrix perturbed by Gaussian
  noise of that fraction of its own standard deviation;
- ``ft-seed1``, ``ft-seed2`` (with ``--fine-tunes``): two fine-tunes of SmolLM2 on the run's
  families that differ only in their seed (the recipe of ``configs/real.yaml``); their cells
  are SmolLM2 into each, and the first fine-tune into the second.

Only the cells carried *from* SmolLM2 into each copy are built (Snakemake is asked for those
files alone), on `larger_than` and `cities` at blocks 15 and 29, so the cost grows with the
number of copies, not with their square. Prints one line per (copy, dataset, method, layer)
and a summary per copy: how ρ falls with the perturbation, the effect ratios, and how many
cells beat their null. Usage::

    python benchmarks/bench_stability.py [--workdir runs/stability] [--fine-tunes]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

NOISE = (1e-3, 1e-2, 3e-2)
FINE_TUNE = {"steps": 40, "lr": 5.0e-5, "batch_size": 16, "families": ["larger_than", "cities"]}


def config(fine_tunes: bool) -> dict:
    from crossprobe.convert import PACKAGED

    smollm2 = next(iter(PACKAGED))
    models: dict = {
        "smollm2": {"gguf": f"gguf/{smollm2}"},
        "rot": {"zoo": {"base": "smollm2", "trained": False, "rotate": True, "seed": 1}},
    }
    for x in NOISE:
        models[f"noise-{x:g}"] = {"zoo": {"base": "smollm2", "trained": False, "noise": x}}
    if fine_tunes:
        for seed in (1, 2):
            models[f"ft-seed{seed}"] = {"zoo": {"base": "smollm2", "seed": seed, **FINE_TUNE}}
    return {
        "models": models,
        "datasets": {"larger_than": {"builtin": "larger_than"}, "cities": {"builtin": "cities"}},
        "layers": [0.5, 1.0],
        "probes": ["dim", "logreg"],
        "transfer": {"null_directions": 8, "matched_null_directions": 4, "min_sources": 1},
        "steering": {"enabled": False},
        "crosslabels": {"enabled": False},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=str(ROOT / "runs" / "stability"))
    ap.add_argument("--fine-tunes", action="store_true", help="add two fine-tunes (10 min)")
    ap.add_argument("--cores", default="2")
    args = ap.parse_args()
    from crossprobe.convert import install_packaged

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    install_packaged(work / "gguf")
    cfg = config(args.fine_tunes)
    (work / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    pairs = [("smollm2", m) for m in cfg["models"] if m != "smollm2"]
    if args.fine_tunes:
        pairs.append(("ft-seed1", "ft-seed2"))
    copies = [t if s == "smollm2" else f"{s}->{t}" for s, t in pairs]
    targets = [f"results/correlations/{s}/{t}.csv" for s, t in pairs]
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory",
           str(work), "--profile", str(ROOT / "profiles" / "default"), "--cores", args.cores,
           *targets]  # fmt: skip
    subprocess.run(cmd, check=True)
    cells = pd.concat(
        [pd.read_csv(work / t).assign(copy=c) for c, t in zip(copies, targets, strict=True)]
    )
    cols = ["copy", "dataset", "method", "source_layer", "n_facts", "pearson_ce", "ci_low",
            "ci_high", "null_p95", "matched_null_p95", "source_effect", "target_effect",
            "carried_length", "beats_null", "transfer_auroc", "source_auroc", "cosine"]  # fmt: skip
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(cells[cols].round(3).to_string(index=False))
        summary = cells.groupby(["copy", "method"]).agg(
            rho_median=("pearson_ce", "median"),
            rho_min=("pearson_ce", "min"),
            beats_null=("beats_null", "sum"),
            cells=("beats_null", "size"),
            target_effect_median=("target_effect", "median"),
        )
        print(summary.round(3).to_string())


if __name__ == "__main__":
    main()
