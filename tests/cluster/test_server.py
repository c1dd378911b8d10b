"""The allocation's job server: jobs sent from their steps run in one process that keeps the
model loaded, a failed job fails its step without ending the server, and a job with no server
to reach runs in its own process. (tests/cluster/test_slurm.py checks it on a real SLURM: one
model load per target's allocation.)"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pytest
from _tiny import tiny_model, tiny_tokenizer
from test_launch import _dataset_job as dataset_job
from transformers import LlamaConfig

from crossprobe import jobs
from crossprobe.cluster import server
from crossprobe.cluster.launch import JobFailed, run_job
from crossprobe.config import ModelSpec


def test_only_the_batch_step_of_an_allocation_with_carried_jobs_starts_a_server():
    argv = ["python", "-m", "snakemake", "--target-jobs", "ablate_carried:source=a,target=b,"
            "dataset=d", "--executor", "slurm-jobstep", "--jobs", "1"]  # fmt: skip
    batch = {"SLURM_JOB_ID": "7"}
    assert server.in_batch_step(argv, batch)
    assert not server.in_batch_step(argv, {**batch, "SLURM_STEP_ID": "0"})  # a job step
    assert not server.in_batch_step(argv, {})  # not under SLURM
    local = [a for a in argv if a not in ("--executor", "slurm-jobstep")]
    assert not server.in_batch_step(local, batch)
    other = [a.replace("ablate_carried", "correlate") for a in argv]
    assert not server.in_batch_step(other, batch)


@pytest.fixture
def served(monkeypatch):
    """A server of this process (its parent), serving the `dataset` rule for the test."""
    monkeypatch.setattr(server, "SERVED_RULES", frozenset({"dataset"}))
    for var in (server.ADDRESS_ENV, server.KEY_ENV):
        monkeypatch.delenv(var, raising=False)
    address = server.start_server()
    assert address is not None
    yield address
    for var in (server.ADDRESS_ENV, server.KEY_ENV):
        os.environ.pop(var, None)


def _pid(log: Path) -> int:
    return int(re.search(r"process (\d+)", log.read_text()).group(1))


def test_jobs_sent_to_the_server_run_in_its_one_process(served, tmp_path):
    a, b = dataset_job(tmp_path, "a"), dataset_job(tmp_path, "b")
    run_job(a, fork=False)
    run_job(b, fork=False)
    assert Path(a.output[0]).exists() and Path(b.output[0]).exists()
    pids = {_pid(Path(a.log[0])), _pid(Path(b.log[0]))}
    assert len(pids) == 1 and os.getpid() not in pids


def test_a_failed_job_fails_its_step_and_the_server_serves_the_next(served, tmp_path):
    bad = dataset_job(tmp_path, "bad", builtin="no_such_family")
    with pytest.raises(JobFailed, match="no_such_family"):
        run_job(bad, fork=False)
    good = dataset_job(tmp_path, "good")
    run_job(good, fork=False)
    assert Path(good.output[0]).exists()


def test_without_a_server_a_job_runs_in_its_own_process(monkeypatch, tmp_path):
    monkeypatch.setattr(server, "SERVED_RULES", frozenset({"dataset"}))
    monkeypatch.setenv(server.ADDRESS_ENV, str(tmp_path / "gone.sock"))
    monkeypatch.setenv(server.KEY_ENV, "00" * 16)
    job = dataset_job(tmp_path, "here")
    run_job(job, fork=False)
    assert _pid(Path(job.log[0])) == os.getpid()


def _model_spec(tmp_path: Path):
    folder = tmp_path / "m"
    tiny_model(LlamaConfig).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return ModelSpec(name="m", path=str(folder), zoo=None, dtype="float32", layers=(0,))


def test_a_kept_model_is_reused_and_dropped_when_a_job_leaves_a_hook(tmp_path, monkeypatch, caplog):
    spec = _model_spec(tmp_path)
    monkeypatch.setattr(jobs, "KEEP_MODEL", [True])
    monkeypatch.setattr(jobs, "_KEPT", {})
    caplog.set_level(logging.INFO, logger="crossprobe")
    model, _ = jobs.load_model(spec)
    again, _ = jobs.load_model(spec)
    assert again is model
    assert [r.message.split()[0] for r in caplog.records] == ["loading", "reusing"]
    jobs.check_kept_model()  # clean: kept
    assert jobs._KEPT["model"] is model
    model.model.layers[0].register_forward_hook(lambda *a: None)
    jobs.check_kept_model()
    assert not jobs._KEPT
    fresh, _ = jobs.load_model(spec)
    assert fresh is not model


def test_a_process_that_keeps_no_model_loads_it_each_time(tmp_path, monkeypatch):
    spec = _model_spec(tmp_path)
    monkeypatch.setattr(jobs, "_KEPT", {})
    first, _ = jobs.load_model(spec)
    assert jobs.load_model(spec)[0] is not first
