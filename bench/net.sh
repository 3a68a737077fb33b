#!/usr/bin/env bash
# Kernel sockets versus isobar's userspace stack (smoltcp on a TAP), same binary, same worker
# (examples/hello.js), same client (wrk), in one run. Everything happens in a network namespace
# this script creates and deletes (root needed). isobar is pinned to CPU 0 (one core), wrk to
# CPU 1.
#
#   bench/net.sh [--duration SECONDS] [--runs N]
#
# kernel:    wrk -> 10.0.0.1:8080, the TAP's kernel-side address, served by isobar on kernel
#            sockets (through io_uring) in the namespace;
# userspace: wrk -> 10.0.0.2:8080 over the TAP, served by isobar's smoltcp stack
#            (--net tap:isobench0 --ip 10.0.0.2/24). The client side is the kernel's TCP in
#            both cases.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/wrk.sh
duration=10
runs=3
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
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
in_ns ip tuntap add mode tap multi_queue vnet_hdr name isobench0
in_ns ip addr add 10.0.0.1/24 dev isobench0
in_ns ip link set isobench0 up

wait_http() {
  for _ in $(seq 1 200); do
    if in_ns bash -c "exec 3<>/dev/tcp/$1/8080" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "nothing answered on $1:8080" >&2; return 1
}

run_wrk() { # ADDR CONNECTIONS -> "rps p50_us p99_us"
  in_ns taskset -c 1 wrk -t1 -c"$2" -d"${duration}s" --latency "http://$1:8080/" | wrk_summary
}

results=()

# Started without a function wrapper, so $! is isobar itself (ip netns exec and taskset exec).
ip netns exec "$ns" taskset -c 0 "$isobar" --log warn run examples/hello.js --listen 10.0.0.1:8080 >/dev/null &
pids+=($!)
wait_http 10.0.0.1
measure "kernel sockets (io_uring)" 10.0.0.1
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'

ip netns exec "$ns" taskset -c 0 "$isobar" --log warn run examples/hello.js --listen 0.0.0.0:8080 --net tap:isobench0 --ip 10.0.0.2/24 >/dev/null &
pids+=($!)
wait_http 10.0.0.2
measure "userspace stack (smoltcp on TAP)" 10.0.0.2

echo
echo "hello world, isobar on one core (CPU 0), wrk on CPU 1, ${duration}s x ${runs} runs, medians ($(date -u +%Y-%m-%d))"
echo
echo "| network | connections | req/s | p50 | p99 |"
echo "|---|---:|---:|---:|---:|"
for row in "${results[@]}"; do
  IFS='|' read -r name c rps p50 p99 <<<"$row"
  echo "| $name | $c | $rps | ${p50} us | ${p99} us |"
done
echo
for c in 1 64; do
  k=$(printf '%s\n' "${results[@]}" | awk -F'|' -v c="$c" '$1 ~ /^kernel/ && $2 == c { print $3 }')
  u=$(printf '%s\n' "${results[@]}" | awk -F'|' -v c="$c" '$1 ~ /^userspace/ && $2 == c { print $3 }')
  awk -v k="$k" -v u="$u" -v c="$c" 'BEGIN { printf "c%s: userspace / kernel = %.2f\n", c, u / k }'
done
