#!/usr/bin/env bash
# Stop the CI cluster of .ci/slurm/start.sh: each daemon by its pid file (never by name).
set -uo pipefail

ROOT=${CROSSPROBE_SLURM_ROOT:-/tmp/crossprobe-slurm}

stop() {
    local pidfile=$1
    [[ -s $pidfile ]] || return 0
    local pid
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    fi
    rm -f "$pidfile"
}

# Cancel every job first, so that none outlives the cluster in its saved state.
if [[ -s $ROOT/slurmctld.pid ]] && kill -0 "$(cat "$ROOT/slurmctld.pid")" 2>/dev/null; then
    scancel --full --user "$(id -un)" 2>/dev/null || true
    for _ in $(seq 50); do
        [[ -z $(squeue -h -u "$(id -un)" 2>/dev/null) ]] && break
        sleep 0.2
    done
fi
stop "$ROOT/slurmd.pid"
stop "$ROOT/slurmctld.pid"
stop "$ROOT/slurmdbd.pid"
stop "$ROOT/mysql-run/mariadbd.pid"
stop /run/munge/munged.pid
echo "slurm-ci: stopped ($ROOT)" >&2
