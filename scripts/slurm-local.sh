#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for cfrun's Slurm tests and benchmarks.
#
# Installs slurmctld, slurmd, slurm-client and munge from the distribution when missing, writes a
# slurm.conf for this host (settings in docs/CLUSTER.md), starts munged, slurmctld and slurmd, and
# waits until `sinfo` shows the node idle. Idempotent: when the cluster already answers, it only
# checks the node is usable. Needs root (apt-get, daemons). Exit 0 when the cluster is up, 3 when
# Slurm cannot be installed here (not root, no apt-get, packages unavailable), 1 when it is
# installed but does not come up.
#
#   scripts/slurm-local.sh          start (or check) the cluster
#   scripts/slurm-local.sh stop     stop the daemons this script started
set -euo pipefail

state=/var/lib/cfrun-slurm
conf_dir=/etc/slurm
node=$(hostname -s)

log() { echo "slurm-local: $*" >&2; }

stop() {
    for d in slurmd slurmctld; do
        if [[ -f $state/$d.pid ]]; then
            kill "$(cat "$state/$d.pid")" 2>/dev/null || true
            rm -f "$state/$d.pid"
        fi
    done
}

if [[ ${1:-} == stop ]]; then
    stop
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    log "needs root (it installs packages and starts daemons)"
    exit 3
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
    || ! command -v munged >/dev/null; then
    if ! command -v apt-get >/dev/null; then
        log "Slurm is not installed and there is no apt-get to install it"
        exit 3
    fi
    log "installing slurmctld slurmd slurm-client munge"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get update -qq || ! apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge >/dev/null; then
        log "apt-get could not install slurmctld slurmd slurm-client munge"
        exit 3
    fi
fi

node_state() { sinfo -h -n "$node" -o %T 2>/dev/null | head -n1 | tr -d '*~#' || true; }

case "$(node_state)" in
idle | mixed | allocated | completing)
    log "cluster already up (node $node $(node_state))"
    exit 0
    ;;
esac

# slurmctld and slurmd find each other by this host's name.
if ! getent hosts "$node" >/dev/null; then
    echo "127.0.0.1 $node" >>/etc/hosts
fi

mkdir -p "$state"/{ctld,spool,log} "$conf_dir"
cpus=$(nproc)
mem_mb=$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
conf=$conf_dir/slurm.conf
cat >"$conf.new" <<CONF
# Written by cfrun's scripts/slurm-local.sh: a one-node cluster for tests.
ClusterName=cfrun-local
SlurmctldHost=$node
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
ReturnToService=2
# Short job turnover: a test cluster runs many tiny jobs.
MinJobAge=300
KillWait=5
SchedulerParameters=sched_min_interval=100000
NodeName=$node CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
mv "$conf.new" "$conf"

# MUNGE: a key of 1,024 random bytes readable by munge only.
if [[ ! -s /etc/munge/munge.key ]]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
chmod 0400 /etc/munge/munge.key
chmod 0700 /etc/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged --force
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi
munge -n | unmunge >/dev/null || { log "munge does not answer"; exit 1; }

running() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
if ! running "$state/slurmctld.pid"; then
    log "starting slurmctld"
    slurmctld -i
fi
for _ in $(seq 100); do scontrol ping >/dev/null 2>&1 && break; sleep 0.2; done
if ! running "$state/slurmd.pid"; then
    log "starting slurmd"
    slurmd
fi

for _ in $(seq 150); do
    case "$(node_state)" in
    idle | mixed | allocated) log "cluster up: node $node $(node_state), $cpus CPUs, ${mem_mb} MB"; exit 0 ;;
    down | drained | draining | fail)
        scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 0.2
done
log "node $node did not become idle; sinfo says:"
sinfo >&2 || true
tail -n 20 "$state"/log/*.log >&2 || true
exit 1
