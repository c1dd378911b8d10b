"""How a rule's job runs: in a process forked from a server that imported torch once.

Every rule's ``run:`` block calls ``entry(...)`` (``workflow/rules/common.smk``), which packs the
job into a :class:`Job` and calls :func:`run_job`.

- In the Snakemake process that schedules local jobs (``force-use-threads`` in
  ``profiles/local``, so that ``run:`` blocks run in its threads), each job runs in its own
  process, forked from a multiprocessing *forkserver* that imported :data:`PRELOAD` (numpy,
  pandas, torch, transformers, scikit-learn, matplotlib, sentence-transformers) once for the
  whole run. A job then starts in milliseconds instead of paying 4-5 s of interpreter start-up
  and imports, and still has a process of its own: its torch threads, random state, memory and
  failures are its own, as with one interpreter per job. The forkserver imports torch but never
  initialises CUDA, so GPU jobs forked from it start CUDA themselves.
- In a job that Snakemake started as a process of its own (a SLURM job, or a local run whose
  profile does not force threads), the job runs in that process. The jobs of a SLURM *group*
  (every carried ablation and steering job of one target model, say) share one allocation,
  and each runs in a job step of its own; the carried jobs send themselves from their step to
  the allocation's job server, which keeps the model loaded (:mod:`crossprobe.cluster.server`).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.context import ForkServerContext
from typing import Any

#: Modules the forkserver imports before it forks any job (a module that fails to import is
#: skipped by multiprocessing, and the job imports it itself, as it would anyway). Every child
#: of a multiprocessing server re-runs the parent's main script (as ``__mp_main__``); the
#: scheduler's is Snakemake's console script, which imports ``snakemake.cli`` and with it every
#: executor plugin (seconds each time, more where a SLURM client waits for its controller), so
#: that module is preloaded and the re-run costs nothing. (Listing ``"__main__"`` here would
#: not help: the forkserver of Python 3.11 is never told the main script's path.)
PRELOAD: tuple[str, ...] = (
    "snakemake.cli",
    "crossprobe.entry",
    "crossprobe.models",
    "crossprobe.ablate",
    "crossprobe.preference.steer",
    "crossprobe.extract",
    "crossprobe.probes",
    "crossprobe.transfer.cells",
    "crossprobe.figures",
    "crossprobe.zoo.build",
    "sklearn.linear_model",
    "sentence_transformers",
)


@dataclass(frozen=True)
class Job:
    """What an entry point reads of a Snakemake job (the attributes of a script's ``snakemake``)."""

    rule: str
    input: Any
    output: Any
    params: Any
    wildcards: Any
    threads: int
    log: Any


class JobFailed(RuntimeError):
    """A job's process exited with an error (its traceback is in its log and on stderr)."""


_LOCK = threading.Lock()
_CONTEXT: list[ForkServerContext] = []


def _forkserver() -> ForkServerContext:
    """The run's forkserver context, created once (Snakemake calls jobs from several threads)."""
    with _LOCK:
        if not _CONTEXT:
            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload(list(PRELOAD))
            _CONTEXT.append(ctx)
        return _CONTEXT[0]


def run_job(job: Job, *, fork: bool) -> None:
    """Run ``job``'s entry point: in a process forked from the forkserver (``fork``), on the
    allocation's job server (a served rule in a SLURM job step: :mod:`crossprobe.cluster.server`),
    or here."""
    if not fork:
        from crossprobe.cluster.server import run_on_server

        if run_on_server(job):
            return
        from crossprobe.entry import run

        run(job)
        return
    code = run_forked(_child, (job, os.getcwd(), time.time()), name=f"crossprobe-{job.rule}")
    if code != 0:
        raise JobFailed(
            f"rule {job.rule} {dict(job.wildcards)}: its process exited with code {code}"
            f"{log_note(job)}"
        )


def log_note(job: Job) -> str:
    """`` (log: PATH)`` for a failed job's message, or nothing for a job without a log."""
    return f" (log: {job.log[0]})" if len(job.log) else ""


#: Held while a process starts and while its exit code is read. Starting a process polls every
#: other live child of this process (``multiprocessing.process._cleanup``), and a forkserver
#: child's exit code is four bytes read once from its pipe: unguarded, the thread that joins a
#: job and the thread that starts the next one can both read that pipe, and the loser records
#: the end of the pipe as exit code 255 for a job that succeeded.
_EXIT_CODES = threading.Lock()


def run_forked(target: Any, args: tuple, *, name: str) -> int:
    """Run ``target(*args)`` in a process forked from the forkserver and return its exit code
    (safe from several threads at once)."""
    proc = _forkserver().Process(target=target, args=args, name=name, daemon=True)
    with _EXIT_CODES:
        proc.start()
    wait([proc.sentinel])  # until it ends, without holding the lock
    with _EXIT_CODES:
        proc.join()
        code = proc.exitcode
    proc.close()
    assert code is not None
    return code


def _child(job: Job, cwd: str, submitted: float) -> None:
    """The forked job: the scheduler's working directory, then the rule's entry point (its
    start-up is the time since the scheduler asked for the process)."""
    os.chdir(cwd)
    from crossprobe.entry import run

    run(job, startup=time.time() - submitted)
