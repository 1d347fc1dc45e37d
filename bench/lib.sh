# Sourced by the benchmarks: the offload binary copied outside /tmp, a worker pinned to
# core 1 in a mount namespace of its own with a private tmpfs /tmp, and timing helpers.
# Expects ROOT (the repository) and B (a scratch directory) to be set.
bench_setup() {
  [ "$(id -u)" = 0 ] || { echo "$0: run as root (the worker chroots each job)" >&2; exit 2; }
  command -v make >/dev/null || { apt-get update -qq && apt-get install -y -qq make >/dev/null; }
  command -v bc >/dev/null || { apt-get update -qq && apt-get install -y -qq bc >/dev/null; }
  cargo build --release -q -p offload --manifest-path "$ROOT/Cargo.toml"
  # The worker gets a private /tmp: run it from a copy outside /tmp.
  mkdir -p /var/tmp/offload-bench-bin
  cp "$ROOT/target/release/offload" /var/tmp/offload-bench-bin/offload
  O=/var/tmp/offload-bench-bin/offload
  PORT=${PORT:-17420}
  WPID=
  # The benchmark's own host identity; its worker trusts it and it names the worker by
  # the fingerprint the worker reports (a real handshake, no interactive pairing).
  export OFFLOAD_CONFIG_DIR="$B/host-config"
  HOSTFP=$("$O" id)
  W=
  # On any exit: the worker stops and the scratch directory goes.
  trap 'bench_cleanup' EXIT
}
# (BENCH_PIDS: more processes of the benchmark's own to stop.)
bench_cleanup() {
  for p in $WPID ${BENCH_PIDS:-}; do kill "$p" 2>/dev/null || true; done
  rm -rf "$B"
}
# Starts the worker (after the shell commands $1, if any, in its mount namespace) and sets
# W to the --worker argument naming it.
start_worker() {
  local setup=${1:+$1 && } port_file=/var/tmp/offload-bench-bin/port.$PORT
  rm -f "$port_file"
  unshare -m --propagation private sh -c \
    "mount -t tmpfs tmpfs /tmp && ${setup}exec taskset -c 1 $O worker --listen 127.0.0.1:$PORT --slots 1 --work-dir /tmp/w --state-dir /tmp/w-state --trust-host $HOSTFP --no-advertise --lend always --port-file $port_file" \
    2>"$B/worker.log" &
  WPID=$!
  for _ in $(seq 200); do
    if [ -s "$port_file" ] && [ "$(wc -l <"$port_file")" -ge 2 ]; then
      W="$(sed -n 2p "$port_file")@127.0.0.1:$PORT"
      return
    fi
    sleep 0.05
  done
  echo "worker did not start" >&2; cat "$B/worker.log" >&2; exit 1
}
stop_worker() { kill "$WPID"; wait "$WPID" 2>/dev/null || true; WPID=; }
# Seconds the command took; it must succeed (its stderr is kept in $B/last.err).
secs() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>"$B/last.err" || { cat "$B/last.err" >&2; exit 1; }; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }
# Seconds the command took, whatever its exit status (kept in $B/last.status).
secs_any() { local t0 t1; t0=$(date +%s.%N); set +e; "$@" >"$B/last.out" 2>"$B/last.err"; echo $? >"$B/last.status"; set -e; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
