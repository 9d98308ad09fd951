#!/bin/bash
# RSS of a server before, during and after an EST wrong-password flood (issue 11, item 4):
#   cargo build --release --bins --examples
#   bash benches/est_flood_rss.sh BIN LABEL [VAR=value …]
# e.g. with the failed-login limits off, so that every request runs argon2:
#   bash benches/est_flood_rss.sh target/release/vellum head \
#     VELLUM_RATE_LIMITS_EST_FAILED_LOGINS_PER_USER=0 VELLUM_RATE_LIMITS_EST_FAILED_LOGINS_PER_IP=0
# Creates 50 EST accounts, then `examples/est_flood` sends wrong passwords for 20 s at
# c=64; prints VmRSS idle, at the peak, and 10 s after. Uses 127.0.0.1:19543/19180; needs jq.
set -u
cd "$(dirname "$0")/.."
BIN=$1; LABEL=$2; shift 2
D=$(mktemp -d /tmp/vellum-flood.XXXXXX)
env VELLUM_DATA_DIR=$D VELLUM_LISTEN_HTTPS=127.0.0.1:19543 VELLUM_LISTEN_HTTP=127.0.0.1:19180 VELLUM_LOG_LEVEL=warn "$@" "$BIN" serve > $D.log 2>&1 &
PID=$!
for _ in $(seq 1 150); do curl -sk https://127.0.0.1:19543/healthz >/dev/null && break; sleep 0.2; done
sleep 1; echo "$LABEL idle at start: $(awk "/VmRSS/{print int(\$2/1024)}" /proc/$PID/status) MB"
TOKEN=$(cat $D/admin-token)
INTER=$(curl -sk -H "Authorization: Bearer $TOKEN" https://127.0.0.1:19543/admin/v1/cas | jq -r '.items[] | select(.kind=="intermediate") | .id' | head -1)
for i in $(seq 0 49); do
  curl -sk -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d "{\"username\":\"flood$i\",\"password\":\"right-password-$i\"}" https://127.0.0.1:19543/admin/v1/cas/$INTER/est/clients
done
rss() { awk '/VmRSS/{print int($2/1024)}' /proc/$PID/status; }
sleep 2
echo "$LABEL idle after creating 50 EST clients: $(rss) MB"
target/release/examples/est_flood --url https://localhost:19543 --ca-file $D/root.pem --users 50 --concurrency 64 --seconds 20 > $D.flood 2>&1 &
FP=$!
MAX=0
while kill -0 $FP 2>/dev/null; do r=$(rss); [ "$r" -gt "$MAX" ] && MAX=$r; sleep 1; done
echo "$LABEL during (peak): $MAX MB; end of flood: $(rss) MB; $(cat $D.flood)"
sleep 10
echo "$LABEL 10 s after: $(rss) MB"
kill $PID; wait $PID 2>/dev/null
rm -rf $D $D.log $D.flood
