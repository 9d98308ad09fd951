#!/bin/bash
# Issuance/s with the CA key in a PKCS#11 token (SoftHSM2) next to the same CA type with
# its key in the database (issue 17), on one server:
#   cargo build --release --bins
#   bash benches/hsm_ab.sh [ROUNDS]          (REQUESTS=5000 CONCURRENCY=32 by default)
# A SoftHSM2 token in a scratch dir, one server (SQLite) configured with it, then four
# enabled hierarchies: EC P-256 and RSA 2048, each with the keys in the database and in the
# token. Each round, for each intermediate in turn: `vellum-load --mode csr` (client CSRs,
# so the server's work is verify the CSR + sign + record) for REQUESTS certificates after a
# 200 warm-up; prints certificates/s and the server's CPU (user + system, from
# /proc/<pid>/stat; SoftHSM runs inside the server process) per certificate.
# Uses 127.0.0.1:18743/18780 (the HSM session's port range).
set -u
cd "$(dirname "$0")/.."
ROUNDS=${1:-3} N=${REQUESTS:-5000} C=${CONCURRENCY:-32}
WORK=$(mktemp -d /tmp/vellum-hsm-ab.XXXXXX)
PID=
TCK=$(getconf CLK_TCK)
stop() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; PID=; }
trap 'stop; rm -rf "$WORK"' EXIT
ticks() { awk '{print $14+$15}' "/proc/$PID/stat"; }
per_cert() { awk -v t="$1" -v h="$TCK" -v n="$2" 'BEGIN{printf "%.3f", t*1000/h/n}'; }
MODULE=$(ls /usr/lib/softhsm/libsofthsm2.so /usr/lib/*/softhsm/libsofthsm2.so 2>/dev/null | head -n1)
[ -n "$MODULE" ] || { echo "softhsm2 is not installed" >&2; exit 2; }

export SOFTHSM2_CONF=$WORK/softhsm2.conf
mkdir -p "$WORK/tokens" "$WORK/data"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$WORK/tokens" >"$SOFTHSM2_CONF"
softhsm2-util --init-token --free --label bench --pin 1234 --so-pin 5678 >/dev/null
VELLUM_DATA_DIR=$WORK/data VELLUM_LISTEN_HTTPS=127.0.0.1:18743 VELLUM_LISTEN_HTTP=127.0.0.1:18780 \
VELLUM_LOG_LEVEL=warn VELLUM_PKCS11_MODULE=$MODULE VELLUM_PKCS11_TOKEN_LABEL=bench VELLUM_PKCS11_PIN=1234 \
  target/release/vellum serve >"$WORK/server.log" 2>&1 &
PID=$!
for _ in $(seq 1 150); do curl -sk https://127.0.0.1:18743/healthz >/dev/null && break; sleep 0.2; done
TOKEN=$(head -n1 "$WORK/data/admin-token")
api() { curl -sk -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -X "$1" "https://127.0.0.1:18743/admin/v1$2" ${3:+-d "$3"}; }
declare -A CAS
for alg in ec-p256 rsa-2048; do
  for storage in database pkcs11; do
    v=$(api POST /cas "{\"kind\":\"root\",\"common_name\":\"Bench $alg $storage\",\"key_algorithm\":\"$alg\",\"quota\":10}")
    root=$(jq -r .id <<<"$v"); inter=$(jq -r .intermediate_id <<<"$v")
    for id in "$root" "$inter"; do
      st=$(api POST "/cas/$id/enable" "{\"mode\":\"generate\",\"key_storage\":\"$storage\"}" | jq -r .key_storage)
      [ "$st" = "$storage" ] || { echo "enable $id ($alg, $storage) failed" >&2; cat "$WORK/server.log" >&2; exit 1; }
    done
    CAS[$alg/$storage]=$inter
  done
done
for r in $(seq 1 "$ROUNDS"); do
  for key in ec-p256/database ec-p256/pkcs11 rsa-2048/database rsa-2048/pkcs11; do
    ca=${CAS[$key]}
    before=$(ticks)
    rate=$(target/release/vellum-load --url https://localhost:18743 --data-dir "$WORK/data" --ca "$ca" \
      --mode csr --concurrency "$C" --requests "$N" --warmup 200 2>&1 |
      grep -o 'certificates/s: *[0-9.]*' | grep -o '[0-9.]*$')
    after=$(ticks)
    echo "round $r $key: ${rate:-?} certificates/s, server CPU $(per_cert $((after - before)) $((N + 200))) ms/cert"
  done
done
