#!/bin/bash
# Interleaved A/B of the ACME full flow between server binaries, on this shared machine
# (absolute numbers drift between minutes; ratios within one run hold up):
#   cargo build --release --bins --examples
#   bash benches/acme_ab.sh /path/to/vellum-A /path/to/vellum-B [ROUNDS]
# Each round, for each binary: a server on a fresh data directory (SQLite), quota top-up,
# then `acme_load --orders 3000 --concurrency ${ACME_CONCURRENCY:-64}`; prints orders/s and the server's CPU
# (user + system, from /proc/<pid>/stat) per order, 64 warm-up orders included.
# ACME_LOAD_ARGS adds arguments to acme_load (e.g. --http1).
# Uses 127.0.0.1:19443/19080 and the validator ports 35002 (http-01) and 35053 (DNS).
set -u
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: $0 VELLUM_A VELLUM_B [ROUNDS]" >&2; exit 2; }
A=$1 B=$2 ROUNDS=${3:-3}
WORK=$(mktemp -d /tmp/vellum-acme-ab.XXXXXX)
PID=
TCK=$(getconf CLK_TCK)
stop() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; PID=; }
trap 'stop; rm -rf "$WORK"' EXIT
for r in $(seq 1 "$ROUNDS"); do
  for side in A B; do
    bin=${!side}
    # One data directory per side and round (binaries often share a basename: "vellum").
    d="$WORK/r$r-$side"; mkdir -p "$d"
    VELLUM_DATA_DIR=$d VELLUM_LISTEN_HTTPS=127.0.0.1:19443 VELLUM_LISTEN_HTTP=127.0.0.1:19080 \
    VELLUM_LOG_LEVEL=warn VELLUM_VA_HTTP_PORT=35002 VELLUM_VA_DNS_RESOLVER=127.0.0.1:35053 \
    VELLUM_RATE_LIMITS_ACME_NEW_ACCOUNTS_PER_IP_PER_HOUR=0 VELLUM_RATE_LIMITS_ACME_ORDERS_PER_ACCOUNT_PER_HOUR=0 \
      "$bin" serve > "$d.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 150); do curl -sk https://127.0.0.1:19443/healthz >/dev/null && break; sleep 0.2; done
    target/release/vellum-load --url https://localhost:19443 --data-dir "$d" --quota 30000 \
      --requests 10 --concurrency 1 >/dev/null 2>&1
    before=$(awk '{print $14+$15}' "/proc/$PID/stat")
    rate=$(target/release/examples/acme_load --directory https://localhost:19443/acme/directory \
      --ca-file "$d/root.pem" --http-port 35002 --dns-port 35053 --orders 3000 --concurrency ${ACME_CONCURRENCY:-64} ${ACME_LOAD_ARGS:-} \
      | grep -o '[0-9.]* orders/s')
    ticks=$(( $(awk '{print $14+$15}' "/proc/$PID/stat") - before ))
    echo "round $r $bin: $rate, server CPU $(awk -v t="$ticks" -v h="$TCK" -v c="${ACME_CONCURRENCY:-64}" 'BEGIN{printf "%.2f", t*1000/h/(3000+c)}') ms/order"
    stop
  done
done
