#!/usr/bin/env bash
# Benchmarks offload on this machine: one host core against one worker core.
#
#   bench/run.sh [RUNS]            (default 3 runs per measurement; the median is reported)
#
# For each real project (lua 5.4.7 and zstd 1.5.7 sources, fetched by cargo), in one run:
#   local -j1   : taskset -c 0 make -j1                      (the baseline, 1.00x)
#   offload     : taskset -c 0 offload build --worker W -j1 -- make -j16
#                 with the worker pinned to core 1 (taskset -c 1 offload worker --slots 1),
#                 in its own mount namespace with a private /tmp; "cold" is its first build
#                 (empty store, toolchain not prepared), "warm" the median of RUNS more
# and the per-job overhead on a trivial translation unit: 100 sequential compiles, local
# against remote on a warm worker; (offload - local) / 100.
# Results are printed as a Markdown table; docs/BENCHMARKS.md records them.
set -euo pipefail
RUNS=${1:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$(mktemp -d /tmp/offload-bench.XXXXXX)
. "$ROOT/bench/lib.sh"
bench_setup

# --- sources, fetched by cargo (never copied into the repository) ---
. "$ROOT/bench/sources.sh"
bench_sources "$B"
printf 'int answer(void) { return 42; }\n' > "$B/trivial.c"

echo "| build | local -j1 (s) | offload, cold worker (s) | speed-up cold | offload, warm worker (s) | speed-up warm | remote/total |"
echo "|---|---|---|---|---|---|---|"
for p in lua zstd; do
  cd "$B/$p"
  loc=(); warm=()
  for _ in $(seq "$RUNS"); do
    make -s clean; loc+=("$(secs taskset -c 0 make -s -j1 CC=gcc)")
  done
  # cold: a fresh worker (empty store, toolchain not yet prepared); warm: the same worker again
  make -s clean; start_worker
  cold=$(secs taskset -c 0 "$O" build --no-discover --worker "$W" -j1 -- make -s -j16 CC=gcc)
  for _ in $(seq "$RUNS"); do
    make -s clean
    warm+=("$(secs taskset -c 0 "$O" build --no-discover --worker "$W" -j1 -- make -s -j16 CC=gcc)")
    summary=$(grep '^offload:' "$B/last.err" | tail -1)
  done
  stop_worker
  l=$(printf '%s\n' "${loc[@]}" | median); w=$(printf '%s\n' "${warm[@]}" | median)
  remote=$(echo "$summary" | sed -E 's/.*: ([0-9]+) compiler calls: ([0-9]+) remote.*/\2\/\1/')
  printf '| %s | %.2f | %.2f | %.2fx | %.2f | %.2fx | %s |\n' "$p" "$l" "$cold" "$(echo "$l / $cold" | bc -l)" \
    "$w" "$(echo "$l / $w" | bc -l)" "$remote"
done

cd "$B"
N=100
loop="for i in \$(seq $N); do gcc -c trivial.c -o trivial.o; done"
start_worker
# Warm-up (not timed): the worker prepares its toolchain template on its first job, and a
# scan is only kept for files that did not change in the second before it.
sleep 1.1
secs taskset -c 0 "$O" build --no-discover --worker "$W" -j1 -- gcc -c trivial.c -o trivial.o >/dev/null
tl=$(secs taskset -c 0 sh -c "$loop")
to=$(secs taskset -c 0 "$O" build --no-discover --worker "$W" -j1 -- sh -c "$loop")
grep '^offload:' "$B/last.err" | tail -1 >&2
stop_worker
printf '\nTrivial translation unit, %d sequential compiles: local %.1f ms/job, through offload %.1f ms/job, overhead %.1f ms/job\n' \
  "$N" "$(echo "$tl * 1000 / $N" | bc -l)" "$(echo "$to * 1000 / $N" | bc -l)" "$(echo "($to - $tl) * 1000 / $N" | bc -l)"
