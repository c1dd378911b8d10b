#!/usr/bin/env bash
# A single-node SLURM cluster for CI: slurmctld + slurmd + slurmdbd (MariaDB) on this machine,
# with partitions named as in profiles/slurm/cluster.yaml and fake GPUs declared as gres
# (gpu:h100:2,gpu:h200:1; each File= is a symlink to /dev/null). Needs root and Debian.
#
#   bash .ci/slurm/start.sh     # install if needed, start, wait until the node is idle
#   bash .ci/slurm/stop.sh      # stop every daemon started here, by its pid file
#
# State, logs and pid files live in $CROSSPROBE_SLURM_ROOT (default /tmp/crossprobe-slurm).
# slurm.conf must be /etc/slurm/slurm.conf: the jobstep plugin strips SLURM_CONF before srun.
set -euo pipefail

ROOT=${CROSSPROBE_SLURM_ROOT:-/tmp/crossprobe-slurm}
CLUSTER=crossprobe
ACCOUNT=${CROSSPROBE_SLURM_ACCOUNT:-crossprobe}
CPU_PARTITION=${CROSSPROBE_CPU_PARTITION:-cpu}
GPU_PARTITION=${CROSSPROBE_GPU_PARTITION:-gpu}
# The node declares more CPUs and memory than this machine has (SlurmdParameters=config_overrides)
# so that jobs sized for a real cluster are accepted; tiny CI models use a fraction of it.
NODE_CPUS=${CROSSPROBE_SLURM_CPUS:-4}
NODE_MEM_MB=${CROSSPROBE_SLURM_MEM_MB:-2000000}
NODE=$(hostname -s)

log() { echo "slurm-ci: $*" >&2; }

alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

if alive "$ROOT/slurmctld.pid" && alive "$ROOT/slurmd.pid" && sinfo -h >/dev/null 2>&1; then
    log "already running ($ROOT)"
    exit 0
fi

# ---------------------------------------------------------------- packages
if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null \
    || ! command -v mariadbd >/dev/null || ! command -v munged >/dev/null; then
    log "installing slurm-wlm, munge, slurmdbd, mariadb-server"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge slurmdbd mariadb-server >/dev/null
fi

mkdir -p "$ROOT"/{state,spool,fakedev,mysql,mysql-run}
chmod 755 "$ROOT"

# ---------------------------------------------------------------- munge
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    mungekey -c -k /etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge
chmod 0400 /etc/munge/munge.key
chmod 0755 /run/munge
if ! alive /run/munge/munged.pid; then
    runuser -u munge -- /usr/sbin/munged
fi

# ---------------------------------------------------------------- MariaDB (for slurmdbd)
mkdir -p /run/mysqld
chown mysql:mysql /run/mysqld "$ROOT/mysql" "$ROOT/mysql-run"
if [[ ! -d $ROOT/mysql/mysql ]]; then
    mariadb-install-db --user=mysql --datadir="$ROOT/mysql" >"$ROOT/mariadb-install.log" 2>&1
fi
if ! alive "$ROOT/mysql-run/mariadbd.pid"; then
    runuser -u mysql -- mariadbd --datadir="$ROOT/mysql" --skip-networking \
        --socket=/run/mysqld/mysqld.sock --pid-file="$ROOT/mysql-run/mariadbd.pid" \
        --log-error="$ROOT/mysql-run/mariadbd.log" >/dev/null 2>&1 &
    for _ in $(seq 100); do
        mariadb -e 'select 1' >/dev/null 2>&1 && break
        sleep 0.2
    done
fi
mariadb -e 'select 1' >/dev/null

# ---------------------------------------------------------------- configuration
mkdir -p /etc/slurm
cat >/etc/slurm/slurmdbd.conf <<CONF
# Written by .ci/slurm/start.sh
DbdHost=localhost
SlurmUser=root
AuthType=auth/munge
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
PidFile=$ROOT/slurmdbd.pid
LogFile=$ROOT/slurmdbd.log
CONF
chmod 600 /etc/slurm/slurmdbd.conf

for i in 0 1 2; do ln -sfn /dev/null "$ROOT/fakedev/nvidia$i"; done
cat >/etc/slurm/gres.conf <<CONF
# Written by .ci/slurm/start.sh: fake GPUs (symlinks to /dev/null).
AutoDetect=off
NodeName=$NODE Name=gpu Type=h100 File=$ROOT/fakedev/nvidia0
NodeName=$NODE Name=gpu Type=h100 File=$ROOT/fakedev/nvidia1
NodeName=$NODE Name=gpu Type=h200 File=$ROOT/fakedev/nvidia2
CONF

cat >/etc/slurm/slurm.conf <<CONF
# Written by .ci/slurm/start.sh: a single-node cluster for CI.
ClusterName=$CLUSTER
SlurmctldHost=$NODE
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$ROOT/state
SlurmdSpoolDir=$ROOT/spool
SlurmctldPidFile=$ROOT/slurmctld.pid
SlurmdPidFile=$ROOT/slurmd.pid
SlurmctldLogFile=$ROOT/slurmctld.log
SlurmdLogFile=$ROOT/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu,gres/gpu:h100,gres/gpu:h200
JobAcctGatherType=jobacct_gather/none
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
MinJobAge=300
DefMemPerCPU=1000
KillWait=5
InactiveLimit=0
SchedulerParameters=sched_min_interval=100000,bf_interval=5
NodeName=$NODE CPUs=$NODE_CPUS RealMemory=$NODE_MEM_MB Gres=gpu:h100:2,gpu:h200:1 State=UNKNOWN
# Backfill reserves whole nodes for pending jobs, so on one node a GPU job waiting for a GPU
# would hold back every CPU job; the CPU partition is therefore scheduled first.
PartitionName=$CPU_PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP PriorityTier=2
PartitionName=$GPU_PARTITION Nodes=$NODE MaxTime=INFINITE State=UP PriorityTier=1
CONF

# ---------------------------------------------------------------- daemons
if ! alive "$ROOT/slurmdbd.pid"; then
    slurmdbd
    for _ in $(seq 100); do
        sacctmgr -n list cluster >/dev/null 2>&1 && break
        sleep 0.2
    done
fi
if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
fi
if ! sacctmgr -n -P list account format=account | grep -qx "$ACCOUNT"; then
    sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" >/dev/null
    sacctmgr -i add user root account="$ACCOUNT" cluster="$CLUSTER" >/dev/null
fi

# -c: start from an empty job table. A controller that recovered the jobs of an earlier cluster
# in $ROOT (say, one whose session ended while jobs ran) would run them again or let them reach
# TIMEOUT in the middle of this run.
alive "$ROOT/slurmctld.pid" || slurmctld -c -i
alive "$ROOT/slurmd.pid" || slurmd

for _ in $(seq 150); do
    state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null | head -n1 || true)
    case $state in
    idle* | mixed* | allocated*) break ;;
    drain* | down*) scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;;
    esac
    sleep 0.2
done
state=$(sinfo -h -n "$NODE" -o %T | head -n1)
case $state in
idle* | mixed* | allocated*) log "node $NODE $state; partitions $CPU_PARTITION, $GPU_PARTITION; account $ACCOUNT" ;;
*)
    log "node $NODE is $state; see $ROOT/slurmctld.log and $ROOT/slurmd.log"
    exit 1
    ;;
esac
