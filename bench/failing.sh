#!/usr/bin/env bash
# What compile errors cost through offload: a remote compile that fails is compiled again
# on this host, and the build sees that result (issue 13), so each failing translation
# unit costs a remote attempt and a local compile.
#
#   bench/failing.sh [RUNS] [EVERY]     (default 3 runs, the median reported; EVERY=4)
#
# Lua 5.4.7's 32 library sources (fetched by cargo), and a copy in which every EVERY-th
# source ends with a function using an undeclared name (the whole file is parsed, no code
# is generated). On the 1+1 split (host on core 0, a worker on core 1, as bench/run.sh):
#   local      : taskset -c 0 make -s [-k] -j1
#   offload    : taskset -c 0 offload build --worker W -j1 -- make -s [-k] -j16
# for the clean tree and, with -k, the broken one (whose exit status must be the same,
# non-zero, both ways). Reported: both speed-ups, and the broken build's time against the
# clean one's each way (a failing source generates no code, so locally it is cheaper than a
# clean one; through offload it also costs the remote attempt).
set -euo pipefail
RUNS=${1:-3}
EVERY=${2:-4}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$(mktemp -d /tmp/offload-bench.XXXXXX)
. "$ROOT/bench/lib.sh"
bench_setup
. "$ROOT/bench/sources.sh"
bench_sources "$B"
cp -r "$B/lua" "$B/lua-broken"
n=0; failing=0
for f in $(cd "$B/lua-broken" && ls *.c | grep -vx -e lua.c -e luac.c); do
  n=$((n + 1))
  if [ $((n % EVERY)) = 0 ]; then
    printf '\nint offload_bench_broken(void) { return offload_bench_undeclared; }\n' >> "$B/lua-broken/$f"
    failing=$((failing + 1))
  fi
done

start_worker
# Warm-up (not timed): the worker's toolchain, the probe, its store.
(cd "$B/lua" && make -s clean && "$O" build --no-discover --worker "$W" -j1 -- make -s -j16 CC=gcc >/dev/null 2>&1)
declare -A t
for run in $(seq "$RUNS"); do
  for tree in lua lua-broken; do
    cd "$B/$tree"
    k=; [ "$tree" = lua-broken ] && k=-k
    make -s clean
    t[local-$tree]+="$(secs_any taskset -c 0 make -s $k -j1 CC=gcc) "
    ls=$(cat "$B/last.status")
    make -s clean
    t[offload-$tree]+="$(secs_any taskset -c 0 "$O" build --no-discover --worker "$W" -j1 -- make -s $k -j16 CC=gcc) "
    os=$(cat "$B/last.status")
    summary=$(grep '^offload:' "$B/last.err" | tail -1)
    [ "$ls" = "$os" ] || { echo "$tree: exit status $ls locally, $os through offload" >&2; exit 1; }
    if [ "$tree" = lua-broken ]; then
      [ "$ls" != 0 ] || { echo "the broken tree built" >&2; exit 1; }
      broken_summary=$summary
    fi
  done
done
stop_worker
med() { printf '%s\n' ${t[$1]} | median; }
ll=$(med local-lua); lb=$(med local-lua-broken); ol=$(med offload-lua); ob=$(med offload-lua-broken)
echo "lua, $n sources, $failing failing (every $EVERY), median of $RUNS runs; offload's summary of the broken build:"
echo "  $broken_summary"
echo
echo "| tree | local -j1 (s) | offload (s) | speed-up |"
echo "|---|---|---|---|"
printf '| clean | %.2f | %.2f | %.2fx |\n' "$ll" "$ol" "$(echo "$ll / $ol" | bc -l)"
printf '| %d of %d failing, make -k | %.2f | %.2f | %.2fx |\n' "$failing" "$n" "$lb" "$ob" "$(echo "$lb / $ob" | bc -l)"
printf '\nThe broken build takes %.2f of the clean one'"'"'s time locally and %.2f through offload; per failing source, %+.0f ms locally and %+.0f ms through offload.\n' \
  "$(echo "$lb / $ll" | bc -l)" "$(echo "$ob / $ol" | bc -l)" \
  "$(echo "($lb - $ll) * 1000 / $failing" | bc -l)" "$(echo "($ob - $ol) * 1000 / $failing" | bc -l)"
