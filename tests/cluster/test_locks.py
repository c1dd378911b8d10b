"""A lock left by a killed run is told from a live run, and removed only when stale."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crossprobe.cluster.locks import lock_status, main

SNAKEFILE = """
rule all:
    output: "done.txt"
    shell: "sleep 60; touch {output}"
"""


def _start(work: Path) -> subprocess.Popen:
    (work / "Snakefile").write_text(SNAKEFILE)
    return subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "1"],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _wait_for_lock(work: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while lock_status(work).state == "unlocked":
        assert proc.poll() is None, "snakemake ended before it locked the directory"
        assert time.monotonic() < deadline, "snakemake never locked the directory"
        time.sleep(0.2)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_a_hard_killed_run_leaves_a_stale_lock_that_unlock_removes(tmp_path, capsys):
    proc = _start(tmp_path)
    try:
        _wait_for_lock(tmp_path, proc)
        live = lock_status(tmp_path)
        assert live.state == "live" and proc.pid in live.pids
        assert main([str(tmp_path), "--unlock"]) == 1  # never while a run is alive
        assert lock_status(tmp_path).state == "live"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # what the OOM killer or a lost node does
        proc.wait()
    stale = lock_status(tmp_path)
    assert stale.state == "stale" and stale.lock_files
    assert main([str(tmp_path), "--unlock"]) == 0
    assert "safe" in capsys.readouterr().out
    assert lock_status(tmp_path).state == "unlocked"
    assert (tmp_path / "Snakefile").exists() and not (tmp_path / "done.txt").exists()


def test_no_lock_is_nothing_to_do(tmp_path):
    assert lock_status(tmp_path).state == "unlocked"
    assert main([str(tmp_path), "--unlock"]) == 0
