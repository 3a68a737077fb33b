#!/usr/bin/env bash
# Image size and boot timeline of the guest image under QEMU (TCG on this machine kind), median
# of N boots (default 5) per variant, with isobar's own part (/init -> first response) reported
# apart from the kernel's and split into its phases; the V8 snapshot shipped in the image is
# compared with building it in the guest, boot by boot.
#
#   bench/qemu-boot.sh [--boots N] [--net packet|kernel]
#
# packet (the guest's default): isobar's userspace stack on AF_PACKET on eth0; kernel: kernel
# sockets. The tenants get cpu_ms = 2000: under TCG a tenant's first request can take more guest
# CPU time than the example's 50 ms (see qemu/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
boots=5
net=packet
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
# The CPU limits sized for native speed would cut first requests under TCG (qemu/README.md).
sed -i -e 's/^admin = .*//' -e 's/cpu_ms = [0-9]*/cpu_ms = 2000/g' "$out/config/isobar.toml"
target/release/isobar-qemu image --config "$out/config/isobar.toml" --isobar target/release/isobar --out "$out/image" --cache qemu/out/cache
case "$net" in
  packet) cmdline="isobar.net=packet:eth0" ;;
  kernel) cmdline="isobar.net=kernel" ;;
  *) echo "--net is packet or kernel" >&2; exit 2 ;;
esac
port=$((18600 + RANDOM % 1000))
# Two variants, interleaved boot by boot so both see the same machine: "image" uses the V8
# snapshot made at image build time (the default), "guest" names a file that does not exist, so
# isobar builds the snapshot in the guest as it would without one.
: > "$out/timelines-image.txt"
: > "$out/timelines-guest.txt"
for i in $(seq 1 "$boots"); do
  for variant in image guest; do
    extra=""
    [ "$variant" = guest ] && extra="isobar.snapshot=/no/snapshot"
    target/release/isobar-qemu boot --image "$out/image" --port "$port" --host shop.example.com \
      --serial "$out/serial-$variant-$i.log" --cmdline "$cmdline $extra" --then-poweroff --timeout 120 \
      | tee -a "$out/timelines-$variant.txt"
    grep -E "isobar: init:|snapshot ready in|tenants compiled in|core\(s\) ready in" "$out/serial-$variant-$i.log" \
      | sed 's/^/  guest: /' | tee -a "$out/timelines-$variant.txt"
  done
done
python3 - "$out/timelines-image.txt" "$out/timelines-guest.txt" <<'PY'
import re, statistics, sys
def parse(path):
    runs, cur = [], None
    for line in open(path):
        if line.startswith("qemu started"):
            if cur:
                runs.append(cur)
            cur = {}
            continue
        m = re.match(r"\s+([\d.]+)s (kernel|/init|listening|first response|powered off)", line)
        if m:
            cur[m.group(2)] = float(m.group(1))
            continue
        for key, pattern in [("guest uptime at /init", r"guest uptime ([\d.]+)s"),
                             ("modules + network", r"network \S+ ready in ([\d.]+)s"),
                             ("V8 + snapshot", r"snapshot ready in ([\d.]+)(m?s)"),
                             ("tenants compiled", r"tenants compiled in ([\d.]+)(m?s)"),
                             ("cores started", r"core\(s\) ready in ([\d.]+)(m?s)")]:
            g = re.search(pattern, line)
            if g:
                value = float(g.group(1))
                if len(g.groups()) > 1 and g.group(2) == "ms":
                    value /= 1000
                cur[key] = value
                break
    if cur:
        runs.append(cur)
    for r in runs:
        r["isobar's part (/init -> first response)"] = r["first response"] - r["/init"]
    return runs
keys = ["kernel", "/init", "listening", "first response", "powered off", "guest uptime at /init",
        "isobar's part (/init -> first response)", "modules + network", "V8 + snapshot",
        "tenants compiled", "cores started"]
image, guest = parse(sys.argv[1]), parse(sys.argv[2])
print(f"\n{len(image)} boots each, medians in seconds (timeline: since QEMU started)")
print(f"  {'':42s} {'snapshot from image':>20s} {'snapshot built in guest':>24s}")
for k in keys:
    a = statistics.median(r[k] for r in image)
    b = statistics.median(r[k] for r in guest)
    print(f"  {k:42s} {a:20.3f} {b:24.3f}")
PY
ls -la "$out/image"
