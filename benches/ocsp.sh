#!/bin/bash
# OCSP GET responses/s, Vellum beside OpenSSL's reference responder, on this shared
# machine (absolute numbers drift between minutes; runs are interleaved and medians kept):
#   cargo build --release
#   bash benches/ocsp.sh [ROUNDS] [SECONDS]
# Needs wrk and ab (apt-get install -y wrk apache2-utils), openssl, curl, jq; nginx
# (apt-get install -y nginx-light) for the ceiling column (skipped without it).
#
# - Vellum: `vellum serve` (SQLite, log level warn) with OCSP on for its bootstrap
#   intermediate (CA key signs), BENCH_LEAVES (100) leaves; wrk cycles through their GET URLs
#   (base64 OCSPRequest without nonce, as RFC 5019 clients send).
# - Reference: `openssl ocsp -index index.txt -port P -rsigner ca.pem -rkey ca.key -CA
#   ca.pem` over an openssl-made P-256 CA with 100 valid leaves in index.txt; once as a
#   single process (how it is usually run) and once with `-multi 2` (one worker per core).
#   It answers HTTP/1.0 and closes the connection after every answer. wrk cannot drive
#   it: wrk's first, empty probe connection leaves OpenSSL 3.0's responder spinning on
#   read() == 0 forever. So the side-by-side uses ab (one tool for both): the reference
#   with new connections (it allows nothing else), Vellum with new connections too and
#   with keep-alive (-k); wrk (keep-alive, 2 threads, 100 URLs) gives Vellum's peak.
# - The ceiling: nginx (2 workers, access log off) serving one of Vellum's responses as a
#   static file, with the same wrk and ab runs: what any HTTP responder that only looks up
#   ready bytes can reach on this machine with this load generator beside it.
# - Then the revocation latency: a leaf whose `good` answer Vellum holds is revoked
#   through the admin API; GET is polled until it says revoked (median of 5).
# wrk: 2 threads, 32 connections (WRK_CONNECTIONS); ab: 32 concurrent requests (8 for
# the single-process reference); SECONDS (default 10) per run.
# Ports 18420-18424 (VELLUM_BENCH_PORT_BASE moves them).
set -u
cd "$(dirname "$0")/.."
ROUNDS=${1:-3} SECS=${2:-10}
BASE=${VELLUM_BENCH_PORT_BASE:-18420}
HTTPS=$BASE HTTP=$((BASE + 1)) REF1=$((BASE + 2)) REF2=$((BASE + 3)) NGX=$((BASE + 4))
CONNS=${WRK_CONNECTIONS:-32}
BIN=${VELLUM_BIN:-target/release/vellum}
W=$(mktemp -d /tmp/vellum-ocsp-bench.XXXXXX)
PIDS=()
cleanup() {
  [ -n "${REF_PID:-}" ] && { pkill -P "$REF_PID" 2>/dev/null; kill "$REF_PID" 2>/dev/null; }
  [ -f "$W/nginx.pid" ] && kill "$(cat "$W/nginx.pid")" 2>/dev/null
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$W"
}
trap cleanup EXIT

# --- Vellum ----------------------------------------------------------------------
VELLUM_DATA_DIR=$W/data VELLUM_LISTEN_HTTPS=127.0.0.1:$HTTPS VELLUM_LISTEN_HTTP=127.0.0.1:$HTTP \
  VELLUM_LOG_LEVEL=warn "$BIN" serve >"$W/vellum.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 150); do curl -sf "http://127.0.0.1:$HTTP/healthz" >/dev/null && break; sleep 0.2; done
TOKEN=$(cat "$W/data/admin-token")
api() {
  curl -sf --cacert "$W/data/root.pem" --resolve "localhost:$HTTPS:127.0.0.1" \
    -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' -X "$1" \
    "https://localhost:$HTTPS/admin/v1$2" ${3:+--data-binary "$3"}
}
INT=$(api GET /cas | jq -r '.items[] | select(.kind == "intermediate") | .id' | head -n1)
ROOT=$(api GET /cas | jq -r '.items[] | select(.kind == "root") | .id' | head -n1)
api POST "/cas/$ROOT/quota/purchase" '{"count":200}' >/dev/null
api POST "/cas/$ROOT/quota/assign" "{\"intermediate_id\":\"$INT\",\"count\":200}" >/dev/null
api PUT "/cas/$INT/ocsp" '{"enabled":true}' >/dev/null
api GET "/cas/$INT" | jq -r .certificate_pem >"$W/int.pem"
b64url() { openssl base64 -A -in "$1" | sed 's|+|%2B|g; s|/|%2F|g; s|=|%3D|g'; }
: >"$W/vellum.paths"
for i in $(seq 1 ${BENCH_LEAVES:-100}); do
  api POST "/cas/$INT/certificates" \
    "{\"type\":\"server\",\"common_name\":\"b$i.bench.example\",\"sans\":[{\"type\":\"dns\",\"value\":\"b$i.bench.example\"}],\"validity_days\":30}" |
    jq -r .certificate_pem >"$W/leaf.pem"
  openssl ocsp -issuer "$W/int.pem" -cert "$W/leaf.pem" -no_nonce -reqout "$W/req.der" >/dev/null 2>&1
  echo "/ocsp/$INT/$(b64url "$W/req.der")" >>"$W/vellum.paths"
done

# --- the reference responder -----------------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/ca.key" \
  -out "$W/ca.pem" -subj "/CN=Reference OCSP CA" -days 30 2>/dev/null
: >"$W/index.txt"
: >"$W/ref.paths"
for i in $(seq 1 ${BENCH_LEAVES:-100}); do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/l.key" -subj "/CN=r$i" \
    -out "$W/l.csr" 2>/dev/null
  openssl x509 -req -in "$W/l.csr" -CA "$W/ca.pem" -CAkey "$W/ca.key" -CAcreateserial -days 30 \
    -out "$W/l.pem" 2>/dev/null
  serial=$(openssl x509 -in "$W/l.pem" -noout -serial | cut -d= -f2)
  printf 'V\t%s\t\t%s\tunknown\t/CN=r%s\n' "$(date -u -d '+30 days' +%y%m%d%H%M%SZ)" "$serial" "$i" >>"$W/index.txt"
  openssl ocsp -issuer "$W/ca.pem" -cert "$W/l.pem" -no_nonce -reqout "$W/req.der" >/dev/null 2>&1
  echo "/$(b64url "$W/req.der")" >>"$W/ref.paths"
done
# The reference is started afresh for every run: once ab stops mid-request, OpenSSL
# 3.0's responder spins on the closed connection and answers nothing more.
REF_PID=
ref_start() { # PORT [ARGS...]
  local port=$1; shift
  openssl ocsp -index "$W/index.txt" -port "$port" -rsigner "$W/ca.pem" -rkey "$W/ca.key" \
    -CA "$W/ca.pem" -nmin 60 "$@" >>"$W/ref.log" 2>&1 &
  REF_PID=$!
  for _ in $(seq 1 50); do curl -sf --max-time 1 -o /dev/null "http://127.0.0.1:$port$(head -n1 "$W/ref.paths")" && break; sleep 0.1; done
}
ref_stop() { pkill -P "$REF_PID" 2>/dev/null; kill "$REF_PID" 2>/dev/null; wait "$REF_PID" 2>/dev/null; REF_PID=; }

# wrk script: cycle through the paths of a file; count non-200 answers.
cat >"$W/paths.lua" <<'EOF'
local paths, i, bad = {}, 0, 0
function init(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
end
function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
function response(status) if status ~= 200 then bad = bad + 1 end end
EOF
run_wrk() { # URL PATHS -> requests/s
  wrk -t2 -c"$CONNS" -d"${SECS}s" -s "$W/paths.lua" "$1" -- "$2" 2>&1 | tee -a "$W/wrk.log" |
    awk '/Requests\/sec/{print int($2)}'
}
# Warm: every Vellum response signed once and held.
for p in $(cat "$W/vellum.paths"); do curl -sf -o /dev/null "http://127.0.0.1:$HTTP$p"; done
ref_start "$REF1"
check=$(curl -sf "http://127.0.0.1:$REF1$(head -n1 "$W/ref.paths")" | openssl ocsp -respin /dev/stdin \
  -issuer "$W/ca.pem" -CAfile "$W/ca.pem" -resp_text 2>&1 | grep -c 'Cert Status: good')
ref_stop
[ "$check" = 1 ] || { echo "the reference responder does not answer good" >&2; cat "$W/ref.log" >&2; exit 1; }

run_ab() { # URL CONCURRENCY [-k] -> requests/s (ab's "Failed" counts length changes
  # only: ECDSA signatures vary by a byte or two)
  ab -q -c "$2" -t "$SECS" -n 10000000 ${3:-} "$1" 2>&1 | tee -a "$W/ab.log" |
    awk '/Requests per second/{print int($4)}'
}
V1=$(head -n1 "$W/vellum.paths") P1=$(head -n1 "$W/ref.paths")
# The ceiling: nginx serving Vellum's first response as a static file.
NGINX=$(command -v nginx || true)
if [ -n "$NGINX" ]; then
  mkdir -p "$W/www"
  curl -sf -o "$W/www/resp.der" "http://127.0.0.1:$HTTP$V1"
  # nginx's workers drop root: the file must be readable by them (mktemp -d is 0700).
  chmod a+x "$W" && chmod a+rx "$W/www" && chmod a+r "$W/www/resp.der"
  : >"$W/nginx.paths"
  for _ in $(seq 1 ${BENCH_LEAVES:-100}); do echo /resp.der >>"$W/nginx.paths"; done
  cat >"$W/nginx.conf" <<EOF
worker_processes 2;
pid $W/nginx.pid;
error_log $W/nginx.err;
events { worker_connections 1024; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$NGX;
    root $W/www;
    location / { default_type application/ocsp-response; }
  }
}
EOF
  "$NGINX" -c "$W/nginx.conf" || NGINX=
  sleep 0.3
  [ -n "$NGINX" ] && ! curl -sf -o /dev/null "http://127.0.0.1:$NGX/resp.der" &&
    { echo "nginx does not serve the response; ceiling skipped" >&2; NGINX=; }
fi
VW=() VK=() VN=() R1=() R2=() NW=() NN=()
for r in $(seq 1 "$ROUNDS"); do
  VW+=("$(run_wrk "http://127.0.0.1:$HTTP" "$W/vellum.paths")")
  VK+=("$(run_ab "http://127.0.0.1:$HTTP$V1" 32 -k)")
  VN+=("$(run_ab "http://127.0.0.1:$HTTP$V1" 32)")
  if [ -n "$NGINX" ]; then
    NW+=("$(run_wrk "http://127.0.0.1:$NGX" "$W/nginx.paths")")
    NN+=("$(run_ab "http://127.0.0.1:$NGX/resp.der" 32)")
  fi
  ref_start "$REF1"
  R1+=("$(run_ab "http://127.0.0.1:$REF1$P1" 8)")
  ref_stop
  ref_start "$REF2" -multi 2
  R2+=("$(run_ab "http://127.0.0.1:$REF2$P1" 8)")
  ref_stop
  echo "round $r: vellum wrk ${VW[-1]}/s, ab -k ${VK[-1]}/s, ab ${VN[-1]}/s;" \
    "openssl ocsp ab ${R1[-1]}/s, openssl ocsp -multi 2 ab ${R2[-1]}/s;" \
    "nginx (static) wrk ${NW[-1]:-}/s, ab ${NN[-1]:-}/s"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
mw=$(median "${VW[@]}") mk=$(median "${VK[@]}") mn=$(median "${VN[@]}") m1=$(median "${R1[@]}") m2=$(median "${R2[@]}")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{if (b > 0) printf "%.1f", a/b; else print "inf"}'; }
echo "median of $ROUNDS: vellum wrk $mw/s, ab -k $mk/s, ab $mn/s; openssl ocsp $m1/s, -multi 2 $m2/s"
echo "ratios: wrk/openssl $(ratio "$mw" "$m1")x, ab -k/openssl $(ratio "$mk" "$m1")x," \
  "ab/openssl $(ratio "$mn" "$m1")x, wrk/openssl -multi 2 $(ratio "$mw" "$m2")x"
if [ -n "$NGINX" ]; then
  nw=$(median "${NW[@]}") nn=$(median "${NN[@]}")
  echo "ceiling: nginx static wrk $nw/s, ab $nn/s; vellum wrk/nginx wrk $(ratio "$mw" "$nw")," \
    "nginx wrk/openssl $(ratio "$nw" "$m1")x, nginx ab/openssl $(ratio "$nn" "$m1")x"
fi
grep -h "Non-2xx\|Socket errors" "$W/wrk.log" | sort | uniq -c | sed 's/^/wrk: /'

# --- revocation -> revoked --------------------------------------------------------
L=() FIRST=0
for i in $(seq 1 5); do
  id_pem=$(api POST "/cas/$INT/certificates" \
    "{\"type\":\"server\",\"common_name\":\"rv$i.bench.example\",\"sans\":[{\"type\":\"dns\",\"value\":\"rv$i.bench.example\"}],\"validity_days\":30}")
  jq -r .certificate_pem <<<"$id_pem" >"$W/rv.pem"
  id=$(jq -r .id <<<"$id_pem")
  openssl ocsp -issuer "$W/int.pem" -cert "$W/rv.pem" -no_nonce -reqout "$W/rv.der" >/dev/null 2>&1
  url="http://127.0.0.1:$HTTP/ocsp/$INT/$(b64url "$W/rv.der")"
  curl -sf -o /dev/null "$url"
  api POST "/certificates/$id/revoke" '{"reason":"keyCompromise"}' >/dev/null
  t0=$(date +%s%N) polls=0
  until polls=$((polls + 1)); curl -sf "$url" | openssl ocsp -respin /dev/stdin -resp_text -noverify 2>/dev/null |
    grep -q 'Cert Status: revoked'; do
    sleep 0.005
  done
  [ "$polls" = 1 ] && FIRST=$((FIRST + 1))
  L+=("$(( ($(date +%s%N) - t0) / 1000000 ))")
done
echo "revocation committed (admin call returned) -> GET says revoked, ms (one curl + openssl per poll):" \
  "${L[*]}; median $(median "${L[@]}") ms; the first poll said revoked in $FIRST of 5"
