#!/usr/bin/env bash
# A real Slurm test of eqaug's cluster path, on this machine (called by .ci/run; needs root):
#
#  1. installs Debian's slurm-wlm and munge if they are missing (apt-get);
#  2. builds the release eqaug;
#  3. starts a one-node cluster of its own (munged on a private socket, slurmctld, slurmd on
#     ports 16817/16818 unless EQAUG_SLURM_PORT is set; state and logs in a temporary folder);
#  4. writes the sbatch script with `eqaug slurm` for tests/slurm/tiny.toml (8 runs) and
#     submits it as an array of 4 tasks into ONE output folder, then the same script with
#     `--array=0-6:2` (a stepped array) into another; several tasks run at once; then the
#     script of the E5 experiment tests/slurm/tiny-e5.toml (3 runs) as an array of 3 tasks
#     into the first folder (a folder with both kinds of experiment);
#  5. waits (bounded), checks with `eqaug status` that every run finished, builds the report,
#     compares every run's metrics.csv (E5: every table) byte for byte with an unsharded
#     `eqaug run`, and submits the first script again (resume: every run is skipped);
#  6. stops the daemons it started (trap), by their process ids.
#
# The last line is the summary: `slurm test: PASS ...` or `slurm test: FAIL ...`.
# EQAUG_SLURM_KEEP=1 keeps the temporary folder.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CONFIG="$ROOT/tests/slurm/tiny.toml"
E5_CONFIG="$ROOT/tests/slurm/tiny-e5.toml"
PROFILE=ci
EXP=tiny
E5_EXP=tiny-e5
RUNS=8
E5_RUNS=3
PORT="${EQAUG_SLURM_PORT:-16817}"
START=$SECONDS
WORK=""
PIDS=()

fail() {
    echo "slurm test: FAIL: $* (after $((SECONDS - START)) s; logs in ${WORK:-nowhere})"
    if [[ -n "$WORK" ]]; then
        EQAUG_SLURM_KEEP=1
        for f in "$WORK"/slurmctld.log "$WORK"/slurmd.log "$WORK"/out*/slurm-logs/*.out; do
            [[ -f "$f" ]] && { echo "--- tail $f"; tail -n 15 "$f"; }
        done
    fi
    exit 1
}

cleanup() {
    local rc=$?
    if [[ -n "${SLURM_CONF:-}" ]] && command -v scancel >/dev/null; then
        scancel --quiet --user=root 2>/dev/null || true
    fi
    # Stop what we started, newest first, by pid.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill "${PIDS[i]}" 2>/dev/null || true
    done
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        for _ in $(seq 1 50); do
            kill -0 "${PIDS[i]}" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "${PIDS[i]}" 2>/dev/null || true
    done
    if [[ -n "$WORK" && "${EQAUG_SLURM_KEEP:-0}" != 1 ]]; then
        rm -rf "$WORK"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ $(id -u) == 0 ]] || fail "needs root (it installs packages and starts slurmd as root)"

# 1. Packages.
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    echo "slurm test: installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null || fail "apt-get update failed"
    apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null \
        || fail "apt-get install slurm-wlm munge failed"
fi

# 2. The release binary.
echo "slurm test: building eqaug (release)"
(cd "$ROOT" && cargo build --release -q -p eqaug-harness --bin eqaug) || fail "cargo build failed"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ "$TARGET" = /* ]] || TARGET="$ROOT/$TARGET"
EQAUG="$TARGET/release/eqaug"
[[ -x "$EQAUG" ]] || fail "no binary at $EQAUG"

# 3. A one-node cluster of our own.
WORK="$(mktemp -d /tmp/eqaug-slurm.XXXXXX)"
chmod 755 "$WORK"
mkdir -m 755 "$WORK/munge"
mkdir -p "$WORK/state" "$WORK/spool"
dd if=/dev/urandom of="$WORK/munge.key" bs=1024 count=1 status=none
chmod 400 "$WORK/munge.key"
SOCK="$WORK/munge/socket"
munged -F --socket="$SOCK" --key-file="$WORK/munge.key" --log-file="$WORK/munged.log" \
    --pid-file="$WORK/munge/munged.pid" --seed-file="$WORK/munge/seed" \
    >"$WORK/munged.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 50); do [[ -S "$SOCK" ]] && break; sleep 0.1; done
[[ -S "$SOCK" ]] || fail "munged did not start: $(tail -n 3 "$WORK/munged.out")"

HOST="$(hostname -s)"
CPUS="$(nproc)"
MEM_MB="$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)"
export SLURM_CONF="$WORK/slurm.conf"
cat >"$SLURM_CONF" <<EOF
ClusterName=eqaugtest
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCK
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/slurmctld.log
SlurmdLogFile=$WORK/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
KillWait=5
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=eqaug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
slurmctld -D -i -f "$SLURM_CONF" >"$WORK/slurmctld.out" 2>&1 &
PIDS+=($!)
slurmd -D -f "$SLURM_CONF" -N "$HOST" >"$WORK/slurmd.out" 2>&1 &
PIDS+=($!)
state=""
for _ in $(seq 1 60); do
    state="$(sinfo -h -o %T 2>/dev/null | head -n 1 || true)"
    [[ "$state" == idle ]] && break
    sleep 0.5
done
[[ "$state" == idle ]] || fail "the node did not come up (state '${state:-none}')"
echo "slurm test: cluster up on $HOST ($CPUS CPUs) after $((SECONDS - START)) s"

# The unsharded reference, outside Slurm.
(
    unset "${!SLURM_@}"
    "$EQAUG" run "$CONFIG" --profile "$PROFILE" --out "$WORK/ref" 2>"$WORK/ref.log"
    "$EQAUG" run "$E5_CONFIG" --profile "$PROFILE" --out "$WORK/ref" 2>>"$WORK/ref.log"
) || fail "unsharded eqaug run failed: $(tail -n 3 "$WORK/ref.log")"

# 4. Job arrays into one folder each.
MAXRUNNING=0
# Submits $1 (extra sbatch options in the rest) and waits for the whole array to leave the
# queue, recording the most tasks seen running at once.
submit_and_wait() {
    local script=$1
    shift
    local job
    job="$(sbatch --parsable "$@" "$script")" || fail "sbatch $script failed"
    job="${job%%;*}"
    local deadline=$((SECONDS + 120)) running queued
    while :; do
        queued="$(squeue -h -j "$job" 2>/dev/null | wc -l)"
        running="$(squeue -h -j "$job" -t RUNNING 2>/dev/null | wc -l)"
        ((running > MAXRUNNING)) && MAXRUNNING=$running
        ((queued == 0)) && break
        ((SECONDS < deadline)) || fail "job $job still queued or running after 120 s"
        sleep 0.3
    done
}

"$EQAUG" slurm "$CONFIG" --profile "$PROFILE" --array 4 --cpus 1 --time 10:00 \
    --out "$WORK/out" --write "$WORK/job.sbatch" 2>/dev/null || fail "eqaug slurm failed"
"$EQAUG" slurm "$CONFIG" --profile "$PROFILE" --array 4 --cpus 1 --time 10:00 \
    --out "$WORK/out-stepped" --write "$WORK/job-stepped.sbatch" 2>/dev/null \
    || fail "eqaug slurm failed"
"$EQAUG" slurm "$E5_CONFIG" --profile "$PROFILE" --array 3 --cpus 1 --time 10:00 \
    --out "$WORK/out" --write "$WORK/job-e5.sbatch" 2>/dev/null || fail "eqaug slurm (E5) failed"
submit_and_wait "$WORK/job.sbatch"
FIRST_MAX=$MAXRUNNING
submit_and_wait "$WORK/job-stepped.sbatch" --array=0-6:2
submit_and_wait "$WORK/job-e5.sbatch"

# 5. Every run finished, the report builds, the metrics are those of the unsharded run.
for out in out out-stepped; do
    status="$("$EQAUG" status "$WORK/$out" 2>&1)" \
        || fail "eqaug status $out: exit $?: $(echo "$status" | tail -n 4)"
    last="$(echo "$status" | tail -n 1)"
    if [[ $out == out ]]; then
        want="$((RUNS + E5_RUNS)) of $((RUNS + E5_RUNS)) runs finished, 0 running, 0 failed, 0 corrupt, 0 missing (2 experiments)"
    else
        want="$RUNS of $RUNS runs finished, 0 running, 0 failed, 0 corrupt, 0 missing (1 experiment)"
    fi
    [[ "$last" == "eqaug status: $want" ]] || fail "$out: $last"
    "$EQAUG" report "$WORK/$out" --out "$WORK/$out-report" >"$WORK/$out-report.log" 2>&1 \
        || fail "eqaug report $out failed: $(tail -n 3 "$WORK/$out-report.log")"
    [[ -s "$WORK/$out-report/report.md" || -n "$(ls "$WORK/$out-report" 2>/dev/null)" ]] \
        || fail "eqaug report wrote nothing for $out"
    for r in $(seq 0 $((RUNS - 1))); do
        run="$(printf 'run-%03d' "$r")"
        cmp -s "$WORK/ref/$EXP/$run/metrics.csv" "$WORK/$out/$EXP/$run/metrics.csv" \
            || fail "$out/$EXP/$run/metrics.csv differs from the unsharded run"
    done
done
for r in $(seq 0 $((E5_RUNS - 1))); do
    run="$(printf 'run-%03d' "$r")"
    for f in phase1-cross/epochs.csv phase1-skew/epochs.csv cross/steps.csv skew/steps.csv \
        cross/epochs.csv skew/epochs.csv; do
        cmp -s "$WORK/ref/$E5_EXP/$run/$f" "$WORK/out/$E5_EXP/$run/$f" \
            || fail "out/$E5_EXP/$run/$f differs from the unsharded run"
    done
done
grep -q "shard 3/3" "$WORK"/out/slurm-logs/eqaug-tiny-e5-*.out \
    || fail "the E5 array did not map a task to shard 3/3"
grep -q "shard 4/4" "$WORK"/out-stepped/slurm-logs/*.out \
    || fail "the stepped array did not map a task to shard 4/4"

# Resume: the same script again trains nothing.
submit_and_wait "$WORK/job.sbatch"
grep -h "already done" "$WORK"/out/slurm-logs/*.out >/dev/null \
    || fail "the resubmitted array did not report finished runs as done"
"$EQAUG" status -q "$WORK/out" >/dev/null || fail "eqaug status after the resubmission"

((FIRST_MAX >= 2)) || fail "at most $FIRST_MAX array task ran at a time (want several at once)"
echo "slurm test: PASS: arrays 0-3 and 0-6:2 (up to $MAXRUNNING tasks at once) each wrote $RUNS of $RUNS runs into one folder, an E5 array of 3 wrote $E5_RUNS of $E5_RUNS runs into the first, metrics byte-identical to unsharded runs, reports built, resubmission skipped every run ($((SECONDS - START)) s)"
