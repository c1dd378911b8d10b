"""Where the default workflow's time goes: run it (or read an earlier run) and add up the jobs.

Every job's log ends with a ``timings`` record (see ``crossprobe.entry.run``): process start-up
and imports before the job, heavy imports inside it, model loading, and the rest (compute and
I/O). This script sums them per rule and overall.

    python benchmarks/bench_workflow.py --run /tmp/crossprobe-bench   # fresh run, then report
    python benchmarks/bench_workflow.py /path/to/workdir               # report on a finished run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def collect(workdir: Path) -> dict[str, dict[str, float]]:
    per_rule: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for log in (workdir / "results" / "logs").rglob("*.log"):
        for line in log.read_text(errors="ignore").splitlines():
            if " timings " in line:
                rec = json.loads(line.split(" timings ", 1)[1])
                row = per_rule[rec.pop("rule")]
                row["jobs"] += 1
                for k, v in rec.items():
                    row[k] += float(v) if v == v else 0.0  # NaN start-up counts as 0
    return per_rule


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--run", action="store_true", help="run the default workflow there first")
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args()
    wall = float("nan")
    if args.run:
        args.workdir.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(Path(sys.executable).with_name("snakemake")),
            "-s",
            str(ROOT / "Snakefile"),
            "--configfile",
            str(ROOT / "config.yaml"),
            "--directory",
            str(args.workdir),
            "--cores",
            str(args.cores),
            "--quiet",
        ]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - t0
    per_rule = collect(args.workdir)
    keys = ["startup", "imports", "load", "work"]
    print(f"| rule | jobs | {' | '.join(k + ' s' for k in keys)} |")
    print("|---|---:|" + "---:|" * len(keys))
    total = defaultdict(float)
    for rule, row in sorted(per_rule.items()):
        print(
            f"| {rule} | {int(row['jobs'])} | " + " | ".join(f"{row[k]:.1f}" for k in keys) + " |"
        )
        for k in keys:
            total[k] += row[k]
    busy = sum(total.values())
    overhead = total["startup"] + total["imports"] + total["load"]
    print(
        f"\njob-seconds: {busy:.0f}; start-up + imports + loading: {overhead:.0f} "
        f"({overhead / busy:.0%}); compute and I/O: {total['work']:.0f}"
    )
    if wall == wall:
        print(f"wall time of the run: {wall:.0f} s on {args.cores} cores")


if __name__ == "__main__":
    main()
