#!/usr/bin/env bash
# Seeder benchmarks (see docs/BENCHMARKS.md, "Seeder"): ours against a baseline, same run.
#
#   hash     Hashing a 1 GiB folder (8 x 128 MiB of random data, 1 MiB pieces): the torrent
#            builder `publish` uses, alone (seeder/examples/build_torrent.rs), against
#            `mktorrent -t <cores>` on the same folder and piece length; cold page cache (when
#            we may drop it) and warm. Runs of the two alternate (and which goes first), so a
#            busy neighbour on shared cores hits both alike. The info-hashes must be equal.
#   publish  The whole `swarmcdn-seeder publish` of the same folder (walk, copy into the store
#            with per-file SHA-256 and fsync, piece hashing, signing, registering at a local
#            tracker), with its phases. For context: mktorrent does only the piece hashing.
#   webseed  The web seed serving one 256 MiB file over loopback against nginx serving the very
#            same file on disk (`sendfile on`): whole-file GETs with curl, and 16 MiB Range GETs
#            (what BitTorrent clients send) with wrk over 1 and 4 keep-alive connections. The
#            seeder runs with its default upload cap, 0 = none, so nothing is paced.
#
# Everything listens on 127.0.0.1 only, and everything started here is stopped on exit.
# Needs: cargo, mktorrent, nginx, curl, wrk, python3 (to find free ports), transmission-show
# (optional: cross-checks the info-hashes). Dropping the page cache needs root; without it
# only warm-cache runs are made.
#
# Settings (environment): REPS (default 5) runs of each hashing/publish measurement,
# HTTP_REPS (default 5) of each HTTP one, WRK_SECS (default 5) per wrk run, PARTS (default
# "hash publish webseed"), BENCH_DIR (default target/bench-seeder) for the data and the
# stores, KEEP_DATA=1 to keep the 1.3 GiB of generated data for the next run.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
REPS=${REPS:-5}
HTTP_REPS=${HTTP_REPS:-5}
WRK_SECS=${WRK_SECS:-5}
PARTS=" ${PARTS:-hash publish webseed} "
BENCH_DIR=${BENCH_DIR:-$ROOT/target/bench-seeder}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

part() { [[ $PARTS == *" $1 "* ]]; }
log() { printf '%s\n' "$*" >&2; }

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$BENCH_DIR/stores" "$BENCH_DIR/nginx" "$BENCH_DIR/tracker" "$BENCH_DIR/out"
    if [[ "${KEEP_DATA:-0}" != 1 ]]; then rm -rf "$BENCH_DIR/data"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need() { command -v "$1" >/dev/null || { log "missing: $1 ($2)"; exit 1; }; }
need cargo "the Rust toolchain"
need python3 "to pick free ports"
need curl "apt-get install curl"
if part hash; then need mktorrent "apt-get install mktorrent"; fi
if part webseed; then
    need nginx "apt-get install nginx"
    need wrk "apt-get install wrk"
fi

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The median of the numbers on stdin.
median() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "nan"; exit }
        if (NR % 2) print v[(NR + 1) / 2]; else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

CAN_DROP=0
if [[ -w /proc/sys/vm/drop_caches ]] && (sync && echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then
    CAN_DROP=1
fi
drop_caches() { sync && echo 3 >/proc/sys/vm/drop_caches; }

# Runs "$@" (in a subshell: call it as $(timed ...)) and prints its wall time and the CPU time
# (user + system) it used, in seconds; its output goes to $BENCH_DIR/out/last.
timed() {
    local start end
    start=$EPOCHREALTIME
    "$@" >"$BENCH_DIR/out/last" 2>&1 || { cat "$BENCH_DIR/out/last" >&2; return 1; }
    end=$EPOCHREALTIME
    # `times` prints this shell's then its children's user and system time, as 0m1.234s. (Into
    # a file: in a pipe it would run in a new subshell, which has no children.)
    times >"$BENCH_DIR/out/times"
    awk -v a="$start" -v b="$end" 'NR == 2 {
        gsub(/[ms]/, " "); printf "%.3f %.3f\n", b - a, $1 * 60 + $2 + $3 * 60 + $4 }' \
        "$BENCH_DIR/out/times"
}

# Polls URL until it answers 2xx, for at most about 30 s.
wait_http() {
    local i
    for i in $(seq 300); do
        curl -sf -o /dev/null "$1" && return 0
        sleep 0.1
    done
    log "no answer from $1"
    return 1
}

# ---------------------------------------------------------------------------------------------
log "== building release binaries"
cargo build --release --quiet -p swarmcdn-seeder -p swarmcdn-tracker --bins
cargo build --release --quiet -p swarmcdn-seeder --example build_torrent
SEEDER=$BIN/swarmcdn-seeder
TRACKER=$BIN/swarmcdn-tracker
BUILD_TORRENT=$BIN/examples/build_torrent

mkdir -p "$BENCH_DIR/out" "$BENCH_DIR/data"
FOLDER=$BENCH_DIR/data/bench-1g
BIGDIR=$BENCH_DIR/data/webseed
make_file() { # PATH MIB
    local bytes=$(($2 * 1024 * 1024))
    if [[ ! -f "$1" || $(stat -c %s "$1") -ne $bytes ]]; then
        head -c "$bytes" /dev/urandom >"$1.tmp" && mv "$1.tmp" "$1"
    fi
}
log "== data: 8 x 128 MiB in $FOLDER, 1 x 256 MiB in $BIGDIR"
mkdir -p "$FOLDER" "$BIGDIR"
for i in 0 1 2 3 4 5 6 7; do make_file "$FOLDER/part-$i.bin" 128; done
make_file "$BIGDIR/big.bin" 256
sync

CORES=$(nproc)
PIECE_LOG2=20 # 1 MiB: what `publish` picks for 1 GiB (the smallest giving at most 2000 pieces)
MODES=(warm)
if [[ $CAN_DROP == 1 ]]; then MODES=(cold warm); fi
declare -A T # measurement name -> space-separated runs

# ---------------------------------------------------------------------------------------------
log "== tracker (publish needs one)"
mkdir -p "$BENCH_DIR/tracker"
TRACKER_PORT=$(free_port)
DB=$BENCH_DIR/tracker/registry.sqlite
"$TRACKER" --db "$DB" serve --listen "127.0.0.1:$TRACKER_PORT" >"$BENCH_DIR/tracker/log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$TRACKER_PORT/healthz"
KEY=$BENCH_DIR/tracker/publisher.key
PUBKEY=$("$SEEDER" keygen --out "$KEY" | awk '/^Public key:/ { print $3 }')
SWARMCDN_TOKEN=$("$TRACKER" --db "$DB" publisher add bench --public-key "$PUBKEY" |
    awk '/^token:/ { print $2 }')
export SWARMCDN_TOKEN
publish() { # DIR NAME VERSION STORE
    RUST_LOG=swarmcdn_seeder=debug "$SEEDER" --store "$4" publish "$1" --name "$2" \
        --version "$3" --key "$KEY" --tracker "http://127.0.0.1:$TRACKER_PORT" \
        --webseed-url "" --no-progress
}

# ---------------------------------------------------------------------------------------------
SAME_HASH="not checked"
if part hash; then
    log "== hash: 1 GiB, 2^$PIECE_LOG2-byte pieces, $REPS runs each (${MODES[*]} cache)"
    for mode in "${MODES[@]}"; do
        # Warm runs start with the folder in the page cache.
        if [[ $mode == warm ]]; then cat "$FOLDER"/* >/dev/null; fi
        for rep in $(seq "$REPS"); do
            # Alternate which goes first, so that neither always follows the other.
            order=(ours mktorrent)
            if ((rep % 2 == 0)); then order=(mktorrent ours); fi
            for who in "${order[@]}"; do
                if [[ $mode == cold ]]; then drop_caches; fi
                if [[ $who == ours ]]; then
                    run=$(timed "$BUILD_TORRENT" "$FOLDER" "$PIECE_LOG2")
                    read -r ours ours_cpu <<<"$run"
                    ours_hash=$(sed -n 's/^info_hash=//p' "$BENCH_DIR/out/last")
                else
                    rm -f "$BENCH_DIR/out/mk.torrent"
                    run=$(timed mktorrent -t "$CORES" -l "$PIECE_LOG2" -d \
                        -a "http://127.0.0.1/announce" -o "$BENCH_DIR/out/mk.torrent" "$FOLDER")
                    read -r mk mk_cpu <<<"$run"
                fi
            done
            T[hash_ours_$mode]+="$ours "
            T[hash_mktorrent_$mode]+="$mk "
            T[hash_cpu_ours_$mode]+="$ours_cpu "
            T[hash_cpu_mktorrent_$mode]+="$mk_cpu "
            log "   $mode $rep: ours $ours s ($ours_cpu s CPU), mktorrent $mk s ($mk_cpu s CPU)"
        done
    done
    if command -v transmission-show >/dev/null; then
        mk_hash=$(transmission-show "$BENCH_DIR/out/mk.torrent" | awk '/Hash:/ { print $2; exit }')
        if [[ "${mk_hash,,}" == "${ours_hash,,}" ]]; then
            SAME_HASH="yes, $ours_hash"
        else
            SAME_HASH="NO: ours $ours_hash, mktorrent $mk_hash"
        fi
    fi
fi

if part publish; then
    log "== publish: the same folder, $REPS runs (${MODES[0]} cache)"
    for rep in $(seq "$REPS"); do
        store=$BENCH_DIR/stores/publish-$rep
        if [[ $CAN_DROP == 1 ]]; then drop_caches; fi
        run=$(timed publish "$FOLDER" bench-1g "1.0.$rep" "$store")
        read -r t cpu <<<"$run"
        T[publish_cpu]+="$cpu "
        copy_ms=$(sed -n 's/.*copied into the store.* ms=\([0-9]*\).*/\1/p' "$BENCH_DIR/out/last")
        sha1_ms=$(sed -n 's/.*hashed the pieces.* ms=\([0-9]*\).*/\1/p' "$BENCH_DIR/out/last")
        T[publish]+="$t "
        T[publish_copy]+="$(awk -v m="$copy_ms" 'BEGIN { printf "%.3f", m / 1000 }') "
        T[publish_pieces]+="$(awk -v m="$sha1_ms" 'BEGIN { printf "%.3f", m / 1000 }') "
        log "   $rep: $t s, $cpu s CPU (copy, SHA-256/384, fsync $copy_ms ms; pieces $sha1_ms ms)"
        rm -rf "$store"
    done
fi

# ---------------------------------------------------------------------------------------------
if part webseed; then
    log "== webseed: one 256 MiB file, $HTTP_REPS runs each"
    STORE=$BENCH_DIR/stores/webseed
    publish "$BIGDIR" webseed-bench 1.0.0 "$STORE" >"$BENCH_DIR/out/publish-webseed" 2>&1
    IH=$(awk '$1 == "info-hash" { print $2; exit }' "$BENCH_DIR/out/publish-webseed")
    REL=webseed-bench-1.0.0/big.bin
    [[ -f "$STORE/$IH/$REL" ]] || { log "the stored file is not at $STORE/$IH/$REL"; exit 1; }

    SEED_PORT=$(free_port)
    "$SEEDER" --store "$STORE" serve --listen "127.0.0.1:$SEED_PORT" --no-verify \
        >"$BENCH_DIR/out/serve.log" 2>&1 &
    PIDS+=($!)
    OURS_URL="http://127.0.0.1:$SEED_PORT/webseed/$IH/$REL"
    wait_http "$OURS_URL"

    # nginx serves the seeder's own copy of the file: same bytes, same inode, same cache.
    NGINX_PORT=$(free_port)
    NG=$BENCH_DIR/nginx
    mkdir -p "$NG/tmp"
    cat >"$NG/nginx.conf" <<EOF
user root;
worker_processes auto;
daemon off;
pid $NG/nginx.pid;
error_log $NG/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path $NG/tmp;
    proxy_temp_path $NG/tmp;
    fastcgi_temp_path $NG/tmp;
    uwsgi_temp_path $NG/tmp;
    scgi_temp_path $NG/tmp;
    types { application/octet-stream bin; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $STORE/$IH;
    }
}
EOF
    nginx -p "$NG" -c "$NG/nginx.conf" &
    PIDS+=($!)
    NGINX_URL="http://127.0.0.1:$NGINX_PORT/$REL"
    wait_http "$NGINX_URL"

    [[ $(curl -s "$OURS_URL" | sha256sum) == $(curl -s "$NGINX_URL" | sha256sum) ]] ||
        { log "the two servers sent different bytes"; exit 1; }
    cat "$STORE/$IH/$REL" >/dev/null # both serve from the page cache

    # wrk: keep-alive connections sending 16 MiB Range GETs that walk through the file.
    cat >"$BENCH_DIR/out/ranges.lua" <<'EOF'
local piece = 16 * 1024 * 1024
local pieces = 16
local i = 0
request = function()
    local start = (i % pieces) * piece
    i = i + 1
    return wrk.format("GET", nil, { Range = "bytes=" .. start .. "-" .. (start + piece - 1) })
end
done = function(summary, latency, requests)
    io.write(string.format("BYTES_PER_SEC %.0f\n", summary.bytes / (summary.duration / 1e6)))
end
EOF
    curl_rate() { curl -s -o /dev/null -w '%{speed_download}\n' "$1"; }
    # CPU seconds used so far by the processes with these ids (and their threads).
    TICK=$(getconf CLK_TCK)
    cpu_secs() {
        local pid total=0 stat
        for pid in "$@"; do
            stat=$(cut -d')' -f2- "/proc/$pid/stat")
            total=$((total + $(awk '{ print $12 + $13 }' <<<"$stat")))
        done
        awk -v t="$total" -v hz="$TICK" 'BEGIN { printf "%.2f", t / hz }'
    }
    SEED_PID=${PIDS[-2]}
    NGINX_PIDS=("${PIDS[-1]}" $(pgrep -P "${PIDS[-1]}"))
    wrk_rate() { # CONNECTIONS URL
        wrk -t 1 -c "$1" -d "${WRK_SECS}s" -s "$BENCH_DIR/out/ranges.lua" "$2" |
            awk '$1 == "BYTES_PER_SEC" { print $2 }'
    }
    for rep in $(seq "$HTTP_REPS"); do
        before=$(cpu_secs "$SEED_PID")
        T[ws_full_ours]+="$(curl_rate "$OURS_URL") "
        T[cpu_ours]+="$(awk -v a="$before" -v b="$(cpu_secs "$SEED_PID")" 'BEGIN { print (b - a) * 4 }') "
        before=$(cpu_secs "${NGINX_PIDS[@]}")
        T[ws_full_nginx]+="$(curl_rate "$NGINX_URL") "
        T[cpu_nginx]+="$(awk -v a="$before" -v b="$(cpu_secs "${NGINX_PIDS[@]}")" 'BEGIN { print (b - a) * 4 }') "
    done
    for c in 1 4; do
        for rep in $(seq "$HTTP_REPS"); do
            T[ws_range${c}_ours]+="$(wrk_rate "$c" "$OURS_URL") "
            T[ws_range${c}_nginx]+="$(wrk_rate "$c" "$NGINX_URL") "
        done
    done
fi

# ---------------------------------------------------------------------------------------------
med() { tr ' ' '\n' <<<"${T[$1]:-}" | grep . | median; }
best() { tr ' ' '\n' <<<"${T[$1]:-}" | grep . | sort -g | head -1; }
# LABEL OURS BASELINE TARGET(ratio, or "") LOWER_IS_BETTER(1|0)
row() {
    local ratio met="-"
    if [[ $5 == 1 ]]; then
        ratio=$(awk -v a="$2" -v b="$3" 'BEGIN { printf "%.2f", b / a }')
    else
        ratio=$(awk -v a="$2" -v b="$3" 'BEGIN { printf "%.2f", a / b }')
    fi
    if [[ -n $4 ]]; then
        met=$(awk -v r="$ratio" -v t="$4" 'BEGIN { print (r >= t ? "met" : "NOT met") }')
        met="$met (>= $4)"
    fi
    printf '| %s | %s | %s | %s | %s |\n' "$1" "$2" "$3" "$ratio" "$met"
}
mib() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1048576 }'; }

echo
echo "Seeder benchmarks, $(date -u +%Y-%m-%dT%H:%MZ), $CORES cores" \
    "($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'))," \
    "load average at the start: $LOAD_BEFORE (the cores are shared)."
echo "Medians of $REPS runs (hashing, publish) and $HTTP_REPS runs (HTTP)." \
    "Ratio: how many times faster ours is (target: at least the number given)."
if part hash; then
    echo
    echo "| hash 1 GiB (8 x 128 MiB), 1 MiB pieces: seconds | ours (builder) | mktorrent -t $CORES | ratio | target |"
    echo "|---|---|---|---|---|"
    for mode in "${MODES[@]}"; do
        row "$mode cache: wall, median" "$(med "hash_ours_$mode")" "$(med "hash_mktorrent_$mode")" 1.0 1
        row "$mode cache: wall, best run" "$(best "hash_ours_$mode")" "$(best "hash_mktorrent_$mode")" "" 1
        row "$mode cache: CPU (user + system), median" "$(med "hash_cpu_ours_$mode")" \
            "$(med "hash_cpu_mktorrent_$mode")" "" 1
    done
    echo
    echo "Same info-hash as mktorrent: $SAME_HASH."
fi
if part publish; then
    echo
    echo "| whole publish of the same folder, ${MODES[0]} cache: seconds | median |"
    echo "|---|---|"
    echo "| walk, copy into the store with per-file SHA-256, fsync, piece hashing, sign, register | $(med publish) |"
    echo "| CPU (user + system) of the whole publish | $(med publish_cpu) |"
    echo "| of which copy with SHA-256 (and SHA-384 for SRI) and fsync | $(med publish_copy) |"
    echo "| of which piece hashing (SHA-1) of the stored copy | $(med publish_pieces) |"
fi
if part webseed; then
    echo
    echo "| web seed, 256 MiB file, loopback: MiB/s | ours | nginx | ratio | target |"
    echo "|---|---|---|---|---|"
    row "whole-file GET (curl)" "$(mib "$(med ws_full_ours)")" "$(mib "$(med ws_full_nginx)")" 0.8 0
    row "16 MiB Range GETs, 1 connection (wrk)" "$(mib "$(med ws_range1_ours)")" \
        "$(mib "$(med ws_range1_nginx)")" 0.8 0
    row "16 MiB Range GETs, 4 connections (wrk)" "$(mib "$(med ws_range4_ours)")" \
        "$(mib "$(med ws_range4_nginx)")" "" 0
    echo
    echo "Server CPU seconds per GiB sent (whole-file GETs): ours $(med cpu_ours), nginx $(med cpu_nginx)."
fi
echo
echo "Every run (seconds; bytes per second for ws_*; CPU seconds per GiB for cpu_*):"
for k in $(printf '%s\n' "${!T[@]}" | sort); do echo "  $k: ${T[$k]}"; done
