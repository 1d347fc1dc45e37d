#!/usr/bin/env bash
# What the authenticated, encrypted channel (issue 14) costs end to end: Lua 5.4.7 on the
# 1+1 split, built through this checkout's offload (every byte through Noise) and through
# the last commit before the channel (BASE, plain TCP), alternating in one run so that the
# machine's drift hits both alike.
#
#   bench/channel.sh [RUNS] [BASE]      (default 5 runs, medians; BASE=10a6d9f)
#
# BASE is built once in a worktree of its own (/var/tmp/offload-bench-base). Each binary
# gets its own worker (taskset -c 1, --slots 1, private /tmp), warmed by one build first;
# only one of them works at a time. BASE also lacks what landed after it besides the
# channel (the coordinator's refactor, pairing checks), so the difference is an upper
# bound on the channel's cost. Prints local, plain and secure medians, the speed-ups, and
# secure against plain.
set -euo pipefail
RUNS=${1:-5}
BASE=${2:-10a6d9f}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$(mktemp -d /tmp/offload-bench.XXXXXX)
. "$ROOT/bench/lib.sh"
bench_setup
. "$ROOT/bench/sources.sh"
bench_sources "$B"

BASE_TREE=/var/tmp/offload-bench-base
if [ "$(git -C "$BASE_TREE" rev-parse HEAD 2>/dev/null)" != "$(git -C "$ROOT" rev-parse "$BASE")" ]; then
  git -C "$ROOT" worktree remove --force "$BASE_TREE" 2>/dev/null || rm -rf "$BASE_TREE"
  git -C "$ROOT" worktree add -q --detach "$BASE_TREE" "$BASE"
fi
CARGO_TARGET_DIR=/var/tmp/offload-bench-base-target cargo build --release -q -p offload \
  --manifest-path "$BASE_TREE/Cargo.toml"
OB=/var/tmp/offload-bench-bin/offload-base
cp /var/tmp/offload-bench-base-target/release/offload "$OB"

start_worker
PB=$((PORT + 1)) pf=/var/tmp/offload-bench-bin/port.base
rm -f "$pf"
unshare -m --propagation private sh -c \
  "mount -t tmpfs tmpfs /tmp && exec taskset -c 1 $OB worker --listen 127.0.0.1:$PB --slots 1 --work-dir /tmp/w --port-file $pf" \
  2>"$B/worker-base.log" &
BENCH_PIDS=$!
for _ in $(seq 200); do [ -s "$pf" ] && break; sleep 0.05; done
[ -s "$pf" ] || { echo "the base worker did not start" >&2; cat "$B/worker-base.log" >&2; exit 1; }

cd "$B/lua"
plain_build() { taskset -c 0 "$OB" build --worker "127.0.0.1:$PB" -j1 -- make -s -j16 CC=gcc; }
secure_build() { taskset -c 0 "$O" build --no-discover --worker "$W" -j1 -- make -s -j16 CC=gcc; }
# Warm-up (not timed): each worker's toolchain, probe and store.
make -s clean; secs plain_build >/dev/null
make -s clean; secs secure_build >/dev/null
loc=(); plain=(); secure=()
for _ in $(seq "$RUNS"); do
  make -s clean; loc+=("$(secs taskset -c 0 make -s -j1 CC=gcc)")
  make -s clean; plain+=("$(secs plain_build)")
  make -s clean; secure+=("$(secs secure_build)")
  grep '^offload:' "$B/last.err" | tail -1 >&2
done
l=$(printf '%s\n' "${loc[@]}" | median)
p=$(printf '%s\n' "${plain[@]}" | median)
s=$(printf '%s\n' "${secure[@]}" | median)
echo "| lua, $RUNS runs | local -j1 | plain TCP ($BASE) | Noise channel (HEAD) | channel vs plain |"
echo "|---|---|---|---|---|"
printf '| median | %.2f s | %.2f s **%.2fx** | %.2f s **%.2fx** | %+.1f%% |\n' "$l" "$p" "$(echo "$l / $p" | bc -l)" \
  "$s" "$(echo "$l / $s" | bc -l)" "$(echo "($s / $p - 1) * 100" | bc -l)"
echo "all: local ${loc[*]}; plain ${plain[*]}; secure ${secure[*]}" >&2
