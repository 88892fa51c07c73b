#!/usr/bin/env bash
# bench/tracker.sh -- the tracker's load benchmark, ours against the reference trackers, in ONE
# run so that the ratios compare like with like on a shared, noisy machine.
#
#   bench/tracker.sh                      # from the repository root
#   RUNS=2 bench/tracker.sh               # the whole sequence twice, a table per pass
#
# Each pass, one tracker at a time, on 127.0.0.1 only:
#   1. aquatic_http, keep-alive on   (../shared/bench/tracker/configs/aquatic-http.toml)
#   2. aquatic_http, keep-alive off  (configs/aquatic-http-noka.toml: the server closes the
#                                     connection after every response)
#   3. ours, keep-alive on           (tracker/examples/bench_server.rs, release build)
#   4. ours, keep-alive off          (the same, with `keep_alive = false` in its configuration:
#                                     server-side, like the aquatic_http configuration above)
#   5. opentracker                   (closes every connection itself)
# each started, driven by the shared harness's run.sh (smoke test, 3 s warm-up, 10 s of
# announces from wrk with every reply validated, the tracker's CPU time read from /proc), and
# stopped before the next starts. Then a table: announces/s, latency, announces per tracker
# CPU-second, ratios against aquatic_http and the targets.
#
# Environment (defaults in brackets):
#   HARNESS      the shared load harness     [$REPO/../shared/bench/tracker]
#   AQUATIC_BIN  aquatic_http binary          [$HOME/.local/aquatic/bin/aquatic_http]
#   RUNS         passes                       [1]
#   MODE         run.sh MODE                  [announce]
#   QUIET_WAIT   run.sh: wait up to N s for the machine to go quiet before each test [20]
#   TRACKERS     which to run, in order       [aq-ka aq-noka ours-ka ours-noka ot]
#                (e.g. TRACKERS="aq-ka ours-ka" RUNS=4: the two interleaved, four pairs)
#   TABLES_ONLY  1 = only print the tables of an existing OUT (no build, no run)
#   OUT          results directory            [$REPO/target/bench-tracker/<time>]
# Other run.sh knobs (CONNS, DURATION, THREADS, ...) pass through.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HARNESS="${HARNESS:-$REPO/../shared/bench/tracker}"
HARNESS="$(cd "$HARNESS" && pwd)"
AQUATIC_BIN="${AQUATIC_BIN:-$HOME/.local/aquatic/bin/aquatic_http}"
RUNS="${RUNS:-1}"
export MODE="${MODE:-announce}"
export QUIET_WAIT="${QUIET_WAIT:-20}"
OUT="${OUT:-$REPO/target/bench-tracker/$(date +%Y%m%d-%H%M%S)}"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
POOL="$HARNESS/pool-10000.hex"
TRACKERS="${TRACKERS:-aq-ka aq-noka ours-ka ours-noka ot}"
OURS_ADDR="127.0.0.1:17100"
AQUATIC_ADDR="127.0.0.1:17000"     # fixed by the shared aquatic configs
OT_PORT=16969

for tool in wrk curl opentracker; do
  command -v "$tool" >/dev/null || { echo "$tool not found (apt-get install -y wrk curl opentracker)" >&2; exit 1; }
done
[[ -x "$AQUATIC_BIN" ]] || { echo "aquatic_http not found at $AQUATIC_BIN; see $HARNESS/configs/start-aquatic.sh" >&2; exit 1; }
[[ -s "$POOL" ]] || { echo "no pool file $POOL" >&2; exit 1; }
mkdir -p "$OUT"

# ---- every process we start is stopped, whatever happens --------------------------------
PIDS=()
stop_pid() {  # pid: SIGTERM, wait up to 10 s, then SIGKILL
  local pid="$1" n
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for n in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  echo "# $pid still running after SIGTERM; SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_listening() {  # host:port pid -- until something accepts there (or the pid dies)
  local addr="$1" pid="$2" n
  for n in $(seq 300); do
    if (exec 3<>"/dev/tcp/${addr%:*}/${addr#*:}") 2>/dev/null; then return 0; fi
    kill -0 "$pid" 2>/dev/null || { echo "tracker $pid exited before listening" >&2; return 1; }
    sleep 0.1
  done
  echo "nothing listening on $addr after 30 s" >&2; return 1
}

port_free() {  # host:port
  if ss -ltn "sport = :${1#*:}" | grep -q LISTEN; then
    echo "port ${1#*:} is in use:" >&2; ss -ltnp "sport = :${1#*:}" >&2; return 1
  fi
}

# ---- our bench server ---------------------------------------------------------------------
if [[ "${TABLES_ONLY:-0}" == 1 ]]; then
  RUNS=$(find "$OUT" -maxdepth 1 -name 'pass*' | wc -l)
else
  echo "# building the bench server (release)"
  (cd "$REPO" && cargo build --release --quiet -p swarmcdn-tracker --example bench_server)
fi
OURS_BIN="$TARGET_DIR/release/examples/bench_server"

start_ours() {  # keep_alive(true|false) logdir -> prints pid
  local keep_alive="$1" dir="$2"
  printf 'keep_alive = %s\n' "$keep_alive" > "$dir/tracker.toml"
  "$OURS_BIN" --pool "$POOL" --listen "$OURS_ADDR" --config "$dir/tracker.toml" \
    > "$dir/server.out" 2> "$dir/server.err" &
  echo $!
}

start_aquatic() {  # config-file logdir -> prints pid
  local config="$1" dir="$2"
  cp "$POOL" "$dir/access-list.txt"
  sed "s#@RUN_DIR@#$dir#g" "$HARNESS/configs/$config" > "$dir/config.toml"
  "$AQUATIC_BIN" -c "$dir/config.toml" > "$dir/aquatic.log" 2>&1 &
  echo $!
}

# ---- one tracker, one run.sh ----------------------------------------------------------------
bench_one() {  # label pass
  local label="$1" pass="$2" dir="$OUT/pass$2/$1" pid addr
  mkdir -p "$dir"
  case "$label" in
    aq-ka)     port_free "$AQUATIC_ADDR"; pid=$(start_aquatic aquatic-http.toml "$dir"); addr=$AQUATIC_ADDR ;;
    aq-noka)   port_free "$AQUATIC_ADDR"; pid=$(start_aquatic aquatic-http-noka.toml "$dir"); addr=$AQUATIC_ADDR ;;
    ours-ka)   port_free "$OURS_ADDR"; pid=$(start_ours true "$dir"); addr=$OURS_ADDR ;;
    ours-noka) port_free "$OURS_ADDR"; pid=$(start_ours false "$dir"); addr=$OURS_ADDR ;;
    ot)        pid=$(RUN_DIR="$dir/ot" "$HARNESS/start-opentracker.sh" "$OT_PORT" | tail -1)
               addr="127.0.0.1:$OT_PORT" ;;
  esac
  PIDS+=("$pid")
  wait_listening "$addr" "$pid"
  echo "## pass $pass: $label (pid $pid) at http://$addr/announce"
  TRACKER_PID="$pid" LABEL="$label" OUTDIR="$dir" "$HARNESS/run.sh" "http://$addr/announce" \
    > "$dir/run.log" 2>&1 || echo "# run.sh failed for $label; see $dir/run.log" >&2
  grep -E '^(requests=|latency_ms|cpu:|efficiency|validated=|first_error|# loadavg)' "$dir/announce.txt" || true
  stop_pid "$pid"
}

# ---- the table -----------------------------------------------------------------------------
field() {  # file key -- value of key=value on the line(s) of run.sh's output
  awk -v k="$2" '{ for (i = 1; i <= NF; i++) { n = index($i, "="); if (n && substr($i, 1, n - 1) == k) v = substr($i, n + 1) } } END { print v }' "$1"
}

table() {  # pass
  local pass="$1" label f
  local -A rps p50 p99 eff cpu wrk other load valid
  for label in aq-ka aq-noka ours-ka ours-noka ot; do
    f="$OUT/pass$pass/$label/announce.txt"
    [[ -f "$f" ]] || continue
    rps[$label]=$(field "$f" req_per_s); p50[$label]=$(field "$f" p50); p99[$label]=$(field "$f" p99)
    eff[$label]=$(field "$f" req_per_tracker_cpu_s); cpu[$label]=$(field "$f" tracker_cpu_pct)
    wrk[$label]=$(field "$f" wrk_cpu_pct); other[$label]=$(field "$f" other_pct)
    valid[$label]="$(field "$f" ok)/$(field "$f" validated)"
    load[$label]=$(awk '/^# loadavg before:/ { print $4 }' "$f")
  done
  echo
  f=$(find "$OUT/pass$pass" -name announce.txt | head -1)
  echo "### pass $pass ($(date -u -r "$f" '+%Y-%m-%d %H:%M UTC'), $(nproc) cores)"
  echo
  echo "| tracker | announces/s | p50 / p99 ms | announces per tracker CPU-s | CPU %: tracker / wrk / other processes | valid replies | load avg (1 min) before |"
  echo "|---|---|---|---|---|---|---|"
  local -A names=([aq-ka]="aquatic_http, keep-alive" [aq-noka]="aquatic_http, keep-alive off"
                  [ours-ka]="swarmcdn, keep-alive" [ours-noka]="swarmcdn, keep-alive off"
                  [ot]="opentracker (closes every connection)")
  for label in ours-ka aq-ka ours-noka aq-noka ot; do
    [[ -n "${rps[$label]:-}" ]] || continue
    printf '| %s | %.0f | %s / %s | %s | %s / %s / %s | %s | %s |\n' "${names[$label]}" "${rps[$label]}" \
      "${p50[$label]}" "${p99[$label]}" "${eff[$label]}" "${cpu[$label]}" "${wrk[$label]}" "${other[$label]}" \
      "${valid[$label]}" "${load[$label]}"
  done
  echo
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b > 0) printf "%.2f", a / b; else print "n/a" }'; }
  verdict() { awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN {
    if (v == "" || v == "n/a") { print "n/a"; exit }
    ok = (op == ">=") ? (v + 0 >= t + 0) : (v + 0 < t + 0); print (ok ? "met" : "NOT met") }'; }
  local r_ka r_noka
  r_ka=$(ratio "${rps[ours-ka]:-}" "${rps[aq-ka]:-0}")
  r_noka=$(ratio "${rps[ours-noka]:-}" "${rps[aq-noka]:-0}")
  echo "| target | measured | |"
  echo "|---|---|---|"
  echo "| keep-alive announces/s >= 1.2x aquatic_http | ${r_ka}x | $(verdict "$r_ka" 1.2 '>=') |"
  echo "| keep-alive off announces/s >= 1.0x aquatic_http | ${r_noka}x | $(verdict "$r_noka" 1.0 '>=') |"
  echo "| p99 < 5 ms (keep-alive) | ${p99[ours-ka]:-n/a} ms | $(verdict "${p99[ours-ka]:-n/a}" 5 '<') |"
  echo "| >= 26k announces per tracker CPU-second (keep-alive) | ${eff[ours-ka]:-n/a} | $(verdict "${eff[ours-ka]:-n/a}" 26000 '>=') |"
  echo "| efficiency vs aquatic_http keep-alive | $(ratio "${eff[ours-ka]:-}" "${eff[aq-ka]:-0}")x | |"
}

echo "# results in $OUT"
if [[ "${TABLES_ONLY:-0}" != 1 ]]; then
  for pass in $(seq "$RUNS"); do
    for label in $TRACKERS; do bench_one "$label" "$pass"; done
  done
fi
for pass in $(seq "$RUNS"); do table "$pass"; done | tee "$OUT/summary.md"
