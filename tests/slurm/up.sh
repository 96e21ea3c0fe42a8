#!/usr/bin/env bash
# Bring up a throw-away, single-node SLURM cluster on this machine (Debian/Ubuntu,
# run as root): munged + slurmctld + slurmd, no accounting database, two fake GPUs.
# Used by tests/test_slurm.py so the slurm executor plugin is tested against a
# real scheduler. Idempotent: running it again while the cluster is up is a no-op
# apart from rewriting identical config files.
set -euo pipefail

WAIT_S=${SLURM_UP_WAIT_S:-60}

die() { echo "up.sh: $*" >&2; exit 1; }

if [[ $(id -u) -ne 0 ]]; then
    echo "up.sh: must run as root (it installs packages and starts daemons)" >&2
    exit 2
fi
if ! command -v apt-get >/dev/null; then
    echo "up.sh: apt-get not found; only Debian/Ubuntu are supported" >&2
    exit 2
fi

# --- packages -------------------------------------------------------------
missing=0
for bin in /usr/sbin/munged /usr/sbin/slurmctld /usr/sbin/slurmd /usr/bin/sbatch; do
    [[ -x $bin ]] || missing=1
done
if [[ $missing -eq 1 ]]; then
    export DEBIAN_FRONTEND=noninteractive
    # A fresh container has empty package lists; update only then (it is slow).
    if ! apt-cache show slurm-wlm >/dev/null 2>&1; then
        apt-get update -qq
    fi
    apt-get install -y -qq slurm-wlm munge >/dev/null
fi

host=$(hostname -s)
# Topology (CPUs, sockets, cores, threads) as slurmd itself sees it; a mismatch
# with slurm.conf would drain the node.
topology=$(slurmd -C | head -n1 | sed -e 's/^NodeName=[^ ]* //' -e 's/ RealMemory=[0-9]*//')
# Leave ~2 GB for the OS; DefMemPerCPU requests must fit under RealMemory.
mem_mb=$(( $(awk '/^MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 2048 ))

# --- configuration ----------------------------------------------------------
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge

cat > /etc/slurm/slurm.conf <<EOF
# Written by tests/slurm/up.sh: single-node CI cluster, no accounting database.
ClusterName=ci
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
# squeue (our status command, as there is no accounting) only sees finished jobs
# for MinJobAge seconds; below 3x the plugin's first status-check delay the
# plugin quietly switches back to sacct, which fails here.
MinJobAge=300
ReturnToService=2
GresTypes=gpu
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
NodeName=${host} NodeAddr=127.0.0.1 ${topology} RealMemory=${mem_mb} Gres=gpu:2 State=UNKNOWN
PartitionName=ci Nodes=${host} Default=YES MaxTime=INFINITE State=UP
EOF

# GPUs slurm can hand out: without a File= the node goes INVAL. Any character
# device is enough for slurm to set CUDA_VISIBLE_DEVICES in jobs that ask for a
# GPU. Two of them: two one-GPU jobs (one CPU each) run at once on a 2-CPU node.
cat > /etc/slurm/gres.conf <<EOF
NodeName=${host} Name=gpu File=/dev/null
NodeName=${host} Name=gpu File=/dev/zero
EOF

# --- daemons ------------------------------------------------------------------
running() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

if [[ ! -s /etc/munge/munge.key ]]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown munge:munge /etc/munge/munge.key /run/munge
chmod 0400 /etc/munge/munge.key
if ! running /run/munge/munged.pid; then
    runuser -u munge -- /usr/sbin/munged
fi

# Both daemonize and write their pid files (read back by down.sh).
running /run/slurmctld.pid || /usr/sbin/slurmctld
running /run/slurmd.pid || /usr/sbin/slurmd

# --- wait for the node ----------------------------------------------------------
state=""
for _ in $(seq "$WAIT_S"); do
    state=$(sinfo -h -N -n "$host" -o '%T' 2>/dev/null || true)
    case $state in
        idle|mixed|allocated) echo "up.sh: SLURM is up; node ${host} is ${state}"; exit 0 ;;
    esac
    sleep 1
done

echo "up.sh: node ${host} not ready after ${WAIT_S}s (state: '${state:-no answer}')" >&2
sinfo -N -l >&2 || true
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
