#!/usr/bin/env bash
# Kernel sockets versus isobar's userspace stack (smoltcp on a TAP), same binary, same worker
# (examples/hello.js), same client (wrk), in one run. Everything happens in a network namespace
# this script creates and deletes (root needed). Every isobar is pinned to CPU 0 (one core), wrk
# to CPU 1. All servers are up at once (an idle one costs nothing) and take turns run by run, so
# the shared host's changing load falls on all of them alike.
#
#   bench/net.sh [--duration SECONDS] [--runs N] [--connections "1 64"] [--baseline ISOBAR_BINARY]
#
# kernel:    wrk -> 10.0.0.1:8080, the TAP's kernel-side address, served by isobar on kernel
#            sockets (through io_uring) in the namespace;
# userspace: wrk -> 10.0.0.2:8080 over the TAP, served by isobar's smoltcp stack
#            (--net tap:isobench0 --ip 10.0.0.2/24). The client side is the kernel's TCP in
#            both cases.
# --baseline: also measure another isobar build the same two ways (kernel sockets on
#            10.0.0.1:8081, userspace on a second TAP as 10.0.1.2:8080), to show what a change
#            did, side by side with the same load.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/wrk.sh
duration=10
runs=3
baseline=
connections="1 64"
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --baseline) baseline="$(realpath "$2")"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true  # wrk keeps one fd per connection
if [ -z "${RUSTY_V8_ARCHIVE:-}" ] && [ -d ../shared/v8 ]; then
  export RUSTY_V8_ARCHIVE="$(cd ../shared/v8 && pwd)"
  export RUSTY_V8_SRC_BINDING_PATH="$RUSTY_V8_ARCHIVE/src_binding_release_x86_64-unknown-linux-gnu.rs"
fi
cargo build --release --quiet -p isobar
isobar=$PWD/target/release/isobar
ns=isobar-bench-$$
ip netns add "$ns"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
in_ns() { ip netns exec "$ns" "$@"; }
in_ns ip link set lo up
for i in 0 1; do
  in_ns ip tuntap add mode tap multi_queue vnet_hdr name "isobench$i"
  in_ns ip addr add "10.0.$i.1/24" dev "isobench$i"
  # The kernel queues frames for a TAP reader up to txqueuelen (500 by default) and drops the
  # rest: 1,024 clients sending at once overflow it, and each drop costs a client a
  # retransmission timeout (hundreds of ms at p99). A host serving that many connections on a
  # TAP raises it the same way.
  in_ns ip link set "isobench$i" up txqueuelen 4096
done

wait_http() { # ADDR:PORT
  for _ in $(seq 1 200); do
    if in_ns bash -c "exec 3<>/dev/tcp/${1%:*}/${1#*:}" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "nothing answered on $1" >&2; return 1
}

run_wrk() { # ADDR:PORT CONNECTIONS -> "rps p50_us p99_us"
  in_ns taskset -c 1 wrk -t1 -c"$2" -d"${duration}s" --latency "http://$1/" | wrk_summary
}

# serve NAME ADDR:PORT BINARY ARGS...: starts one server and adds it to `servers`. Started
# without a function wrapper around the binary, so $! is isobar itself (ip netns exec and
# taskset exec).
servers=()
serve() {
  local name="$1" target="$2" binary="$3"
  shift 3
  ip netns exec "$ns" taskset -c 0 "$binary" --log warn run examples/hello.js "$@" >/dev/null &
  pids+=($!)
  wait_http "$target"
  servers+=("$name|$target")
}

results=()
serve "kernel sockets (io_uring)" 10.0.0.1:8080 "$isobar" --listen 10.0.0.1:8080
serve "userspace stack (smoltcp on TAP)" 10.0.0.2:8080 "$isobar" --listen 0.0.0.0:8080 --net tap:isobench0 --ip 10.0.0.2/24
if [ -n "$baseline" ]; then
  serve "baseline: kernel sockets" 10.0.0.1:8081 "$baseline" --listen 10.0.0.1:8081
  serve "baseline: userspace stack" 10.0.1.2:8080 "$baseline" --listen 0.0.0.0:8080 --net tap:isobench1 --ip 10.0.1.2/24
fi
measure_interleaved "${servers[@]}"

echo
echo "hello world, isobar on one core (CPU 0), wrk on CPU 1, ${duration}s x ${runs} runs, interleaved, medians ($(date -u +%Y-%m-%d))"
echo
echo "| network | connections | req/s | p50 | p99 |"
echo "|---|---:|---:|---:|---:|"
for row in "${results[@]}"; do
  IFS='|' read -r name c rps p50 p99 <<<"$row"
  echo "| $name | $c | $rps | ${p50} us | ${p99} us |"
done
echo
rps_of() { printf '%s\n' "${results[@]}" | awk -F'|' -v n="$1" -v c="$2" '$1 == n && $2 == c { print $3 }'; }
ratio() { awk -v a="$(rps_of "$2" "$4")" -v b="$(rps_of "$3" "$4")" -v l="$1" -v c="$4" 'BEGIN { printf "c%s: %s = %.2f\n", c, l, a / b }'; }
for c in $connections; do
  ratio "userspace / kernel" "userspace stack (smoltcp on TAP)" "kernel sockets (io_uring)" "$c"
  if [ -n "$baseline" ]; then
    ratio "kernel sockets, this build / baseline" "kernel sockets (io_uring)" "baseline: kernel sockets" "$c"
    ratio "userspace stack, this build / baseline" "userspace stack (smoltcp on TAP)" "baseline: userspace stack" "$c"
  fi
done
