#!/usr/bin/env bash
# Stop the single-node CI cluster started by up.sh: cancel jobs, then stop
# slurmd, slurmctld and munged through their pid files (never by process name,
# so nothing else on the machine is touched). Safe to run when nothing is up.
set -euo pipefail

WAIT_S=${SLURM_DOWN_WAIT_S:-30}

if [[ $(id -u) -ne 0 ]]; then
    echo "down.sh: must run as root" >&2
    exit 2
fi

# Cancel first, while slurmctld can still tell slurmd to kill the job steps.
if command -v scancel >/dev/null && [[ -s /run/slurmctld.pid ]]; then
    scancel --user=root 2>/dev/null || true
    # give slurmd a moment to reap cancelled steps before it is stopped
    for _ in $(seq 10); do
        [[ -z $(squeue -h -t running,completing 2>/dev/null) ]] && break
        sleep 1
    done
fi

stop() {  # stop <name> <pidfile>
    local name=$1 pidfile=$2 pid
    [[ -s $pidfile ]] || return 0
    pid=$(cat "$pidfile")
    # A stale pid file could name an unrelated process by now: check it first.
    if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]]; then
        kill -TERM "$pid"
        for _ in $(seq "$WAIT_S"); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "down.sh: $name (pid $pid) ignored SIGTERM for ${WAIT_S}s; sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$pidfile"
    echo "down.sh: stopped $name"
}

stop slurmd /run/slurmd.pid
stop slurmctld /run/slurmctld.pid
stop munged /run/munge/munged.pid
