#!/usr/bin/env bash
# HTTP throughput and latency of `isobar run examples/hello.js`, side by side with workerd and
# bun serving the same response, all on one CPU, in one run.
#
#   bench/http.sh [--duration SECONDS] [--runs N] [--no-references]
#
# The server under test is pinned to CPU 0 and wrk to CPU 1, so "one core" means one core.
# Each configuration runs N times (default 3); the table shows medians. Loopback only.
# workerd and bun come from the npm registry into bench/out/ (git-ignored); pass
# --no-references to measure isobar alone.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/wrk.sh

duration=10
runs=3
references=1
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --no-references) references=0; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "needs 2 CPUs (server on CPU 0, wrk on CPU 1)" >&2; exit 1; }

# This workplace has no route to V8's download; use the offline archive beside the checkout.
if [ -z "${RUSTY_V8_ARCHIVE:-}" ] && [ -d ../shared/v8 ]; then
  export RUSTY_V8_ARCHIVE="$(cd ../shared/v8 && pwd)"
  export RUSTY_V8_SRC_BINDING_PATH="$RUSTY_V8_ARCHIVE/src_binding_release_x86_64-unknown-linux-gnu.rs"
fi

out=bench/out
mkdir -p "$out"
cargo build --release --quiet -p isobar
isobar=target/release/isobar

if [ "$references" = 1 ]; then
  if [ ! -x "$out/node_modules/.bin/workerd" ] || [ ! -x "$out/node_modules/.bin/bun" ]; then
    npm install --silent --no-audit --no-fund --prefix "$out" workerd@1.20261117.1 bun@1.4.5 >/dev/null
  fi
  cp examples/hello.js "$out/hello.js"
  cat > "$out/workerd.capnp" <<CAPNP
using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ (name = "main", worker = .hello) ],
  sockets = [ (name = "http", address = "127.0.0.1:18082", http = (), service = "main") ],
);
const hello :Workerd.Worker = (
  modules = [ (name = "hello.js", esModule = embed "hello.js") ],
  compatibilityDate = "2024-09-23",
);
CAPNP
  cat > "$out/bun-hello.js" <<'JS'
Bun.serve({ port: 18083, hostname: "127.0.0.1", fetch() { return new Response("hello from isobar\n"); } });
JS
fi

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_port() {
  for _ in $(seq 1 200); do
    if curl -s -o /dev/null "http://127.0.0.1:$1/"; then return 0; fi
    sleep 0.05
  done
  echo "nothing answered on port $1" >&2
  return 1
}

# run_wrk PORT CONNECTIONS -> prints "req_per_sec p50_us p99_us"
run_wrk() {
  taskset -c 1 wrk -t1 -c"$2" -d"${duration}s" --latency "http://127.0.0.1:$1/" | wrk_summary
}

results=()

start() { # NAME PORT COMMAND...
  local name="$1" port="$2"; shift 2
  taskset -c 0 "$@" >"$out/$name.log" 2>&1 &
  pids+=($!)
  wait_port "$port"
  curl -s "http://127.0.0.1:$port/" | grep -q "hello from isobar" || { echo "$name answered something else" >&2; exit 1; }
}

stop_last() { kill "${pids[-1]}" 2>/dev/null || true; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'; }

start isobar 18081 "$isobar" --log warn run examples/hello.js --listen 127.0.0.1:18081
measure "isobar (1 core)" 18081
stop_last

if [ "$references" = 1 ]; then
  start workerd 18082 "$out/node_modules/.bin/workerd" serve "$out/workerd.capnp"
  measure "workerd $("$out/node_modules/.bin/workerd" --version 2>/dev/null | awk '{print $2}')" 18082
  stop_last
  start bun 18083 "$out/node_modules/.bin/bun" run "$out/bun-hello.js"
  measure "bun $("$out/node_modules/.bin/bun" --version)" 18083
  stop_last
fi

echo
echo "hello world, one server CPU, wrk on the other, ${duration}s x ${runs} runs, medians ($(date -u +%Y-%m-%d))"
echo
echo "| server | connections | req/s | p50 | p99 |"
echo "|---|---:|---:|---:|---:|"
base_c1=""; base_c64=""
for row in "${results[@]}"; do
  IFS='|' read -r name c rps p50 p99 <<<"$row"
  echo "| $name | $c | $rps | ${p50} us | ${p99} us |"
done
echo
echo "ratios (isobar / other, req/s):"
for c in 1 64; do
  isobar_rps=$(printf '%s\n' "${results[@]}" | awk -F'|' -v c="$c" '$1 ~ /^isobar/ && $2 == c { print $3 }')
  for row in "${results[@]}"; do
    IFS='|' read -r name cc rps _ _ <<<"$row"
    if [ "$cc" = "$c" ] && [[ "$name" != isobar* ]] && [ "$rps" -gt 0 ]; then
      awk -v a="$isobar_rps" -v b="$rps" -v n="$name" -v c="$c" 'BEGIN { printf "  c%s: isobar / %s = %.2f\n", c, n, a / b }'
    fi
  done
done
