#!/usr/bin/env bash
# GET /metrics judged by Prometheus itself (Debian's `prometheus` package):
# `promtool check metrics` on a scrape (no errors, no lint findings); then a
# real Prometheus with a temporary configuration scraping the server's
# /metrics every second, certificates issued through the admin API and EST
# (curl, HTTP Basic), and queries of the Prometheus HTTP API: `up` is 1, the
# issuance counter summed over the run equals the number of certificates
# issued by this script (per door too), the quota gauge equals the admin API's
# quota_remaining.
#
#   bash conformance/metrics.sh   (see lib.sh for the environment)
#
# Environment (optional): VELLUM_CONFORMANCE_PROMETHEUS_PORTS, ports to try for
# Prometheus's own listener (default: 18590-18599, the first free one).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=lib-est.sh
source "$HERE/lib-est.sh"
conformance_init metrics prometheus promtool

ADMIN_N=4 # certificates issued through the admin API
EST_N=2   # and through EST
PROM_PID=""
PROM_PORT=""
D="$WORK/metrics"
mkdir -p "$D"

stop_prometheus() {
  [[ -n $PROM_PID ]] || return 0
  kill -TERM "$PROM_PID" 2>/dev/null || true
  wait "$PROM_PID" 2>/dev/null || true
  PROM_PID=""
}

# scrape OUT [CURL_ARGS...]: GET /metrics on the plain-HTTP listener; prints the status.
scrape() { plain_get /metrics "$@"; }

# prom_query PROMQL: the value of a one-sample instant query ("" when none).
prom_query() {
  curl -sS --max-time 10 "http://127.0.0.1:$PROM_PORT/api/v1/query" \
    --data-urlencode "query=$1" 2>/dev/null |
    jq -r 'if .status == "success" and (.data.result | length) == 1 then .data.result[0].value[1] else "" end' 2>/dev/null || true
}

# prom_wait PROMQL WANT [SECS]: polls PROMQL until it answers WANT (default 20 s); prints
# the last answer; returns non-zero when WANT never came.
prom_wait() {
  local q=$1 want=$2 deadline=$((SECONDS + ${3:-20})) got=""
  while ((SECONDS < deadline)); do
    got=$(prom_query "$q")
    [[ $got == "$want" ]] && { echo "$got"; return 0; }
    sleep 0.5
  done
  echo "${got:-no sample}"
  return 1
}

# =================================================================================
section "promtool check metrics on a scrape"
# =================================================================================
est_start || finish
INT_ID=$BOOT_INT_ID

st=$(scrape "$D/scrape0.txt" -D "$D/scrape0.hdr")
if [[ $st == 200 ]] && grep -qi '^content-type: text/plain; version=0.0.4' "$D/scrape0.hdr"; then
  pass "GET /metrics on the plain-HTTP listener -> 200 text/plain; version=0.0.4" \
    "$(grep -c '^vellum_' "$D/scrape0.txt") samples"
else
  fail "GET /metrics on the plain-HTTP listener -> 200 text/plain; version=0.0.4" "HTTP $st" \
    "$(tr -d '\r' <"$D/scrape0.hdr" 2>/dev/null)" "$(head -c 600 "$D/scrape0.txt")"
fi
if out=$(promtool check metrics <"$D/scrape0.txt" 2>&1) && [[ -z $out ]]; then
  pass "promtool check metrics: no errors, no lint findings"
else
  fail "promtool check metrics: no errors, no lint findings" "$out"
fi

# =================================================================================
section "a real Prometheus scraping /metrics every second"
# =================================================================================
for port in ${VELLUM_CONFORMANCE_PROMETHEUS_PORTS:-$(seq 18590 18599)}; do
  if python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$port" 2>/dev/null; then
    PROM_PORT=$port
    break
  fi
done
[[ -n $PROM_PORT ]] || { fail "a free port for Prometheus" "none free in ${VELLUM_CONFORMANCE_PROMETHEUS_PORTS:-18590-18599}"; finish; }
cat >"$D/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: vellum
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:$HTTP_PORT"]
EOF
if out=$(promtool check config "$D/prometheus.yml" 2>&1); then
  note "promtool check config: OK"
else
  fail "promtool check config of the temporary configuration" "$out"
  finish
fi
CLEANUPS+=(stop_prometheus)
prometheus --config.file="$D/prometheus.yml" --storage.tsdb.path="$D/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn \
  >"$D/prometheus.log" 2>&1 </dev/null &
PROM_PID=$!
ready=0
for _ in $(seq 1 100); do
  kill -0 "$PROM_PID" 2>/dev/null || break
  curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$PROM_PORT/-/ready" && { ready=1; break; }
  sleep 0.2
done
if ((ready)); then
  pass "Prometheus $(prometheus --version 2>&1 | head -n1 | awk '{print $3}') ready on 127.0.0.1:$PROM_PORT"
else
  fail "Prometheus starts" "$(tail -n 20 "$D/prometheus.log")"
  finish
fi
if got=$(prom_wait 'up{job="vellum"}' 1); then
  pass "Prometheus scrapes /metrics: up{job=\"vellum\"} = 1"
else
  fail "Prometheus scrapes /metrics: up{job=\"vellum\"} = 1" "got $got" \
    "$(curl -sS "http://127.0.0.1:$PROM_PORT/api/v1/targets" | jq -c '.data.activeTargets[]? | {health, lastError}' 2>/dev/null)"
fi
# Before this script issued anything: no door has issued (the server's own TLS
# certificate comes through no door).
got=$(prom_query 'sum(vellum_issuances_total{outcome="issued"})')
if [[ -z $got || $got == 0 ]]; then
  pass "before issuing: sum(vellum_issuances_total{outcome=\"issued\"}) is 0 (or absent)" "got '${got}'"
else
  fail "before issuing: sum(vellum_issuances_total{outcome=\"issued\"}) is 0 (or absent)" "got $got"
fi

# =================================================================================
section "certificates issued, then counted by Prometheus"
# =================================================================================
issued_admin=0
for i in $(seq 1 "$ADMIN_N"); do
  api POST "/cas/$INT_ID/certificates" \
    "$(jq -nc --arg cn "m$i.metrics.vellum.test" '{type:"server", common_name:$cn, validity_days:90}')"
  [[ $API_STATUS == 201 ]] && issued_admin=$((issued_admin + 1))
done
if ((issued_admin == ADMIN_N)); then
  pass "admin API: $ADMIN_N certificates issued (201)"
else
  fail "admin API: $ADMIN_N certificates issued (201)" "only $issued_admin" "$(_api_failure_details)"
fi
issued_est=0
for i in $(seq 1 "$EST_N"); do
  est_b64_csr "$D/est$i.key" "$D/est$i.csr.b64" "/CN=m$i.devices.vellum.test"
  est_call POST simpleenroll "$D/est$i.b64" -u "$EST_USER:$EST_PASS" \
    -H 'Content-Type: application/pkcs10' -H 'Content-Transfer-Encoding: base64' \
    --data-binary "@$D/est$i.csr.b64"
  [[ $EST_STATUS == 200 ]] && issued_est=$((issued_est + 1))
done
if ((issued_est == EST_N)); then
  pass "EST: $EST_N certificates enrolled (curl simpleenroll, HTTP Basic)"
else
  fail "EST: $EST_N certificates enrolled (curl simpleenroll, HTTP Basic)" "only $issued_est" \
    "$(est_details "$D/est$EST_N.b64")"
fi
total=$((issued_admin + issued_est))

q='sum(vellum_issuances_total{outcome="issued"})'
if got=$(prom_wait "$q" "$total"); then
  pass "Prometheus: $q = $total, the certificates this run issued"
else
  fail "Prometheus: $q = $total, the certificates this run issued" "got $got"
fi
for door_n in "admin $issued_admin" "est $issued_est"; do
  read -r door n <<<"$door_n"
  q="sum(vellum_issuances_total{door=\"$door\",ca=\"$INT_ID\",outcome=\"issued\"})"
  if got=$(prom_wait "$q" "$n" 5); then
    pass "Prometheus: $q = $n"
  else
    fail "Prometheus: $q = $n" "got $got"
  fi
done
q="sum(vellum_est_enrollments_total{operation=\"simpleenroll\",auth=\"basic\",outcome=\"issued\"})"
if got=$(prom_wait "$q" "$issued_est" 5); then
  pass "Prometheus: $q = $issued_est"
else
  fail "Prometheus: $q = $issued_est" "got $got"
fi

api GET "/cas/$INT_ID"
remaining=$(jb '.quota_remaining')
# The gauge is read from the database at most every 5 s: wait for a fresh one.
q="vellum_ca_quota_remaining{ca=\"$INT_ID\"}"
if got=$(prom_wait "$q" "$remaining" 20); then
  pass "Prometheus: $q = $remaining, the admin API's quota_remaining"
else
  fail "Prometheus: $q = $remaining, the admin API's quota_remaining" "got $got"
fi
q='sum(vellum_http_request_duration_seconds_count{route="admin",status_class="2xx"})'
got=$(prom_query "$q")
if [[ -n $got && $got != 0 ]]; then
  pass "Prometheus: $q > 0" "got $got"
else
  fail "Prometheus: $q > 0" "got '${got}'"
fi

# The last scrape, after the run, still passes promtool.
scrape "$D/scrape1.txt" >/dev/null
if out=$(promtool check metrics <"$D/scrape1.txt" 2>&1) && [[ -z $out ]]; then
  pass "promtool check metrics after the run: no errors, no lint findings"
else
  fail "promtool check metrics after the run: no errors, no lint findings" "$out"
fi

finish
