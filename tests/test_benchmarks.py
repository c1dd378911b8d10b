"""The GPU benchmark's code path, run on the CPU with a tiny model (no GPU needed).

`benchmarks/gpu.py` is only measured where a GPU is lent; this keeps the script itself working
(model building, batch sizing, extraction, both ablation paths, the table) in every CI run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_runs_on_cpu_with_a_tiny_model():
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--device", "cpu"]
    cmd += ["--sizes", "tiny", "--prompts", "32", "--ablation-prompts", "4", "--directions", "3"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [line for line in res.stdout.splitlines() if line.startswith("| tiny |")]
    works = [r.split("|")[3].strip() for r in rows]
    assert works == [
        "extract blocks [1, 2]",
        "ablate block 2, 3 dirs, fanout=True",
        "ablate block 2, 3 dirs, fanout=False",
    ]
    assert all(int(r.split("|")[4]) > 0 for r in rows)
