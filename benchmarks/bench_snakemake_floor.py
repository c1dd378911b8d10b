"""What Snakemake alone takes to plan a DAG shaped like crossprobe's per-cell plan.

A bare Snakefile (no params, no resources, no input functions, no config validation: only
wildcard patterns and `touch`) with the job and input counts of the per-cell carried work of
N models x D datasets: per (model, dataset) an activation store, probes and a self-ablation;
per ordered pair and dataset (a cell) a map (with `--each`), a carried ablation (3 inputs), a
carried steering job (4 inputs) and a correlation (8 inputs); one table over every cell. The
time of `snakemake -n --quiet rules` on it is the floor that crossprobe's own plan of the same
shape cannot go below with this Snakemake on this machine.

    .venv/bin/python benchmarks/bench_snakemake_floor.py [--models 24] [--datasets 17] [--each]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SNAKEFILE = """
M = config["models"]
D = config["datasets"]
EACH = config["each"]
MAP = "maps/{s}/{t}/{d}" if EACH else "maps/{s}/{t}"

wildcard_constraints:
    m=r"[a-z0-9]+",
    s=r"[a-z0-9]+",
    t=r"[a-z0-9]+",
    d=r"[a-z0-9_]+",

rule all:
    input:
        "table.csv",

rule dataset:
    output:
        "datasets/{d}",
    shell:
        "touch {output}"

rule store:
    input:
        "datasets/{d}",
    output:
        "stores/{m}/{d}",
    shell:
        "touch {output}"

rule probes:
    input:
        "stores/{m}/{d}",
    output:
        "probes/{m}/{d}",
    shell:
        "touch {output}"

rule ablate_self:
    input:
        "datasets/{d}",
        "probes/{m}/{d}",
    output:
        "self/{m}/{d}",
    shell:
        "touch {output}"

if EACH:
    rule align:
        input:
            "stores/{s}/{d}",
            "stores/{t}/{d}",
        output:
            "maps/{s}/{t}/{d}",
        shell:
            "touch {output}"
else:
    rule align:
        input:
            expand("stores/{{s}}/{d}", d=D[:3]),
            expand("stores/{{t}}/{d}", d=D[:3]),
        output:
            "maps/{s}/{t}",
        shell:
            "touch {output}"

rule ablate_carried:
    input:
        "datasets/{d}",
        "probes/{s}/{d}",
        MAP,
    output:
        "carried/{t}/{s}/{d}",
    shell:
        "touch {output}"

rule steer_carried:
    input:
        "datasets/{d}",
        "probes/{s}/{d}",
        "stores/{t}/{d}",
        MAP,
    output:
        "steered/{t}/{s}/{d}",
    shell:
        "touch {output}"

rule correlate:
    input:
        "stores/{s}/{d}",
        "stores/{t}/{d}",
        "probes/{s}/{d}",
        "probes/{t}/{d}",
        "self/{s}/{d}",
        "self/{t}/{d}",
        "carried/{t}/{s}/{d}",
        MAP,
    output:
        "cells/{s}/{t}/{d}",
    shell:
        "touch {output}"

rule table:
    input:
        [f"cells/{s}/{t}/{d}" for s in M for t in M if s != t for d in D],
        [f"steered/{t}/{s}/{d}" for s in M for t in M if s != t for d in D],
    output:
        "table.csv",
    shell:
        "touch {output}"
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=24)
    ap.add_argument("--datasets", type=int, default=17)
    ap.add_argument("--each", action="store_true", help="one map per cell (align_on: each)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "Snakefile").write_text(SNAKEFILE)
        models = [f"m{i:02d}" for i in range(args.models)]
        datasets = [f"d{j:02d}" for j in range(args.datasets)]
        config = [f"models={models}", f"datasets={datasets}", f"each={args.each}"]
        cmd = [str(Path(sys.executable).parent / "snakemake"), "-n", "--quiet", "rules"]
        cmd += ["--cores", "1", "--config", *config]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        out = proc.stdout + proc.stderr
        if proc.returncode:
            sys.exit(f"snakemake failed:\n{out[-3000:]}")
        total = re.findall(r"^total\s+(\d+)\s*$", out, flags=re.M)
        maps = "one map per cell" if args.each else "one map per pair"
        print(
            f"bare Snakefile, {args.models} models x {args.datasets} datasets ({maps}): "
            f"{total[-1] if total else '?'} jobs planned in {wall:.1f} s"
        )


if __name__ == "__main__":
    main()
