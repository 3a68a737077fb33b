#!/usr/bin/env bash
# Image size and boot timeline of the guest image under QEMU (TCG on this machine kind), median
# of N boots (default 5), with isobar's own part (/init -> first response) reported apart from
# the kernel's.
#
#   bench/qemu-boot.sh [--boots N] [--net kernel|packet]
set -euo pipefail
cd "$(dirname "$0")/.."
boots=5
net=kernel
while [ $# -gt 0 ]; do
  case "$1" in
    --boots) boots="$2"; shift 2 ;;
    --net) net="$2"; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
if [ -z "${RUSTY_V8_ARCHIVE:-}" ] && [ -d ../shared/v8 ]; then
  export RUSTY_V8_ARCHIVE="$(cd ../shared/v8 && pwd)"
  export RUSTY_V8_SRC_BINDING_PATH="$RUSTY_V8_ARCHIVE/src_binding_release_x86_64-unknown-linux-gnu.rs"
fi
cargo build --release --quiet -p isobar -p isobar-qemu
out=bench/out/qemu
mkdir -p "$out/config"
cp examples/isobar.toml "$out/config/isobar.toml"
cp -r examples/tenants "$out/config/"
sed -i 's/^admin = .*//' "$out/config/isobar.toml"
target/release/isobar-qemu image --config "$out/config/isobar.toml" --isobar target/release/isobar --out "$out/image" --cache qemu/out/cache
cmdline=""
[ "$net" = packet ] && cmdline="isobar.net=packet:eth0"
port=$((18600 + RANDOM % 1000))
: > "$out/timelines.txt"
for i in $(seq 1 "$boots"); do
  target/release/isobar-qemu boot --image "$out/image" --port "$port" --host shop.example.com \
    --serial "$out/serial-$i.log" --cmdline "$cmdline" --then-poweroff --timeout 120 | tee -a "$out/timelines.txt"
done
python3 - "$out/timelines.txt" <<'PY'
import re, statistics, sys
runs, cur = [], {}
for line in open(sys.argv[1]):
    m = re.match(r"\s+([\d.]+)s (kernel|/init|listening|first response|powered off)", line)
    if m:
        cur[m.group(2)] = float(m.group(1))
        if m.group(2) == "powered off":
            runs.append(cur); cur = {}
    g = re.search(r"guest uptime ([\d.]+)s", line)
    if g and cur is not None:
        cur["guest uptime at /init"] = float(g.group(1))
def med(k): return statistics.median(r[k] for r in runs)
print(f"\n{len(runs)} boots, medians (seconds since QEMU started):")
for k in ["kernel", "/init", "listening", "first response", "powered off"]:
    print(f"  {k:16s} {med(k):7.3f}")
print(f"  guest uptime at /init {med('guest uptime at /init'):.3f}")
print(f"  isobar's part (/init -> first response) {statistics.median(r['first response'] - r['/init'] for r in runs):.3f}")
print(f"  boot to power-off {med('powered off'):.3f}")
PY
ls -la "$out/image"
