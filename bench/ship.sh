#!/usr/bin/env bash
# Measures the cost of shipping the host's toolchain to a worker that lacks it.
#
#   bench/ship.sh [RUNS]          (default 3 runs per measurement; the median is reported)
#
# Same split as bench/run.sh: `offload build` on core 0, the worker on core 1 (taskset), the
# worker in its own mount namespace with a private /tmp. Lua 5.4.7 (-O2, fetched by cargo)
# is built with `make -j16` through offload, each time against a fresh worker:
#   native       : the worker has the host's gcc (the baseline: no shipping)
#   ship, cold   : the worker's gcc is /bin/false and gcc's cc1 directory is empty; the
#                  host's bundle cache is empty: the host builds the bundle and ships it
#   ship, cached : the same, with the bundle already in the host's cache
#   kept         : a second build against the worker that received it (nothing shipped)
# From the logs (OFFLOAD_LOG=info on both sides): the bundle's build time and size, the
# host's offer-to-answer time, the worker's receive and unpack times.
set -euo pipefail
RUNS=${1:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$(mktemp -d /tmp/offload-bench-ship.XXXXXX)
PORT=17421
. "$ROOT/bench/lib.sh"
bench_setup

# --- sources (Lua is the one built here), fetched by cargo ---
. "$ROOT/bench/sources.sh"
bench_sources "$B"

# What hides the host's gcc from the worker (its own mount namespace only).
DRIVER=$(readlink -f "$(command -v gcc)")
LIBDIR=$(dirname "$(dirname "$(gcc -print-prog-name=cc1)")")
HIDE="mount -t tmpfs tmpfs $LIBDIR && mount --bind /bin/false $DRIVER"

start_worker_logged() { # $1: extra setup ("" or $HIDE)
  OFFLOAD_LOG=info start_worker "$1"
}
build() { # prints seconds; the host's log goes to $B/last.err
  local t0 t1
  make -s clean
  t0=$(date +%s.%N)
  OFFLOAD_LOG=offload_host=info taskset -c 0 "$O" build --no-discover --worker "$W" -j1 -- make -s -j16 CC=gcc \
    >/dev/null 2>"$B/last.err" || { cat "$B/last.err" >&2; exit 1; }
  t1=$(date +%s.%N)
  grep -q ' 0 fell back' "$B/last.err" || { grep '^offload:' "$B/last.err" >&2; }
  echo "$t1 - $t0" | bc -l
}
field() { # $1: message, $2: field, $3: file → the field's value on the last matching log line
  grep " INFO .*$1" "$3" | tail -1 | grep -oE "$2=[^ ]+" | head -1 | cut -d= -f2 | tr -d '"'
}

export XDG_CACHE_HOME="$B/cache"
cd "$B/lua"
native=(); cold=(); cached=(); kept=(); bbuild=(); bsize=(); ship=(); recv=(); unpack=(); bread=()
for _ in $(seq "$RUNS"); do
  start_worker_logged ""
  native+=("$(build)")
  stop_worker

  rm -rf "$XDG_CACHE_HOME"
  start_worker_logged "$HIDE"
  cold+=("$(build)")
  grep -q '1 toolchain shipped' "$B/last.err" || { echo "nothing was shipped:" >&2; cat "$B/last.err" >&2; exit 1; }
  bbuild+=("$(field 'toolchain bundle built' ms "$B/last.err")")
  bsize+=("$(field 'toolchain bundle built' bytes "$B/last.err")")
  ship+=("$(field 'toolchain shipped' ms "$B/last.err")")
  recv+=("$(field 'toolchain bundle received' received_ms "$B/worker.log")")
  unpack+=("$(field 'toolchain bundle received' unpacked_ms "$B/worker.log")")
  kept+=("$(build)")
  if grep -q ' INFO .*toolchain shipped' "$B/last.err"; then echo "shipped again to the same worker" >&2; exit 1; fi
  stop_worker

  start_worker_logged "$HIDE"
  cached+=("$(build)")
  bread+=("$(field 'toolchain bundle read from the cache' ms "$B/last.err")")
  stop_worker
done
m() { printf '%s\n' "$@" | median; }
entries=$(field 'toolchain bundle built' entries "$B/last.err" 2>/dev/null || true)
echo "Lua 5.4.7 -O2 ($(ls "$B"/lua/*.c | grep -vcE '/luac?\.c$') compiles), median of $RUNS, 1 host core + 1 worker core:"
echo
echo "| worker | build (s) | vs native |"
echo "|---|---|---|"
n=$(m "${native[@]}")
for row in "has the host's gcc (native, first build):$n" "lacks gcc, host cache empty (bundle built + shipped):$(m "${cold[@]}")" \
  "lacks gcc, bundle in the host's cache (shipped):$(m "${cached[@]}")" "kept the shipped toolchain (second build):$(m "${kept[@]}")"; do
  printf '| %s | %.2f | %+.2f s |\n' "${row%%:*}" "${row##*:}" "$(echo "${row##*:} - $n" | bc -l)"
done
echo
printf 'bundle: %s bytes (%.1f MiB)%s; built in %s ms (median), read from the cache and hashed in %s ms\n' \
  "$(m "${bsize[@]}")" "$(echo "$(m "${bsize[@]}") / 1048576" | bc -l)" "${entries:+, $entries entries}" "$(m "${bbuild[@]}")" "$(m "${bread[@]}")"
printf 'shipping (host: offer to answer): %s ms; worker: receiving %s ms, checking + unpacking %s ms\n' \
  "$(m "${ship[@]}")" "$(m "${recv[@]}")" "$(m "${unpack[@]}")"
echo
echo "every run (s): native ${native[*]}; ship, cold ${cold[*]}; ship, cached ${cached[*]}; kept ${kept[*]}"
