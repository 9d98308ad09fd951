#!/bin/bash
# Throughput measurement recorded in docs/PERFORMANCE.md: on fresh servers (SQLite),
# 3 interleaved rounds of admin apply (server-generated keys and CSRs at c=64, CSRs at
# c=128 and 256) and EST
# simpleenroll (c=32), then 3 rounds of ACME full-flow runs (5,000 orders at c=128, over
# HTTP/1.1 as certbot speaks it, and over HTTP/2 as instant-acme and lego do when the
# server offers it). Needs a release build:
#   cargo build --release --bins --examples && bash benches/throughput.sh
# VELLUM_BIN=/path/to/vellum measures another server binary with the same load generators
# (an older build, for a same-hour comparison on this shared machine).
# Uses 127.0.0.1:19443/19080 and the validator ports 35002 (http-01) and 35053 (DNS).
# The ACME rate limits are off: one IP creates hundreds of accounts (rate_limits.*).
set -u
cd "$(dirname "$0")/.."
B=target/release
SERVER=${VELLUM_BIN:-$B/vellum}
ROUNDS=${ROUNDS:-3}
WORK=$(mktemp -d /tmp/vellum-throughput.XXXXXX)
PID=
TCK=$(getconf CLK_TCK)
# Server CPU time (user + system) in ms, for "server CPU per order" next to the rates:
# the client runs on the same 2 cores, so the rate alone says little about the server.
cpu_ms() { awk -v t="$TCK" '{print int(($14+$15)*1000/t)}' "/proc/$PID/stat"; }
stop() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; PID=; }
trap 'stop; rm -rf "$WORK"' EXIT
start() { # start DIR: a server on a fresh data directory, validator pointed at acme_load
  mkdir -p "$1"
  VELLUM_DATA_DIR=$1 VELLUM_LISTEN_HTTPS=127.0.0.1:19443 VELLUM_LISTEN_HTTP=127.0.0.1:19080 \
  VELLUM_LOG_LEVEL=warn VELLUM_VA_HTTP_PORT=35002 VELLUM_VA_DNS_RESOLVER=127.0.0.1:35053 \
  VELLUM_RATE_LIMITS_ACME_NEW_ACCOUNTS_PER_IP_PER_HOUR=0 VELLUM_RATE_LIMITS_ACME_ORDERS_PER_ACCOUNT_PER_HOUR=0 \
    "$SERVER" serve > "$1.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 150); do curl -sk https://127.0.0.1:19443/healthz >/dev/null && return 0; sleep 0.2; done
  echo "server did not start; see $1.log" >&2; exit 1
}
echo "## $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD 2>/dev/null)"; uptime
start "$WORK/issue"
"$B/vellum-load" --url https://localhost:19443 --data-dir "$WORK/issue" --quota 300000 --requests 10 --concurrency 1 2>/dev/null
for r in $(seq 1 "$ROUNDS"); do
  for m in generated csr; do
    echo "round $r $m: $("$B/vellum-load" --url https://localhost:19443 --data-dir "$WORK/issue" --mode $m \
      --concurrency 64 --requests 20000 --warmup 1000 2>&1 | grep -E 'certificates/s|latency|errors' | tr -s ' \n' ' ')"
  done
  for c in 128 256; do
    echo "round $r csr c=$c: $("$B/vellum-load" --url https://localhost:19443 --data-dir "$WORK/issue" --mode csr \
      --concurrency $c --requests 20000 --warmup 1000 2>&1 | grep -E 'certificates/s|latency|errors' | tr -s ' \n' ' ')"
  done
  echo "round $r est: $("$B/vellum-est-load" --url https://localhost:19443 --data-dir "$WORK/issue" \
    --concurrency 32 --requests 20000 --warmup 1000 2>&1 | grep -E 'enrollments/s|latency|errors' | tr -s ' \n' ' ')"
done
stop
start "$WORK/acme"
"$B/vellum-load" --url https://localhost:19443 --data-dir "$WORK/acme" --quota 40000 --requests 10 --concurrency 1 2>/dev/null
for r in $(seq 1 "$ROUNDS"); do
  for proto in http1 http2; do
    echo "round $r acme $proto:"
    before=$(cpu_ms)
    "$B/examples/acme_load" --directory https://localhost:19443/acme/directory --ca-file "$WORK/acme/root.pem" \
      --http-port 35002 --dns-port 35053 --orders 5000 --concurrency 128 $([ $proto = http1 ] && echo --http1)
    used=$(( $(cpu_ms) - before ))
    echo "server CPU: $used ms for 5128 orders (5000 + 128 warm-up, 128 new accounts) = $(awk -v u="$used" 'BEGIN{printf "%.2f", u/5128}') ms/order"
  done
done
stop
uptime
