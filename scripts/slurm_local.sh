#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for trying hydra/launcher=slurm and for the
# integration test (tests/test_slurm.py): Debian's slurm-wlm and munge, every file (config,
# state, logs, munge socket and key) under one folder, daemons running as the current user
# (root). Nothing system-wide is touched; `stop` ends only the daemons `start` started.
#
#   scripts/slurm_local.sh start     # installs slurm-wlm + munge with apt-get when missing
#   export SLURM_CONF=/tmp/prune-bench-slurm/slurm.conf   # printed by start; sbatch, squeue, ...
#   scripts/slurm_local.sh status
#   scripts/slurm_local.sh stop
#
# PRUNE_BENCH_SLURM_DIR picks the folder (default /tmp/prune-bench-slurm), PRUNE_BENCH_SLURM_PORT
# the controller's port (default: the first free pair from 6817 on; the node daemon uses the next).
set -euo pipefail
DIR=${PRUNE_BENCH_SLURM_DIR:-/tmp/prune-bench-slurm}
export SLURM_CONF="$DIR/slurm.conf"

free_port() {  # the first port p >= 6817 with p and p+1 free on this machine
  python3 - <<'PY'
import socket
for port in range(6817, 6917, 2):
    try:
        for p in (port, port + 1):
            with socket.socket() as s:
                s.bind(("127.0.0.1", p))
        print(port)
        break
    except OSError:
        continue
PY
}

install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
    return
  fi
  echo "installing slurm-wlm and munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurm-wlm munge >/dev/null
}

running() {  # is the daemon whose pid file is $1 alive?
  [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

write_config() {
  local host cpus memory
  PORT=${PRUNE_BENCH_SLURM_PORT:-$(free_port)}
  host=$(hostname -s)
  cpus=$(nproc)
  memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))  # half the RAM, in MB
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
  cat > "$SLURM_CONF" <<EOF
# written by scripts/slurm_local.sh: a one-node cluster for tests
ClusterName=prunebench
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge.socket
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobRequeue=1
KillWait=5
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
Waittime=0
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
  install
  if running "$DIR/slurmctld.pid"; then
    echo "SLURM is already running from $DIR"
  else
    write_config
  fi
  if ! running "$DIR/munged.pid"; then
    if [[ ! -f "$DIR/munge.key" ]]; then
      dd if=/dev/urandom of="$DIR/munge.key" bs=1024 count=1 status=none
      chmod 400 "$DIR/munge.key"
    fi
    munged --force --key-file="$DIR/munge.key" --socket="$DIR/munge.socket" \
      --pid-file="$DIR/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munged.seed"
  fi
  running "$DIR/slurmctld.pid" || slurmctld -f "$SLURM_CONF"
  running "$DIR/slurmd.pid" || slurmd -f "$SLURM_CONF"
  for _ in $(seq 60); do  # until the node takes jobs
    if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
      echo "SLURM is up: $(sinfo -h -o '%P %D node(s) %t %c CPUs')"
      echo "export SLURM_CONF=$SLURM_CONF"
      return 0
    fi
    sleep 1
  done
  echo "SLURM did not come up; logs in $DIR/log" >&2
  tail -5 "$DIR"/log/*.log >&2 || true
  return 1
}

stop() {
  for daemon in slurmd slurmctld munged; do
    if running "$DIR/$daemon.pid"; then
      kill "$(cat "$DIR/$daemon.pid")"
    fi
  done
  for _ in $(seq 20); do
    running "$DIR/slurmd.pid" || running "$DIR/slurmctld.pid" || running "$DIR/munged.pid" || { echo "SLURM stopped"; return 0; }
    sleep 0.5
  done
  echo "SLURM daemons still running after 10 s" >&2
  return 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) sinfo && squeue ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
