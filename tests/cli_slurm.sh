#!/bin/sh
# cli_slurm.sh: a sweep through a real Slurm cluster equals the same sweep without it.
#
# Starts a one-node cluster on this machine, all of it in a temporary directory: munged on
# its own key and socket, slurmctld and slurmd (-D, in the background) from a slurm.conf
# written here (ports free now, the node's real CPUs and memory from `slurmd -C`,
# proctrack/linuxproc, task/none, no cgroups, no accounting). Waits until sinfo shows the
# node idle, runs a tiny sweep (two BN-only runs, 1 epoch, 200 images) with make -j2 and
# RUN="srun -N1 -n1", runs the same sweep without RUN, compares the checkpoints byte for
# byte, checks the steps really went through slurmd, and shuts the cluster down (trap).
# Also: two ranks of net-train through `srun -n2 --mpi=pmix` (when the MPI build and the
# pmix plugin are there) equal mpirun's. Skips with the reason where Slurm is missing.
. "$(dirname "$0")/lib.sh"
# Open MPI's plugins leak at exit in ways LeakSanitizer cannot be told about: under the
# sanitizer build (make test-asan) keep ASan's other checks, drop leak detection here.
[ -n "${BN_SANITIZED:-}" ] && export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0"

for p in net-train net-init net-freeze cifar-synth; do
  [ -x "$BIN/$p" ] || { t_skip "all" "$p not built"; t_done; exit; }
done
missing=""
for p in slurmctld slurmd munged srun sinfo scontrol make; do
  command -v "$p" >/dev/null 2>&1 || [ -x "/usr/sbin/$p" ] || missing="$missing $p"
done
[ -z "$missing" ] || { t_skip "all" "Slurm not installed (missing:$missing; make deps installs slurm-wlm and munge)"; t_done; exit; }
[ "$(id -u)" -eq 0 ] || { t_skip "all" "slurmd must run as root to launch job steps (running as $(id -un))"; t_done; exit; }
PATH="$PATH:/usr/sbin:/sbin"

# Nothing of an enclosing Slurm job may leak into ours (srun would join that job).
for v in $(env | sed -n 's/^\(SLURM_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
S="$T/slurm"
mkdir -p "$S/munge" "$S/state" "$S/spool" "$S/log"
chmod 755 "$T" "$S"          # munged wants its socket's directories traversable
PIDS=""
cleanup() {
  for p in $PIDS; do kill "$p" 2>/dev/null; done
  for p in $PIDS; do   # up to 10 s for each to go, then for good
    i=0; while kill -0 "$p" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
    kill -9 "$p" 2>/dev/null
  done
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fail_all() { t_fail "$1" "$2"; t_done; exit 1; }
logs() { for f in "$S"/log/*; do echo "[$(basename "$f")] $(tail -n 3 "$f" | tr '\n' ' ')"; done | head -c 900; }

# ---- munge ---------------------------------------------------------------------------------
dd if=/dev/urandom of="$S/munge/munge.key" bs=1024 count=1 2>/dev/null
chmod 400 "$S/munge/munge.key"
SOCK="$S/munge/munge.sock"
munged -F -f --key-file="$S/munge/munge.key" --socket="$SOCK" --pid-file="$S/munge/munged.pid" \
  --log-file="$S/log/munged.log" --seed-file="$S/munge/munged.seed" >"$S/log/munged.out" 2>&1 &
PIDS="$!"
i=0; while [ ! -S "$SOCK" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
if munge -S "$SOCK" -n 2>/dev/null | unmunge -S "$SOCK" >/dev/null 2>&1; then t_ok "munged on its own socket"
else fail_all "munged" "$(logs)"; fi

# ---- slurm.conf ----------------------------------------------------------------------------
set -- $("$PY" -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))')
CTLD_PORT=$1 SLURMD_PORT=$2
NODE=$(hostname -s)
CPUS=$(slurmd -C | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' | head -n 1)
MEM=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n 1)
cat >"$S/slurm.conf" <<EOF
# written by tests/cli_slurm.sh: a one-node test cluster on localhost
ClusterName=bntest
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
AuthInfo=socket=$SOCK
CredType=cred/munge
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=${CPUS:-1} RealMemory=${MEM:-1000} State=UNKNOWN
PartitionName=bntest Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$S/slurm.conf"

# ---- slurmctld + slurmd --------------------------------------------------------------------
slurmctld -D -i >"$S/log/slurmctld.out" 2>&1 &
PIDS="$! $PIDS"
slurmd -D -N "$NODE" >"$S/log/slurmd.out" 2>&1 &
PIDS="$! $PIDS"
i=0; state=""
while [ $i -lt 300 ]; do     # up to 30 s
  state=$(sinfo -h -n "$NODE" -o %t 2>/dev/null | head -n 1)
  [ "$state" = "idle" ] && break
  sleep 0.1; i=$((i+1))
done
[ "$state" = "idle" ] || fail_all "cluster up (sinfo: node idle)" "node state '$state'; $(logs)"
t_ok "one-node cluster up: sinfo shows $NODE idle"
expect "srun runs a step" 0 srun -N1 -n1 true

# ---- the sweep -----------------------------------------------------------------------------
# A tiny sweep in the shape of the pipelines (RUN prefixes each training command; outputs
# under RUNS): init | freeze BN-only | $(RUN) net-train, one run per seed.
cifar-synth --count 200 --seed 9 --pattern gradient -o "$T/data.ds" 2>/dev/null
cat >"$T/sweep.mk" <<'EOF'
RUN   ?=
RUNS  ?= runs
SEEDS ?= 1 2
all: $(SEEDS:%=$(RUNS)/bnonly-s%.ckpt)
$(RUNS)/bnonly-s%.ckpt:
	@mkdir -p $(@D)
	$(BIN)/net-init --depth 8 --width 4 --seed $* 2>/dev/null | $(BIN)/net-freeze --train bn 2>/dev/null | \
	  $(RUN) $(BIN)/net-train --train $(DATA) --epochs 1 --batch 100 --device ref --threads 1 -o $@.tmp
	mv $@.tmp $@
EOF
steps0=$(grep -c "launch task StepId" "$S/log/slurmd.log" 2>/dev/null)
SWEEP="make -s -f $T/sweep.mk BIN=$BIN DATA=$T/data.ds"
(cd "$T" && $SWEEP -j2 RUNS="$T/slurm-runs" RUN="srun -N1 -n1") >"$T/sweep.out" 2>&1
rc=$?
[ $rc -eq 0 ] && t_ok "sweep through srun (make -j2 RUN='srun -N1 -n1')" || t_fail "sweep through srun" "exit $rc: $(tail -c 400 "$T/sweep.out")"
steps1=$(grep -c "launch task StepId" "$S/log/slurmd.log" 2>/dev/null)
check "slurmd launched the sweep's 2 steps" test "$((steps1 - steps0))" -eq 2
(cd "$T" && $SWEEP -j2 RUNS="$T/plain-runs") >"$T/plain.out" 2>&1
rc=$?
[ $rc -eq 0 ] && t_ok "the same sweep without Slurm" || t_fail "sweep without Slurm" "exit $rc: $(tail -c 400 "$T/plain.out")"
for s in 1 2; do
  check "seed $s: checkpoint through Slurm = without" cmp "$T/slurm-runs/bnonly-s$s.ckpt" "$T/plain-runs/bnonly-s$s.ckpt"
done
check "the two seeds differ (the comparison can fail)" sh -c "! cmp -s '$T/plain-runs/bnonly-s1.ckpt' '$T/plain-runs/bnonly-s2.ckpt'"

# ---- data parallel through srun (PMIx) -----------------------------------------------------
if ! command -v mpirun >/dev/null 2>&1; then
  t_skip "srun --mpi=pmix net-train" "no MPI (mpirun) here"
elif ! srun --mpi=list 2>&1 | grep -q pmix; then
  t_skip "srun --mpi=pmix net-train" "this Slurm has no pmix plugin"
else
  net-init --depth 8 --width 4 --seed 1 2>/dev/null | net-freeze --train bn -o "$T/bn.ck" 2>/dev/null
  TR="--train $T/data.ds --epochs 1 --batch 100 --device ref --threads 1"
  srun -N1 -n2 --mpi=pmix net-train "$T/bn.ck" $TR -o "$T/srun2.ck" >"$T/out" 2>"$T/err"
  rc=$?
  if [ $rc -ne 0 ] && grep -q "has no MPI" "$T/err"; then t_skip "srun --mpi=pmix net-train" "built without MPI"
  else
    [ $rc -eq 0 ] && grep -q "2 ranks (mpi)" "$T/err" && t_ok "srun -n2 --mpi=pmix: net-train as 2 ranks" ||
      t_fail "srun -n2 --mpi=pmix net-train" "exit $rc: $(tail -c 300 "$T/err")"
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
      mpirun -np 2 --oversubscribe --bind-to none net-train "$T/bn.ck" $TR -o "$T/mpirun2.ck" >/dev/null 2>&1
    check "2 ranks under srun = 2 ranks under mpirun" cmp "$T/srun2.ck" "$T/mpirun2.ck"
  fi
  expect_err "srun -n2 without MPI wiring: refused" 1 "no MPI wiring" \
    srun -N1 -n2 --mpi=none net-train "$T/bn.ck" $TR -o "$T/no.ck"
fi

# ---- shut down -----------------------------------------------------------------------------
scontrol shutdown >/dev/null 2>&1
i=0; while [ $i -lt 100 ] && sinfo >/dev/null 2>&1; do sleep 0.1; i=$((i+1)); done
check "cluster shut down (scontrol shutdown)" sh -c "! sinfo >/dev/null 2>&1"
t_done
