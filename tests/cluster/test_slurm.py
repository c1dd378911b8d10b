"""The workflow on a real SLURM cluster with `snakemake --profile slurm`, as a user types it.

Needs a running cluster whose partitions and GPU gres match profiles/slurm/cluster.yaml, such as
the single-node one of `.ci/slurm/start.sh` (fake gpu:h100:2,gpu:h200:1). The profile is
installed the documented way (`make slurm-profile`, into a private config directory) and the run
is started from the repository root. Checks from `sacct` and the job logs that every
model-running job went to the GPU partition with the GPUs the profile sizes for it and every
other job to the CPU partition; that the carried jobs of each target model shared one
allocation (the correlation cells another, the maps another); and that the result tables equal
a local run's.

The run uses a reduced config (two tiny zoo models, two datasets): each SLURM allocation costs
several seconds of scheduling and two Snakemake start-ups, so the default config is measured
separately (BENCHMARKS.md), not here.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SNAKEFILE = REPO / "Snakefile"
PROFILE = REPO / "profiles" / "slurm"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
GPU_RULES = {"zoo", "extract", "ablate_self", "ablate_carried", "steer_self", "steer_carried"}
CARRIED_RULES = {"ablate_carried", "steer_carried"}
#: Wall-clock bound of the SLURM run (the process is killed, never left hanging on sacct).
SLURM_TIMEOUT_S = int(os.environ.get("CROSSPROBE_SLURM_TIMEOUT", "1500"))

CONFIG = {
    "models": {
        "a": {"zoo": {"arch": "llama", "tokenizer": "word", "seed": 1, "steps": 20, "d_model": 32}},
        "b": {"zoo": {"arch": "gpt2", "tokenizer": "bpe", "seed": 2, "steps": 20, "d_model": 32}},
    },
    "datasets": {"larger_than": {"builtin": "larger_than"}, "parity": {"builtin": "parity"}},
    "transfer": {"min_prompts": 50, "bootstrap": 100, "null_directions": 2},
    "steering": {"alphas": [-0.5, 0.0, 0.5], "null_directions": 2, "prompts": 16},
}


def _cluster_up() -> bool:
    if shutil.which("sbatch") is None or shutil.which("sacct") is None:
        return False
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20, check=True
        ).stdout
        subprocess.run(
            ["sacct", "-n", "-X", "-S", "now"], capture_output=True, timeout=20, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return any(s.startswith(("idle", "mixed", "allocated")) for s in out.split())


pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(not _cluster_up(), reason="needs sbatch and a running SLURM cluster"),
]


def _cluster_file(tmp: Path) -> Path:
    """The shipped cluster.yaml, with the account of the CI cluster if one is given."""
    site = yaml.safe_load((PROFILE / "cluster.yaml").read_text())
    account = os.environ.get("CROSSPROBE_SLURM_ACCOUNT", "crossprobe")
    site["account"] = account or None
    for key in ("cpu", "gpu"):
        name = os.environ.get(f"CROSSPROBE_{key.upper()}_PARTITION")
        if name:
            site["partitions"][key] = name
    path = tmp / "cluster.yaml"
    path.write_text(yaml.safe_dump(site))
    return path


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int, log: Path) -> None:
    with open(log, "w") as f:
        proc = subprocess.run(
            ["timeout", "-s", "KILL", str(timeout), *cmd],
            cwd=cwd,
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    if proc.returncode:
        tail = "\n".join(log.read_text().splitlines()[-60:])
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}:\n{tail}")


def _install_profile(tmp: Path, env: dict[str, str]) -> dict[str, str]:
    """`make slurm-profile` into a private config directory; the environment that finds it."""
    env = {**env, "XDG_CONFIG_HOME": str(tmp / "xdg")}
    subprocess.run(["make", "-s", "slurm-profile"], cwd=REPO, env=env, check=True)
    assert (tmp / "xdg" / "snakemake" / "slurm").resolve() == PROFILE.resolve()
    return env


def _sacct(since: str, workdir: Path) -> pd.DataFrame:
    """This run's allocations: those submitted from `workdir` since `since`.

    `sacct -S` also lists older jobs that were still pending or running at `since` (a cluster
    that outlived an earlier run, say), so jobs are matched on their working directory too.
    """
    fields = ["JobID", "JobName", "Partition", "AllocTRES", "State", "Account", "WorkDir"]
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-S", since, "-o", ",".join(f"{f}%300" for f in fields)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [line.split("|", len(fields) - 1) for line in out.splitlines() if line.strip()]
    df = pd.DataFrame(rows, columns=fields)
    df = df[df["JobName"].str.startswith("crossprobe")]
    return df[df["WorkDir"].map(lambda d: Path(d).resolve() == workdir.resolve())]


def _job_logs(workdir: Path) -> pd.DataFrame:
    """Every job's own log: its rule, wildcards, SLURM allocation and model loads."""
    rows = []
    for path in (workdir / "results" / "logs").rglob("*.log"):
        if "slurm" in path.relative_to(workdir / "results" / "logs").parts[:1]:
            continue
        text = path.read_text()
        m = re.search(r"rule (\w+), wildcards (\{.*?\}), process \d+, SLURM job (\d+)", text)
        assert m, f"{path}: no SLURM job in its first line"
        rows.append(
            {
                "rule": m.group(1),
                "wildcards": ast.literal_eval(m.group(2)),
                "slurm_job": m.group(3),
                "loads": len(re.findall(r" INFO loading ", text)),
                "reuses": len(re.findall(r" INFO reusing ", text)),
            }
        )
    return pd.DataFrame(rows)


def _gpu_requests(workdir: Path, cluster_file: Path) -> set[tuple[str, int]]:
    """(gres type, count) of every model of the run, as resources.smk sizes them."""
    from crossprobe.cluster.resources import Sizer, load_cluster
    from crossprobe.config import validate_config

    cfg = validate_config(yaml.safe_load((workdir / "config.yaml").read_text()))
    sizer = Sizer(cfg, load_cluster(cluster_file))
    return {(sizer.gpus(m).model, sizer.gpus(m).count) for m in cfg.models}


def _tables(workdir: Path) -> dict[str, pd.DataFrame]:
    tables = workdir / "results" / "tables"
    names = ["generalization.csv", "transfer.csv", "transfer_matrix.csv", "transfer_null.csv"]
    return {n: pd.read_csv(tables / n) for n in names}


def test_workflow_on_slurm_matches_local(tmp_path):
    cluster_file = _cluster_file(tmp_path)
    env = _install_profile(tmp_path, {**os.environ, "CROSSPROBE_CLUSTER": str(cluster_file)})
    site = yaml.safe_load(cluster_file.read_text())
    local, remote = tmp_path / "local", tmp_path / "slurm"
    for d in (local, remote):
        d.mkdir()
        (d / "config.yaml").write_text(yaml.safe_dump(CONFIG))

    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 1))
    t0 = time.perf_counter()
    # From the repository root, as the README says (its own results in `remote`).
    where = ["--directory", str(remote), "--configfile", str(remote / "config.yaml")]
    _run([*SNAKEMAKE, "--profile", "slurm", *where, "--jobs", "8"], REPO, env,
         SLURM_TIMEOUT_S, tmp_path / "slurm.log")  # fmt: skip
    slurm_s = time.perf_counter() - t0
    cmd = [*SNAKEMAKE, "-s", str(SNAKEFILE), "--directory", str(local), "--cores", "2"]
    _run([*cmd, "--configfile", str(local / "config.yaml")], local, env, 1200,
         tmp_path / "local.log")  # fmt: skip

    allocations = _sacct(since, remote)
    jobs = _job_logs(remote)
    print(f"SLURM run {slurm_s:.0f} s: {len(jobs)} jobs in {len(allocations)} allocations, "
          f"{jobs['loads'].sum()} model loads, {jobs['reuses'].sum()} reuses")  # fmt: skip
    assert not allocations.empty, "sacct shows no crossprobe job"
    assert (allocations["State"] == "COMPLETED").all(), allocations
    assert (allocations["Account"] == (site["account"] or allocations["Account"])).all()
    # Every planned job ran once, in one of this run's allocations, and every allocation ran one.
    dry = subprocess.run(
        [*SNAKEMAKE, "-s", str(SNAKEFILE), "--directory", str(local), "-n", "-F", "--quiet",
         "rules"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    planned = _job_counts(dry.stdout + dry.stderr)
    assert jobs["rule"].value_counts().to_dict() == {r: n for r, n in planned.items() if r != "all"}
    assert set(jobs["slurm_job"]) == set(allocations["JobID"])

    # The carried jobs of each target share one allocation, which loads the model once (its job
    # server: every other job of the group reuses it).
    carried = jobs[jobs["rule"].isin(CARRIED_RULES)]
    by_target = carried.groupby(carried["wildcards"].map(lambda w: w["target"]))
    assert set(by_target.groups) == set(CONFIG["models"])
    for target, group in by_target:
        assert group["slurm_job"].nunique() == 1, (target, group)
        assert group["loads"].sum() == 1, (target, group)
        assert (group["loads"] + group["reuses"] == 1).all(), (target, group)
    # The correlation cells share one allocation, and so do the maps (fewer than a batch each).
    batched = {"tables": ["correlate"], "maps": ["align", "align_dataset"]}
    batches = [jobs[jobs["rule"].isin(rules)] for rules in batched.values()]
    assert all(b["slurm_job"].nunique() == 1 for b in batches if len(b))
    assert len(allocations) == len(jobs) - len(carried) + len(by_target) - sum(
        len(b) - 1 for b in batches if len(b)
    )

    gpu_jobs = set(jobs[jobs["rule"].isin(GPU_RULES)]["slurm_job"])
    gpu = allocations[allocations["JobID"].isin(gpu_jobs)]
    cpu = allocations[~allocations["JobID"].isin(gpu_jobs)]
    assert (gpu["Partition"] == site["partitions"]["gpu"]).all(), gpu
    assert (cpu["Partition"] == site["partitions"]["cpu"]).all(), cpu
    # Tiny zoo models fit the smallest GPU: one h100 each, and no GPU for CPU rules.
    requests = _gpu_requests(local, cluster_file)
    assert requests == {(site["gpus"][0]["model"], 1)}
    ((model, count),) = requests
    want = f"gres/gpu:{model}={count}"
    assert gpu["AllocTRES"].str.contains(want, regex=False).all(), gpu[["JobID", "AllocTRES"]]
    assert not cpu["AllocTRES"].str.contains("gres/gpu").any(), cpu[["JobID", "AllocTRES"]]

    # One SLURM log per allocation, kept after success.
    logs = list((remote / "results" / "logs" / "slurm").rglob("*.log"))
    assert len(logs) == len(allocations)

    for name, expected in _tables(local).items():
        got = _tables(remote)[name]
        pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-6, atol=1e-9)


def _job_counts(text: str) -> dict[str, int]:
    """Rule -> job count from the `Job stats` table of a dry run."""
    counts, on = {}, False
    for line in text.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            on, counts = True, {}
            continue
        if on and len(parts) == 2 and parts[1].isdigit():
            if parts[0] == "total":
                break
            counts[parts[0]] = int(parts[1])
    return counts
