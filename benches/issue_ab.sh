#!/bin/bash
# Interleaved A/B of admin and EST issuance between server binaries, on this shared
# machine (absolute numbers drift between minutes; ratios within one run hold up):
#   cargo build --release --bins --examples
#   bash benches/issue_ab.sh /path/to/vellum-A /path/to/vellum-B [ROUNDS]
# Each round, for each binary: a server on a fresh data directory (SQLite), quota top-up,
# then admin apply with CSRs (`vellum-load --mode csr`, c=64) and EST simpleenroll
# (`vellum-est-load`, c=32), REQUESTS each (default 10000, 500 warm-up); prints the rates
# and the server's CPU (user + system, from /proc/<pid>/stat) per certificate.
# Uses 127.0.0.1:19443/19080 (AB_HTTPS_PORT / AB_HTTP_PORT change them).
# A_ENV / B_ENV give one side extra environment, so one binary can be compared with itself
# under two settings; the metrics A/B (recording on against off):
#   B_ENV=VELLUM_METRICS_ENABLED=false bash benches/issue_ab.sh target/release/vellum target/release/vellum 5
set -u
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: $0 VELLUM_A VELLUM_B [ROUNDS]" >&2; exit 2; }
A=$1 B=$2 ROUNDS=${3:-3} N=${REQUESTS:-10000}
HP=${AB_HTTPS_PORT:-19443} PP=${AB_HTTP_PORT:-19080}
WORK=$(mktemp -d /tmp/vellum-issue-ab.XXXXXX)
PID=
TCK=$(getconf CLK_TCK)
stop() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; PID=; }
trap 'stop; rm -rf "$WORK"' EXIT
ticks() { awk '{print $14+$15}' "/proc/$PID/stat"; }
per_cert() { awk -v t="$1" -v h="$TCK" -v n="$2" 'BEGIN{printf "%.3f", t*1000/h/n}'; }
for r in $(seq 1 "$ROUNDS"); do
  for side in A B; do
    bin=${!side}
    extra_env=${side}_ENV; extra_env=${!extra_env:-}
    # One data directory per side and round (binaries often share a basename: "vellum").
    d="$WORK/r$r-$side"; mkdir -p "$d"
    VELLUM_DATA_DIR=$d VELLUM_LISTEN_HTTPS=127.0.0.1:$HP VELLUM_LISTEN_HTTP=127.0.0.1:$PP \
    VELLUM_LOG_LEVEL=warn env $extra_env "$bin" serve > "$d.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 150); do curl -sk https://127.0.0.1:$HP/healthz >/dev/null && break; sleep 0.2; done
    target/release/vellum-load --url https://localhost:$HP --data-dir "$d" --quota $((3 * N + 5000)) \
      --requests 10 --concurrency 1 >/dev/null 2>&1
    before=$(ticks)
    admin=$(target/release/vellum-load --url https://localhost:$HP --data-dir "$d" --mode csr \
      --concurrency 64 --requests "$N" --warmup 500 2>&1 | grep -o 'certificates/s: *[0-9.]*' | grep -o '[0-9.]*$')/s
    mid=$(ticks)
    est=$(target/release/vellum-est-load --url https://localhost:$HP --data-dir "$d" \
      --concurrency 32 --requests "$N" --warmup 500 2>&1 | grep -o 'enrollments/s: *[0-9.]*' | grep -o '[0-9.]*$')/s
    after=$(ticks)
    echo "round $r $side $bin${extra_env:+ ($extra_env)}: admin csr $admin, server CPU $(per_cert $((mid - before)) $((N + 500))) ms/cert;" \
      "est $est, server CPU $(per_cert $((after - mid)) $((N + 500))) ms/cert"
    stop
  done
done
