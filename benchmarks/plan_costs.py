"""What a run costs, and what growing it costs, counted from Snakemake's own plan.

Writes the workspace of `bench_dag.py` (N local models of 0.6B-70B parameters, config and
tokenizer files only, x D datasets x 2 probe methods x 3 layers), then plans it three times with
`snakemake -n`: as it is, with one more model, and with one more dataset. From the planned jobs
(rule and wildcards) it counts, per rule, the jobs of the whole run and the jobs that each
addition plans (those that name the new model or dataset, plus the aggregates that rerun), the
GPU jobs, the model loads under SLURM (one per GPU job, except that the carried jobs of one
target model share one allocation whose job server loads the model once:
`crossprobe.cluster.server`) and the SLURM allocations under the profile's job groups
(`profiles/slurm/config.yaml`). With `--write docs/cluster.md` the
table between the `<!-- costs -->` markers of that file is replaced.

    .venv/bin/python benchmarks/plan_costs.py [--models 24] [--datasets 17]
        [--write docs/cluster.md]
"""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dag import SIZES, write_model_dir, write_workspace  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: Rules whose jobs aggregate over models or datasets (they rerun after an addition); a rule
#: without wildcards is an aggregate too.
AGGREGATES = {"generalise", "heldout", "crosslabels"}
GPU_RULES = {"zoo", "extract", "ablate_self", "ablate_carried", "rate", "steer_self",
             "steer_carried", "geometry_extract", "geometry_behaviour"}  # fmt: skip
#: The SLURM profile's job groups: a target model's carried jobs (`carried_{target}`), and
#: batches of small CPU jobs of `group-components` jobs each.
PROFILE = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
GROUPS = dict(g.split("=", 1) for g in PROFILE["groups"])
CARRIED = {rule for rule, group in GROUPS.items() if group == "carried_{target}"}
GROUPED = {rule: group for rule, group in GROUPS.items() if rule not in CARRIED}
MARKERS = ("<!-- costs: begin -->", "<!-- costs: end -->")

Job = tuple[str, tuple[tuple[str, str], ...]]


def dry_run(root: Path) -> tuple[list[Job], float]:
    cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "Snakefile")]
    cmd += ["--directory", str(root), "--configfile", str(root / "config.yaml"), "-n"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"snakemake failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
    jobs: list[Job] = []
    rule, wildcards = None, ()
    for line in proc.stdout.splitlines():
        m = re.match(r"^\s*(?:local)?rule (\w+):$", line)
        if m:
            if rule is not None:
                jobs.append((rule, wildcards))
            rule, wildcards = m.group(1), ()
            continue
        m = re.match(r"^\s+wildcards: (.*)$", line)
        if m and rule is not None:
            wildcards = tuple(sorted(tuple(kv.split("=", 1)) for kv in m.group(1).split(", ")))
    if rule is not None:
        jobs.append((rule, wildcards))
    return jobs, wall


def _names(job: Job, name: str) -> bool:
    return any(v == name for k, v in job[1] if k in ("model", "source", "target", "dataset"))


def increment(jobs: list[Job], name: str) -> list[Job]:
    """The jobs an addition plans once the run before it is complete: those naming it, and the
    aggregates (which rerun)."""
    return [j for j in jobs if _names(j, name) or j[0] in AGGREGATES or not j[1]]


def slurm_counts(jobs: list[Job]) -> int:
    """Allocations of these jobs under the SLURM profile's job groups: one per job outside a
    group, one per target model's carried jobs, one per batch of each other group (maps,
    correlation cells, ridge jobs)."""
    size = dict(c.split("=") for c in PROFILE["group-components"])
    targets, per_group, alloc = set(), Counter(), 0
    for rule, w in jobs:
        if rule == "all":
            continue
        if rule in CARRIED:
            targets.add(dict(w)["target"])
        elif rule in GROUPED:
            per_group[GROUPED[rule]] += 1
        else:
            alloc += 1
    return alloc + len(targets) + sum(math.ceil(n / int(size[g])) for g, n in per_group.items())


def model_loads(jobs: list[Job]) -> int:
    """Model loads under SLURM: one per GPU job outside the carried groups, and one per target
    model's carried allocation (its job server keeps the model for every carried job)."""
    targets = {dict(w)["target"] for rule, w in jobs if rule in CARRIED}
    return sum(1 for rule, _ in jobs if rule in GPU_RULES and rule not in CARRIED) + len(targets)


def table(rows: dict[str, list[Job]]) -> str:
    counts = {k: Counter(r for r, _ in v if r != "all") for k, v in rows.items()}
    rules = sorted(set().union(*counts.values()), key=lambda r: (r not in GPU_RULES, r))
    head = list(rows)
    out = ["| rule | where | " + " | ".join(head) + " |", "|---|---|" + "---:|" * len(head)]
    for r in rules:
        where = "GPU" if r in GPU_RULES else "CPU"
        out.append(f"| {r} | {where} | " + " | ".join(f"{counts[k][r]:,}" for k in head) + " |")
    total = [sum(c.values()) for c in counts.values()]
    gpu = [sum(n for r, n in c.items() if r in GPU_RULES) for c in counts.values()]
    out.append("| **jobs** | | " + " | ".join(f"**{n:,}**" for n in total) + " |")
    out.append("| GPU jobs | | " + " | ".join(f"{n:,}" for n in gpu) + " |")
    loads = [model_loads(v) for v in rows.values()]
    out.append("| model loads (SLURM) | | " + " | ".join(f"{n:,}" for n in loads) + " |")
    allocations = [slurm_counts(v) for v in rows.values()]
    out.append("| SLURM allocations | | " + " | ".join(f"{a:,}" for a in allocations) + " |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=24)
    ap.add_argument("--datasets", type=int, default=17)
    ap.add_argument("--write", type=Path, help="replace the table between the markers here")
    args = ap.parse_args()
    n, d = args.models, args.datasets
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = write_workspace(root, n, d)
        base = yaml.safe_load(config.read_text())
        jobs, wall = dry_run(root)
        print(f"{n} x {d}: {len(jobs)} jobs planned in {wall:.1f} s", file=sys.stderr, flush=True)
        model = f"m{n:02d}"
        write_model_dir(root / "models" / model, SIZES[n % len(SIZES)])
        more = {**base, "models": {**base["models"], model: {"path": f"models/{model}",
                                                            "dtype": "bfloat16"}}}  # fmt: skip
        config.write_text(yaml.safe_dump(more, sort_keys=False))
        with_model, _ = dry_run(root)
        dataset = f"d{d:02d}_extra"
        extra = {**base, "datasets": {**base["datasets"], dataset: {"builtin": "arithmetic"}}}
        config.write_text(yaml.safe_dump(extra, sort_keys=False))
        with_dataset, _ = dry_run(root)
    rows = {
        f"{n} × {d}": jobs,
        "+1 model": increment(with_model, model),
        "+1 dataset": increment(with_dataset, dataset),
    }
    text = table(rows)
    command = f"`.venv/bin/python benchmarks/plan_costs.py --models {n} --datasets {d}`"
    text += f"\n\nCounted from `snakemake -n` by {command} ({time.strftime('%Y-%m-%d')})."
    print(text)
    if args.write:
        page = args.write.read_text()
        start, end = page.index(MARKERS[0]) + len(MARKERS[0]), page.index(MARKERS[1])
        args.write.write_text(page[:start] + "\n" + text + "\n" + page[end:])


if __name__ == "__main__":
    main()
