#!/usr/bin/env bash
# A real SLURM cluster on this machine, on loopback, for the SLURM tests: munge, slurmctld and two slurmd
# (node cpu1 in partition "cpu", the default; node gpu1 with one count-only GPU in partition "gpu").
#
#   cluster/local_slurm.sh install   # Debian packages (root): slurmctld slurmd slurm-client munge
#   cluster/local_slurm.sh start     # write /etc/slurm/{slurm,gres}.conf, start the daemons, wait for the nodes
#   cluster/local_slurm.sh stop      # stop the daemons by their PID files
#   cluster/local_slurm.sh status
#
# The config must live at /etc/slurm: the job-step plugin drops SLURM_CONF before its inner srun.
# There is no slurmdbd: Snakemake checks job states with squeue (--slurm-status-command squeue), and
# finished jobs stay visible to squeue/scontrol for MinJobAge seconds.
set -euo pipefail

STATE=${ECRFLOW_SLURM_STATE:-/tmp/ecrflow-slurm}
CONF=/etc/slurm
HOST=$(hostname -s)
CPUS=${ECRFLOW_SLURM_CPUS:-$(nproc)}
MEM=${ECRFLOW_SLURM_MEM_MB:-8000}

need_root() {
  if [ "$(id -u)" != 0 ]; then echo "local_slurm.sh: needs root (it writes /etc/slurm and starts daemons)" >&2; exit 2; fi
}

install() {
  need_root
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge
}

write_conf() {
  mkdir -p "$CONF" "$STATE/state" "$STATE/spool-cpu1" "$STATE/spool-gpu1"
  cat > "$CONF/slurm.conf" <<CONF
# Written by cluster/local_slurm.sh: a two-node test cluster on loopback.
ClusterName=ecrflow
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=16817
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool-%n
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd-%n.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
MpiDefault=none
ReturnToService=2
MinJobAge=7200
KillWait=5
OverTimeLimit=0
InactiveLimit=0
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=cpu1 NodeHostname=$HOST NodeAddr=127.0.0.1 Port=17001 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
NodeName=gpu1 NodeHostname=$HOST NodeAddr=127.0.0.1 Port=17002 CPUs=$CPUS RealMemory=$MEM Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=cpu1 Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=gpu1 MaxTime=INFINITE State=UP
CONF
  # A count-only GPU drains the node; File=/dev/null gives it a device file.
  cat > "$CONF/gres.conf" <<CONF
AutoDetect=off
NodeName=gpu1 Name=gpu File=/dev/null
CONF
}

start() {
  need_root
  for bin in slurmctld slurmd munged sinfo; do
    command -v "$bin" >/dev/null || { echo "local_slurm.sh: $bin not found; run: $0 install" >&2; exit 2; }
  done
  stop >/dev/null 2>&1 || true
  write_conf
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown -R munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge 2>/dev/null || true
  [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null;
                                   chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
  if ! pgrep -x munged >/dev/null; then
    runuser -u munge -- munged
  fi
  slurmctld -i
  slurmd -N cpu1
  slurmd -N gpu1
  for _ in $(seq 1 60); do
    if [ "$(sinfo -h -N -o '%N %t' 2>/dev/null | grep -c -E 'idle|mix|alloc')" = 2 ]; then
      sinfo -N -o '%N %P %t %G'
      return 0
    fi
    sleep 1
  done
  echo "local_slurm.sh: the nodes did not come up; see $STATE/*.log" >&2
  sinfo -N -l >&2 || true
  tail -n 20 "$STATE"/*.log >&2 || true
  exit 1
}

stop() {
  local pid
  for f in "$STATE"/slurmd-*.pid "$STATE"/slurmctld.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"
  done
  echo "stopped"
}

status() {
  sinfo -N -o '%N %P %t %G' && squeue
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
