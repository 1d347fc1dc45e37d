#!/usr/bin/env bash
# The long soak: many small real compiles against one worker that is SIGKILLed and started
# again every so many jobs, with its RSS and open descriptors sampled as it goes.
#
#   bench/soak.sh [JOBS] [RESTART_EVERY] [CONNECTIONS]     (default 10000 1000 2)
#
# It runs the driver of the CI soak (tests/src/soak.rs, `offload_e2e::soak`) at this size,
# through the ignored e2e test `soak::long`: a worker in its own network and mount
# namespace (`offload worker --slots 2`, its work directory kept across restarts), CONNECTIONS
# raw-frame peers at once (each reconnecting every 50 jobs), job N compiling
# `int f_N(void) { return N; }` with `gcc -O2 -c`, every object compared with a local
# compile of the same source at the same path (all made first), a job cut by a restart sent
# again on a new connection. Every 25 jobs it stops handing out jobs, lets the worker settle
# and reads /proc/PID/status (VmRSS, Threads) and /proc/PID/fd. It prints one row per worker
# lifetime (first/last means after warm-up, maxima), lost/duplicated/cut counts and the
# violations of the flatness bounds (RSS +20 MiB, descriptors +4 per lifetime), and fails
# if there are any. RESTART_EVERY=0 never restarts (one lifetime of JOBS jobs).
#
# Other sizes come from the environment, passed through: SOAK_JOBS_PER_CONNECTION (50),
# SOAK_SAMPLE_EVERY (25), SOAK_WARMUP_SAMPLES (4), SOAK_WINDOW (8), SOAK_SLOTS (2),
# SOAK_KEEP_WORK_DIR (1), SOAK_WORKER_CPU, SOAK_LOCAL_CPU (none), SOAK_DISTINCT (0: every job
# its own source, so the worker's store gains a blob per job; D: job N compiles source N % D,
# the store stops growing after D jobs). Run as root.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "bench/soak.sh: run as root (the worker chroots each job; the test makes network namespaces)" >&2; exit 2; }
export SOAK_JOBS=${1:-10000} SOAK_RESTART_EVERY=${2:-1000} SOAK_CONNECTIONS=${3:-2}
cd "$ROOT"
cargo build --release -q -p offload
cargo test --release -q -p offload-e2e --test e2e --no-run
echo "bench/soak.sh: $SOAK_JOBS jobs, a restart every $SOAK_RESTART_EVERY, $SOAK_CONNECTIONS connections ($(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg))"
cargo test --release -q -p offload-e2e --test e2e -- --ignored --exact soak::long --nocapture
