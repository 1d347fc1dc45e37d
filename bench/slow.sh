#!/usr/bin/env bash
# What a worker much slower than the host costs a build (issue 15: at most 5%).
#
#   bench/slow.sh [RUNS] [SHARE]     (default 3 runs, the median reported; SHARE=0.1)
#
# Lua 5.4.7's sources (fetched by cargo) on the 1+1 split: the host on core 0, a worker on
# core 1 held to SHARE of that core by a cgroup CPU quota (0.1: about ten times slower
# than the host), alternating run by run:
#   local      : taskset -c 0 make -s -j1
#   offload    : taskset -c 0 offload build --worker W -j1 -- make -s -j16
# and, for reference, the same worker at full speed. Reported: each time, and offload's
# time against the local one (the target: at most 1.05 with the slow worker).
set -euo pipefail
RUNS=${1:-3}
SHARE=${2:-0.1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$(mktemp -d /tmp/offload-bench.XXXXXX)
. "$ROOT/bench/lib.sh"
bench_setup
. "$ROOT/bench/sources.sh"
bench_sources "$B"

# The worker's CPU quota: cgroup v2 where mounted, else v1's cpu controller.
if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
  CG=/sys/fs/cgroup/offload-bench-slow; CGROOT=/sys/fs/cgroup
  echo +cpu > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
  limit() { echo "$1 100000" > "$CG/cpu.max"; }
  unlimit() { echo "max 100000" > "$CG/cpu.max"; }
else
  CG=/sys/fs/cgroup/cpu/offload-bench-slow; CGROOT=/sys/fs/cgroup/cpu
  limit() { echo 100000 > "$CG/cpu.cfs_period_us"; echo "$1" > "$CG/cpu.cfs_quota_us"; }
  unlimit() { echo -1 > "$CG/cpu.cfs_quota_us"; }
fi
mkdir -p "$CG"
cg_cleanup() {
  for p in $(cat "$CG/cgroup.procs" 2>/dev/null); do echo "$p" > "$CGROOT/cgroup.procs" 2>/dev/null || true; done
  rmdir "$CG" 2>/dev/null || true
  bench_cleanup
}
trap cg_cleanup EXIT
quota=$(printf '%.0f' "$(echo "$SHARE * 100000" | bc -l)")

start_worker
echo "$WPID" > "$CG/cgroup.procs"
cd "$B/lua"
# Warm-up (not timed): the worker's toolchain, the probe, its store, at full speed.
make -s clean && "$O" build --no-discover --worker "$W" -j1 -- make -s -j16 CC=gcc >/dev/null 2>&1
declare -A t
for run in $(seq "$RUNS"); do
  make -s clean
  t[local]+="$(secs taskset -c 0 make -s -j1 CC=gcc) "
  limit "$quota"
  make -s clean
  t[slow]+="$(secs taskset -c 0 "$O" build --no-discover --worker "$W" -j1 -- make -s -j16 CC=gcc) "
  slow_summary=$(grep '^offload:' "$B/last.err" | head -1)
  slow_rerun=$(grep 'slow remote jobs' "$B/last.err" || true)
  unlimit
  make -s clean
  t[full]+="$(secs taskset -c 0 "$O" build --no-discover --worker "$W" -j1 -- make -s -j16 CC=gcc) "
done
stop_worker
med() { printf '%s\n' ${t[$1]} | median; }
l=$(med local); s=$(med slow); f=$(med full)
echo "lua, median of $RUNS runs; the worker at $SHARE of core 1; offload's summary with it:"
echo "  $slow_summary"
[ -n "$slow_rerun" ] && echo "  $slow_rerun"
echo
echo "| build | time (s) | against local -j1 |"
echo "|---|---|---|"
printf '| local, make -j1 | %.2f | 1.00 |\n' "$l"
printf '| offload, worker at %s of a core | %.2f | %.3f |\n' "$SHARE" "$s" "$(echo "$s / $l" | bc -l)"
printf '| offload, worker at full speed | %.2f | %.3f |\n' "$f" "$(echo "$f / $l" | bc -l)"
