"""One model load per SLURM allocation: a job server that keeps the allocation's model loaded.

Under SLURM the carried jobs of one target model (``ablate_carried`` and ``steer_carried``, one
per source and dataset) share one allocation (the ``carried_<target>`` job group of
``profiles/slurm``), and the Snakemake that runs the allocation starts each job as a job step
of its own, a process that would load the model again. So that the allocation loads its model
once:

- The allocation's Snakemake (the *batch step*: ``--executor slurm-jobstep``, not itself a job
  step) starts a job server when it reads the Snakefile, if its jobs include a served rule
  (:data:`SERVED_RULES`). The server is a child of the batch step, so it outlives every job
  step and ends with the allocation (it exits when its parent does).
- Each served job, in its own step, sends itself (:class:`~crossprobe.cluster.launch.Job`) to
  the server over a Unix socket and waits. The server runs jobs one at a time, in its own
  process, through the same entry point as any job (``crossprobe.entry.run``: the job's log,
  its timings), and keeps the last model it loaded (:func:`crossprobe.jobs.load_model`): the
  next job of the same model reuses it, and its log says so instead of "loading".
- A job whose step cannot reach the server (another node, no server) runs in its own process
  as before, and says so in its log. A job that fails in the server fails its step; the server
  then drops its model, so a half-run job leaves nothing behind for the next.

The address and key reach the steps in the environment (:data:`ADDRESS_ENV`, :data:`KEY_ENV`),
which the jobstep executor passes to ``srun``.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from multiprocessing.connection import Client, Listener
from pathlib import Path
from typing import Any

#: Rules whose jobs a server runs: the model jobs that share an allocation per target model.
SERVED_RULES = frozenset({"ablate_carried", "steer_carried"})
ADDRESS_ENV = "CROSSPROBE_JOB_SERVER"
KEY_ENV = "CROSSPROBE_JOB_SERVER_KEY"
#: How long the batch step waits for a new server's socket before going on without it.
START_TIMEOUT_S = 30.0


def in_batch_step(argv: list[str] | None = None, env: dict[str, str] | None = None) -> bool:
    """Whether this process is the Snakemake that runs a SLURM allocation's jobs as job steps,
    with a served rule among them."""
    argv = sys.argv if argv is None else argv
    env = dict(os.environ) if env is None else env
    if "SLURM_JOB_ID" not in env or "SLURM_STEP_ID" in env or "slurm-jobstep" not in argv:
        return False
    line = " ".join(argv)
    return any(f"{rule}:" in line for rule in SERVED_RULES)


def start_server() -> str | None:
    """Start this allocation's job server and export its address and key to the job steps.

    Returns the address, or None (with a warning) when it did not come up in time; the jobs
    then load their model themselves.
    """
    folder = Path(tempfile.mkdtemp(prefix="crossprobe-"))
    address = str(folder / "jobs.sock")
    key = secrets.token_hex(16)
    env = {**os.environ, KEY_ENV: key}
    proc = subprocess.Popen(
        [sys.executable, "-m", "crossprobe.cluster.server", address, str(os.getpid())],
        env=env,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while not Path(address).exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            print(f"crossprobe: warning: the job server at {address} did not start; each job "
                  "loads its model itself", file=sys.stderr)  # fmt: skip
            return None
        time.sleep(0.05)
    os.environ[ADDRESS_ENV] = address
    os.environ[KEY_ENV] = key
    return address


def run_on_server(job: Any) -> bool:
    """Run ``job`` on this allocation's server. False when there is no server to reach (the
    caller runs the job itself); raises ``JobFailed`` when the job failed there."""
    from crossprobe.cluster.launch import JobFailed, log_note

    address, key = os.environ.get(ADDRESS_ENV), os.environ.get(KEY_ENV)
    if job.rule not in SERVED_RULES or not address or not key:
        return False
    try:
        conn = Client(address, family="AF_UNIX", authkey=bytes.fromhex(key))
    except OSError as e:
        print(f"crossprobe: job server {address} not reachable ({e}); running here",
              file=sys.stderr)  # fmt: skip
        return False
    with conn:
        conn.send((job, os.getcwd(), time.time()))
        try:
            status, detail = conn.recv()
        except EOFError:
            status, detail = "error", "the job server ended during the job"
    if status != "ok":
        raise JobFailed(f"rule {job.rule} {dict(job.wildcards)} failed in the job server"
                        f"{log_note(job)}:\n{detail}")  # fmt: skip
    return True


def _watch_parent(parent: int, address: str) -> None:
    """End the server when the allocation's Snakemake (its parent) has ended."""
    while os.getppid() == parent:
        time.sleep(1.0)
    Path(address).unlink(missing_ok=True)
    os._exit(0)


def _serve_one(conn: Any) -> None:
    """Run one job sent over ``conn`` and answer with its status."""
    from crossprobe import jobs
    from crossprobe.entry import run

    job, cwd, submitted = conn.recv()
    try:
        os.chdir(cwd)
        run(job, startup=time.time() - submitted)
    except BaseException:  # the job's own log has the traceback too
        jobs.drop_kept_model()
        conn.send(("error", traceback.format_exc()))
        return
    jobs.check_kept_model()
    conn.send(("ok", ""))


def serve(address: str, parent: int) -> None:
    """Accept jobs on ``address`` (one at a time) until the parent process ends."""
    key = bytes.fromhex(os.environ.pop(KEY_ENV))
    listener = Listener(address, family="AF_UNIX", authkey=key)
    threading.Thread(target=_watch_parent, args=(parent, address), daemon=True).start()
    from crossprobe import jobs

    jobs.KEEP_MODEL[0] = True
    while True:
        try:
            conn = listener.accept()
        except OSError:  # a client that failed the handshake
            continue
        with conn:
            try:
                _serve_one(conn)
            except (EOFError, OSError):  # the step went away (cancelled); serve the next
                jobs.drop_kept_model()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
