"""Where every rule's job starts: look the rule up among the studies' jobs and run it.

Every rule's ``run:`` block calls ``entry(...)`` (``workflow/rules/common.smk``), which hands the
job to ``crossprobe.cluster.launch``; that calls ``run(job)``. The job functions live with their
study (``crossprobe/<study>/jobs.py``; the shared stages in ``crossprobe/stages.py``), each
module listing its rules in ``JOBS`` and those that load a model in ``MODEL_JOBS``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from crossprobe import __version__, stages
from crossprobe.crosslabels import jobs as crosslabels_jobs
from crossprobe.generalisation import jobs as generalisation_jobs
from crossprobe.geometry import jobs as geometry_jobs
from crossprobe.jobs import THREADS, TIMINGS, log, logging_to, process_age, timed
from crossprobe.preference import jobs as preference_jobs
from crossprobe.transfer import jobs as transfer_jobs
from crossprobe.zoo import jobs as zoo_jobs

JOB_MODULES: tuple[ModuleType, ...] = (
    stages,
    zoo_jobs,
    generalisation_jobs,
    transfer_jobs,
    preference_jobs,
    crosslabels_jobs,
    geometry_jobs,
)


def _registry() -> tuple[dict[str, Callable[[Any], None]], frozenset[str]]:
    entry_points: dict[str, Callable[[Any], None]] = {}
    for module in JOB_MODULES:
        clash = entry_points.keys() & module.JOBS.keys()
        if clash:  # pragma: no cover  (a programming error, caught by the test suite)
            raise RuntimeError(f"{module.__name__} redefines rules {sorted(clash)}")
        entry_points.update(module.JOBS)
    return entry_points, frozenset().union(*(m.MODEL_JOBS for m in JOB_MODULES))


ENTRY_POINTS, MODEL_RULES = _registry()


def run(smk: Any, startup: float | None = None) -> None:
    """Run the entry point named after ``smk.rule`` with its log redirected.

    The last log line is a JSON record of where the job's time went (``timings``): process
    start-up and imports before the job, heavy imports inside it, model loading, and the rest
    (compute and I/O). ``benchmarks/bench_workflow.py`` adds these up over a run. ``startup``
    is the seconds the job took to start where the caller measured them (a forked job), else
    this process's age.
    """
    fn = ENTRY_POINTS[smk.rule]
    with logging_to(smk.log[0] if len(smk.log) else None):
        THREADS[0] = max(1, int(smk.threads))
        started = process_age() if startup is None else startup
        t0 = time.perf_counter()
        log.info(
            "crossprobe %s: rule %s, wildcards %s, process %d%s",
            __version__,
            smk.rule,
            dict(smk.wildcards),
            os.getpid(),
            f", SLURM job {os.environ['SLURM_JOB_ID']}" if "SLURM_JOB_ID" in os.environ else "",
        )
        if smk.rule in MODEL_RULES:
            with timed("imports"):
                import crossprobe.models  # noqa: F401  (torch and transformers)
        try:
            fn(smk)
        except BaseException:
            log.exception("rule %s failed", smk.rule)
            raise
        total = time.perf_counter() - t0
        log.info("done in %.2f s", total)
        work = total - TIMINGS["imports"] - TIMINGS["load"]
        record = {"rule": smk.rule, "startup": started, **TIMINGS, "work": work}
        log.info(
            "timings %s",
            json.dumps({k: v if isinstance(v, str) else round(v, 3) for k, v in record.items()}),
        )


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run through the workflow: snakemake")
