"""How a job runs: forked from the preloaded forkserver, or in the calling process.

A forked job writes what the same job writes in-process; its failure is a `JobFailed` that names
the rule and the log, with the traceback in the log; each forked job has a process of its own.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pytest
from snakemake.iocontainers import Namedlist

from crossprobe.cluster.launch import Job, JobFailed, run_forked, run_job
from crossprobe.config import DatasetSpec


def _dataset_job(tmp_path: Path, name: str, builtin: str = "parity") -> Job:
    spec = asdict(
        DatasetSpec(
            name=name,
            builtin=builtin,
            path=None,
            template="{statement}",
            answers=(" True", " False"),
        )
    )
    spec.pop("targets")
    spec.pop("rating")
    splits = {"train": 0.5, "align": 0.2, "test": 0.3}
    return Job(
        rule="dataset",
        input=Namedlist(),
        output=Namedlist([str(tmp_path / f"{name}.parquet")]),
        params=Namedlist(fromdict={"dataset": spec, "splits": splits}),
        wildcards=Namedlist(fromdict={"dataset": name}),
        threads=1,
        log=Namedlist([str(tmp_path / f"{name}.log")]),
    )


def _timings(log: Path) -> dict:
    line = next(ln for ln in log.read_text().splitlines() if " timings " in ln)
    return json.loads(line.split(" timings ", 1)[1])


def test_forked_job_writes_what_the_job_writes_in_process(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    forked, here = _dataset_job(tmp_path, "forked"), _dataset_job(tmp_path, "here")
    run_job(forked, fork=True)
    run_job(here, fork=False)
    pd.testing.assert_frame_equal(
        pd.read_parquet(forked.output[0]), pd.read_parquet(here.output[0])
    )
    # Both logs end with the timings record the benchmarks read.
    assert _timings(Path(forked.log[0]))["rule"] == "dataset"
    assert _timings(Path(here.log[0]))["rule"] == "dataset"


def test_forked_job_runs_in_the_callers_working_directory(tmp_path, monkeypatch):
    """Relative paths (Snakemake's) resolve against the scheduler's directory, not the server's."""
    monkeypatch.chdir(tmp_path)
    job = _dataset_job(tmp_path, "rel")
    job = Job(
        **{**job.__dict__, "output": Namedlist(["sub/rel.parquet"]), "log": Namedlist(["rel.log"])}
    )
    run_job(job, fork=True)
    assert (tmp_path / "sub" / "rel.parquet").is_file()
    assert (tmp_path / "rel.log").is_file()


def test_a_failed_forked_job_names_the_rule_and_its_log(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job = _dataset_job(tmp_path, "bad", builtin="no_such_family")
    with pytest.raises(JobFailed, match=r"rule dataset .*exited with code 1 \(log: .*bad\.log\)"):
        run_job(job, fork=True)
    text = Path(job.log[0]).read_text()
    assert "rule dataset failed" in text and "Traceback" in text
    assert not Path(job.output[0]).exists()  # nothing partial is left where the output goes


def _pid(log: Path) -> int:
    return int(re.search(r"process (\d+)", log.read_text()).group(1))


def test_each_forked_job_has_a_process_of_its_own(tmp_path, monkeypatch):
    """Jobs forked one after the other run in distinct processes, never in the caller's."""
    monkeypatch.chdir(tmp_path)
    jobs = [_dataset_job(tmp_path, f"job{i}") for i in range(3)]
    for job in jobs:
        run_job(job, fork=True)
    pids = {_pid(Path(job.log[0])) for job in jobs}
    assert len(pids) == 3 and os.getpid() not in pids
    here = _dataset_job(tmp_path, "here")
    run_job(here, fork=False)
    assert _pid(Path(here.log[0])) == os.getpid()


def test_exit_codes_are_read_right_when_jobs_start_and_end_in_several_threads():
    """Snakemake runs jobs from several threads: a job that ends while another starts still
    reports its own exit code (unguarded, about one in ten of these read 255)."""
    codes: list[int] = []

    def worker() -> None:
        for _ in range(40):
            codes.append(run_forked(time.sleep, (0,), name="sleep"))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [0] * 160


def test_a_forked_exit_code_is_the_processs_own():
    assert run_forked(os._exit, (3,), name="exit") == 3
