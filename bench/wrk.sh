# Sourced by bench/http.sh and bench/net.sh: repeated wrk runs reduced to medians. The caller
# defines `run_wrk TARGET CONNECTIONS` (how to reach its server) and the `runs` count.

# Reads `wrk --latency` output; prints "req_per_sec p50_us p99_us".
wrk_summary() {
  awk '
    function us(v) { if (v ~ /us$/) return v+0; if (v ~ /ms$/) return (v+0)*1000; if (v ~ /s$/) return (v+0)*1000000; return v }
    /^ +50%/ { p50 = us($2) } /^ +99%/ { p99 = us($2) } /^Requests\/sec/ { rps = $2 }
    END { printf "%d %d %d\n", rps, p50, p99 }'
}

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# measure NAME TARGET: at 1 and 64 connections, `runs` runs each; appends
# "NAME|CONNECTIONS|req/s|p50|p99" (medians) to the caller's `results` array.
measure() {
  local c r a b
  for c in 1 64; do
    local rps=() p50=() p99=()
    for _ in $(seq 1 "$runs"); do
      read -r r a b < <(run_wrk "$2" "$c")
      rps+=("$r"); p50+=("$a"); p99+=("$b")
    done
    results+=("$1|$c|$(printf '%s\n' "${rps[@]}" | median)|$(printf '%s\n' "${p50[@]}" | median)|$(printf '%s\n' "${p99[@]}" | median)")
  done
}

# measure_interleaved "NAME|TARGET" ...: like `measure` for several servers that are all up at
# once, taking turns run by run (run 1 of each, then run 2 of each, ...), so a change in the
# shared host's load hits every server alike instead of whichever was measured then.
measure_interleaved() {
  local c i r a b run
  local -a servers=("$@") rps p50 p99
  for c in ${connections:-1 64}; do
    rps=(); p50=(); p99=()
    for run in $(seq 1 "$runs"); do
      for i in "${!servers[@]}"; do
        read -r r a b < <(run_wrk "${servers[$i]#*|}" "$c")
        rps[$i]="${rps[$i]:-} $r"; p50[$i]="${p50[$i]:-} $a"; p99[$i]="${p99[$i]:-} $b"
      done
    done
    for i in "${!servers[@]}"; do
      results+=("${servers[$i]%%|*}|$c|$(printf '%s\n' ${rps[$i]} | median)|$(printf '%s\n' ${p50[$i]} | median)|$(printf '%s\n' ${p99[$i]} | median)")
    done
  done
}
