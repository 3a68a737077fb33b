#!/usr/bin/env python3
"""What a service-binding call costs, next to a loopback fetch() of the same tenant.

One isobar (release build, one core, pinned to CPU 0; this client on CPU 1) serves two tenants:
`back` answers "ok"; `front` answers "ok" itself (/direct), through `env.BACK.fetch()` (/service:
the call goes isolate to isolate on the core, no socket), or through `fetch()` over loopback to
the same `back` script served by a second isobar (`isobar run back.js`, also on CPU 0: a tenant
may never fetch isobar's own listeners, so the origin is another process, as another service
would be). Server CPU is both processes'. Each round makes N sequential keep-alive requests to each path, in a rotating order; the
cost of a call is the path's time per request minus /direct's, per round; the report gives the
median over rounds, and server CPU per request from /proc.

    python3 bench/service-bindings.py [--isobar target/release/isobar] [--rounds 7] [--requests 3000]

Loopback only; every loop is bounded by count; only the isobar it started is signalled.
"""

import argparse
import http.client
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

FRONT = """
export default {
  async fetch(request, env) {
    const path = new URL(request.url).pathname;
    if (path === "/service") return new Response(await (await env.BACK.fetch("http://back.test/")).text());
    if (path === "/fetch") return new Response(await (await fetch(env.ORIGIN)).text());
    return new Response("ok");
  },
};
"""
BACK = 'export default { fetch() { return new Response("ok"); } };\n'


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(conn, path, n):
    for _ in range(n):
        conn.request("GET", path, headers={"Host": "front.test"})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200 or body != b"ok":
            sys.exit(f"{path}: {response.status} {body[:200]!r}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--isobar", default="target/release/isobar")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    port, origin_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as work:
        for name, text in (("front.js", FRONT), ("back.js", BACK)):
            with open(os.path.join(work, name), "w") as f:
                f.write(text)
        with open(os.path.join(work, "isobar.toml"), "w") as f:
            f.write(
                f'[server]\nlisten = "127.0.0.1:{port}"\n[egress]\nallow = ["127.0.0.0/8"]\n'
                '[[tenant]]\nname = "front"\nscript = "front.js"\nroutes = ["front.test"]\n'
                f'vars = {{ ORIGIN = "http://127.0.0.1:{origin_port}/" }}\nservices = {{ BACK = "back" }}\n'
                '[[tenant]]\nname = "back"\nscript = "back.js"\nroutes = ["*"]\n'
            )
        origin = subprocess.Popen(
            ["taskset", "-c", "0", args.isobar, "--log", "warn", "run", f"{work}/back.js",
             "--listen", f"127.0.0.1:{origin_port}", "--cores", "1"],
            stderr=subprocess.DEVNULL,
        )
        server = subprocess.Popen(
            ["taskset", "-c", "0", args.isobar, "--log", "warn", "serve", "--config", f"{work}/isobar.toml",
             "--cores", "1"],
            stderr=subprocess.PIPE,
        )
        try:
            for listening in (port, origin_port):
                for _ in range(200):
                    try:
                        socket.create_connection(("127.0.0.1", listening), timeout=1).close()
                        break
                    except OSError:
                        time.sleep(0.05)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            paths = ["/direct", "/service", "/fetch"]
            for path in paths:
                run(conn, path, 500)  # warm up every isolate and the fetch pool
            wall = {p: [] for p in paths}
            cpu = {p: [] for p in paths}
            for r in range(args.rounds):
                order = paths[r % 3:] + paths[:r % 3]
                for path in order:
                    c0, t0 = cpu_seconds(server.pid) + cpu_seconds(origin.pid), time.perf_counter()
                    run(conn, path, args.requests)
                    t1, c1 = time.perf_counter(), cpu_seconds(server.pid) + cpu_seconds(origin.pid)
                    wall[path].append((t1 - t0) / args.requests * 1e6)
                    cpu[path].append((c1 - c0) / args.requests * 1e6)
            print(f"{args.rounds} rounds x {args.requests} requests per path; medians (min-max)")
            print("path      wall us/req          server CPU us/req    call cost (wall, CPU) over /direct")
            for path in paths:
                w, c = wall[path], cpu[path]
                extra_w = statistics.median(a - b for a, b in zip(w, wall["/direct"]))
                extra_c = statistics.median(a - b for a, b in zip(c, cpu["/direct"]))
                print(
                    f"{path:9} {statistics.median(w):6.1f} ({min(w):.1f}-{max(w):.1f})"
                    f"   {statistics.median(c):6.1f} ({min(c):.1f}-{max(c):.1f})"
                    f"   {extra_w:+6.1f} {extra_c:+6.1f}"
                )
        finally:
            for process in (server, origin):
                process.terminate()
                process.wait(timeout=30)
    log = server.stderr.read().decode(errors="replace")
    if re.search(r"panick|ERROR", log):
        print(log, file=sys.stderr)


if __name__ == "__main__":
    main()
