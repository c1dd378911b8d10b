"""Snakemake's working-directory lock: tell a stale lock (its run was killed) from a live run.

Snakemake locks the directory it runs in (files under ``.snakemake/locks/``) and removes the
lock when it ends, also on Ctrl-C. A run killed with SIGKILL (the OOM killer, a lost node,
``kill -9``) cannot remove it, and the next run stops with "LockException: Directory cannot
be locked". ``snakemake --unlock`` removes the lock files and nothing else: no result, no log,
no incomplete-job marker (so the next run still reruns the jobs the killed run left half done).
It is safe when no Snakemake process is running in the directory, and only then: two runs
writing one results/ folder can overwrite each other's files.

``python -m crossprobe.cluster.locks [DIR]`` says which case it is; with ``--unlock`` it runs
``snakemake --unlock`` only when the lock is stale. A live run is recognised on Linux by a
process whose working directory is DIR and whose command line names snakemake (``/proc``);
where ``/proc`` is missing the answer is "unknown" and nothing is removed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

State = Literal["unlocked", "stale", "live", "unknown"]


@dataclass(frozen=True)
class LockStatus:
    """What holds the working directory's lock."""

    state: State
    """``unlocked``: no lock; ``stale``: a lock and no Snakemake process in the directory;
    ``live``: a lock held by a running process (``pids``); ``unknown``: no ``/proc`` to ask."""
    lock_files: tuple[str, ...]
    pids: tuple[int, ...] = ()


def lock_files(workdir: str | os.PathLike[str]) -> list[Path]:
    """Snakemake's lock files in ``workdir`` (``.snakemake/locks/*.lock``)."""
    folder = Path(workdir) / ".snakemake" / "locks"
    return sorted(folder.glob("*.lock")) if folder.is_dir() else []


def snakemake_pids(workdir: str | os.PathLike[str], proc: Path = Path("/proc")) -> list[int] | None:
    """Processes whose working directory is ``workdir`` and whose command line names snakemake
    (None where there is no ``/proc`` to read)."""
    if not proc.is_dir():
        return None
    target = Path(workdir).resolve()
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:  # gone, or another user's
            continue
        if cwd == target and b"snakemake" in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def lock_status(workdir: str | os.PathLike[str] = ".") -> LockStatus:
    """Whether ``workdir`` is locked, and by a live run or a killed one."""
    files = tuple(str(p) for p in lock_files(workdir))
    if not files:
        return LockStatus("unlocked", files)
    pids = snakemake_pids(workdir)
    if pids is None:
        return LockStatus("unknown", files)
    return LockStatus("live", files, tuple(pids)) if pids else LockStatus("stale", files)


MESSAGES: dict[State, str] = {
    "unlocked": "not locked: nothing to do",
    "stale": (
        "locked by a run that no longer exists (killed with SIGKILL?): `snakemake --unlock` is "
        "safe; it removes the lock files only, and the next run reruns any job left incomplete"
    ),
    "live": "locked by a running Snakemake (pids {pids}): let it finish, or stop it first",
    "unknown": (
        "locked, and this system has no /proc to tell whether a Snakemake still runs here: "
        "check `ps` yourself before `snakemake --unlock`"
    ),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Is this directory's Snakemake lock stale?")
    ap.add_argument("workdir", nargs="?", default=".")
    ap.add_argument("--unlock", action="store_true", help="run `snakemake --unlock` if stale")
    ap.add_argument("--snakefile", default=None, help="the Snakefile, if not in workdir")
    args = ap.parse_args(argv)
    status = lock_status(args.workdir)
    print(f"{args.workdir}: " + MESSAGES[status.state].format(pids=list(status.pids)))
    if not (args.unlock and status.state == "stale"):
        return 0 if status.state in ("unlocked", "stale") else 1
    cmd = [sys.executable, "-m", "snakemake", "--unlock", "--cores", "1"]
    if args.snakefile:
        cmd += ["--snakefile", args.snakefile]
    done = subprocess.run(cmd, cwd=args.workdir)
    print("unlocked" if done.returncode == 0 else "snakemake --unlock failed")
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
