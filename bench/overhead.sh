#!/usr/bin/env bash
# The worker's cost per job beyond the compile itself (the target: under 5 ms).
#
#   bench/overhead.sh [JOBS] [RUNS]         (default 1000 compiles, 1000 sandbox runs)
#
# Everything measured runs on one CPU (OVERHEAD_CPU, default 1); the driver on another
# (OVERHEAD_HOST_CPU, default 0).
#
# 1. The sandbox alone: the worker's unit test `sandbox::tests::overhead` under
#    `taskset -c CPU`: RUNS pairs, alternating, of `/bin/true` (busybox) spawned plainly in a
#    chroot (fork + chroot + exec) and run by `sandbox::run` as the worker runs a job (every
#    namespace, seccomp, rlimits, an unprivileged user, init as PID 1); median and p95 of
#    each and of the per-pair difference.
#    Then `sandbox::tests::compile_overhead_by_layer` (ignored): a real `gcc -O2 -c` in a
#    job root holding gcc's files, spawned plainly in the chroot and through the sandbox
#    with every layer and with one left out at a time, RUNS/5 rounds, alternating.
#    Then `jobroot::tests::root_cost_by_part` (ignored), RUNS/5 rounds on /var/tmp and on
#    /dev/shm: the checks on paths, a whole root, its toolchain part (a spare root) and
#    its tree part, mkdir/linkat/symlinkat of the toolchain part, removing a root.
# 2. Whole jobs at the worker: the ignored e2e test `soak::overhead` (tests/src/soak.rs):
#    JOBS sequential `gcc -O2 -c` of distinct one-function sources on one connection to a
#    worker (`--slots 1`, OFFLOAD_LOG=offload_worker=debug, pinned with taskset to CPU),
#    after the same compiles run locally, one at a time, also pinned to CPU. From the
#    worker's `job timings` lines: `total_us` (job root + sandboxed compile + harvest) minus
#    the local compile of the same source, per job; `root_us`; and the peer's round trip
#    minus the local compile. The first 20 jobs are left out (the first prepares the
#    toolchain template). The worker's work directory is a tmpfs (as bench/run.sh's is),
#    and so is the local compiles' directory (and their TMPDIR).
#    With SOAK_GAP_MS=N in the environment, each local compile waits N ms after the
#    previous reply, so that the worker's work after a reply (removing the root, making
#    the next spare root) does not land in the local compile that is the baseline.
# 3. The same with the worker's work directory on the disk, as by default
#    (/var/tmp/offload-worker): a directory under /var/tmp bound onto it, and the local
#    compiles in /tmp/offload-e2e on the same file system. Run as root.
set -euo pipefail
JOBS=${1:-1000}
RUNS=${2:-1000}
CPU=${OVERHEAD_CPU:-1}
HOST_CPU=${OVERHEAD_HOST_CPU:-0}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "bench/overhead.sh: run as root" >&2; exit 2; }
cd "$ROOT"
cargo build --release -q -p offload
cargo test --release -q -p offload-worker --lib --no-run
cargo test --release -q -p offload-e2e --test e2e --no-run
echo "bench/overhead.sh: $JOBS jobs, $RUNS sandbox runs, measured on CPU $CPU ($(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg))"
echo
echo "== 1. sandbox::run of /bin/true against a plain chroot spawn (taskset -c $CPU)"
OFFLOAD_OVERHEAD_RUNS=$RUNS taskset -c "$CPU" \
  cargo test --release -q -p offload-worker --lib sandbox::tests::overhead -- --exact --nocapture 2>&1 |
  grep '^overhead'
OFFLOAD_OVERHEAD_RUNS=$((RUNS / 5)) taskset -c "$CPU" \
  cargo test --release -q -p offload-worker --lib sandbox::tests::compile_overhead_by_layer -- --ignored --exact --nocapture 2>&1 |
  grep -E '^(compile_overhead_by_layer|  )'
echo
echo "== 1b. where a job root's time goes (jobroot::tests::root_cost_by_part), on $(df --output=fstype /var/tmp | tail -1) (/var/tmp) and on a tmpfs (/dev/shm)"
for dir in /var/tmp /dev/shm; do
  OFFLOAD_ROOT_BENCH_DIR=$dir OFFLOAD_OVERHEAD_RUNS=$((RUNS / 5)) taskset -c "$CPU" \
    cargo test --release -q -p offload-worker --lib jobroot::tests::root_cost_by_part -- --ignored --exact --nocapture 2>&1 |
    grep -E '^(root_cost_by_part|  )'
done
echo
echo "== 2. whole jobs: the worker's job timings against local compiles (worker and compiles on CPU $CPU)"
OFFLOAD_LOG=offload_worker=debug SOAK_JOBS=$JOBS SOAK_WORKER_CPU=$CPU SOAK_LOCAL_CPU=$CPU taskset -c "$HOST_CPU" \
  cargo test --release -q -p offload-e2e --test e2e -- --ignored --exact soak::overhead --nocapture
echo
echo "== 3. the same, the worker's work directory and the local compiles on $(df --output=fstype /var/tmp | tail -1) (/var/tmp, /tmp)"
OFFLOAD_LOG=offload_worker=debug SOAK_JOBS=$JOBS SOAK_WORKER_CPU=$CPU SOAK_LOCAL_CPU=$CPU \
  SOAK_KEEP_WORK_DIR=1 SOAK_LOCAL_TMPFS=0 taskset -c "$HOST_CPU" \
  cargo test --release -q -p offload-e2e --test e2e -- --ignored --exact soak::overhead --nocapture
