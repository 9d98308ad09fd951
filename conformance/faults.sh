#!/usr/bin/env bash
# Fault injection (issue 17, "Database outages and replica loss"): the real server
# binary under load while its database goes away, a replica dies, or its disk fills up.
#
#   1. PostgreSQL restarted (pg_ctl restart -m fast), then stopped (pg_ctl stop -m fast)
#      for $FAULTS_OUTAGE_SECS seconds (default 10) and started again, under load from
#      admin (curl), ACME (acme/client.py, http-01) and EST (curl) clients: during the
#      outage every answer is a 503 with Retry-After
#      (problem+json on the admin API and ACME, text on EST), never a 500, never slower
#      than the request timeout; the server reconnects by itself (no restart); afterwards
#      the quota arithmetic of every CA holds and every certificate a client got back
#      (admin 201, ACME order valid and downloaded, EST 200) is in the database.
#   2. Two replicas on one PostgreSQL database behind a TCP load balancer (their
#      public_url is the balancer's): an ACME account and order created on replica A,
#      A killed with SIGKILL under admin load, the order finished through the balancer on
#      B; B's load never fails; every acknowledged certificate is in the database and the
#      quota arithmetic holds. The kill lands while A validates a second order's
#      challenge (POSTed to A directly; its http-01 responder answers after 8 s): B takes
#      the validation over once the lease has passed (`ra::acme::takeover`), and that
#      order is finalized through the balancer within the lease + the sweep + 15 s.
#   3. SQLite with its data dir on a small tmpfs (mount -t tmpfs: needs root, SKIP
#      otherwise) filled up by a filler file, then issuance until refused: the refusals
#      are 503 problem+json saying the disk is full (never a 500), reads are still
#      answered, PRAGMA integrity_check is ok, and once the filler is removed issuance
#      works again without a restart.
#
#   bash conformance/faults.sh      (see lib.sh for the environment)
#
# It runs its own PostgreSQL cluster (initdb/pg_ctl of the Debian postgresql package,
# through .ci/start-postgres) on 127.0.0.1:$VELLUM_FAULTS_PGPORT (default 55440), data
# in /tmp/vellum-faults-pg.PID, removed at exit; VELLUM_CONFORMANCE_DATABASE_URL is not
# used. The figures it measures (answers per door during the outage, the slowest, the
# time to the first success after the restart) are printed as notes; docs/OPERATIONS.md
# ("Outages") quotes a run. About two minutes (section 2 waits out the ACME takeover's
# lease, 47 s).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=lib-acme.sh
source "$HERE/lib-acme.sh"
# shellcheck source-path=SCRIPTDIR source=lib-est.sh
source "$HERE/lib-est.sh"
conformance_init faults psql sqlite3 runuser

FAULTS_OUTAGE_SECS=${FAULTS_OUTAGE_SECS:-10}
export VELLUM_CI_PGPORT=${VELLUM_FAULTS_PGPORT:-55440}
export VELLUM_CI_PGDATA=/tmp/vellum-faults-pg.$$
export VELLUM_CI_PGLOG=/tmp/vellum-faults-pg.$$.log
# shellcheck source=../.ci/pg-env
source "$REPO/.ci/pg-env"
PGBIN=$(find_pg_bindir)
PG_BASE_URL=""
# Quota for the load: the bootstrap intermediate issues every certificate here.
QUOTA_ENV=(VELLUM_BOOTSTRAP_ROOT_QUOTA=1000000 VELLUM_BOOTSTRAP_INTERMEDIATE_QUOTA=500000)
MASTER_KEY=$(openssl rand -hex 32)

pg_cluster_start() {
  PG_BASE_URL=$("$REPO/.ci/start-postgres" 2>"$WORK/pg-start.log" | tail -n1) || {
    fail "a PostgreSQL cluster of this script's own starts on port $VELLUM_CI_PGPORT" "$(tail -n 20 "$WORK/pg-start.log")"
    return 1
  }
  CLEANUPS+=(pg_cluster_remove)
}

pg_cluster_remove() {
  [[ -f $VELLUM_CI_PGDATA/postmaster.pid ]] &&
    as_pg "$PGBIN/pg_ctl" -D "$VELLUM_CI_PGDATA" -m immediate -w stop >/dev/null 2>&1
  cp "$VELLUM_CI_PGLOG" "$WORK/postgres.log" 2>/dev/null || true
  rm -rf "$VELLUM_CI_PGDATA" "$VELLUM_CI_PGLOG"
  TEST_DB_URL="" # the cluster, and every database in it, is gone
  return 0
}

PG_OPTS="-p $VELLUM_CI_PGPORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 -c shared_buffers=128MB"
pg_ctl_as_pg() { as_pg "$PGBIN/pg_ctl" -D "$VELLUM_CI_PGDATA" -w -t 60 "$@" >>"$WORK/pg-ctl.log" 2>&1; }

# sql QUERY: psql on the current script database; prints unaligned rows.
sql() { psql -X -q -At -v ON_ERROR_STOP=1 "$TEST_DB_URL" -c "$1"; }

# --- load -------------------------------------------------------------------------
# The workers append one line per answer to $LOAD/results:
#   DOOR|START (Unix time)|STATUS|SECONDS|RETRY_AFTER|CONTENT_TYPE
# the serial of every certificate they got back to $LOAD/acked.DOOR, and keep the body
# of the first answer of each 5xx status as $LOAD/first.DOOR.STATUS. They stop when
# $LOAD/stop exists.
LOAD=""
WORKERS=()

_answer() {
  local door=$1 t=$2 out=$3 body=$4 code=${3%%|*}
  printf '%s|%s|%s\n' "$door" "$t" "$out" >>"$LOAD/results"
  if [[ $code == 5* && ! -e $LOAD/first.$door.$code ]]; then
    cp "$body" "$LOAD/first.$door.$code" 2>/dev/null || true
  fi
}

# admin_worker LABEL PORT CA [DOOR]: issues through POST /cas/CA/certificates on PORT;
# its answers are counted as DOOR (default "admin"; the replicas' are told apart).
admin_worker() {
  local label=$1 port=$2 ca=$3 door=${4:-admin} n=0 t out cn body="$LOAD/$1.body"
  while [[ ! -e $LOAD/stop ]]; do
    n=$((n + 1)) cn="$label-$n.faults.vellum.test" t=$EPOCHREALTIME
    : >"$body"
    out=$(curl -sS --max-time 60 --cacert "$ROOT_PEM" --resolve "localhost:$port:127.0.0.1" \
      -o "$body" -w '%{http_code}|%{time_total}|%header{retry-after}|%{content_type}' \
      -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
      --data-binary "{\"type\":\"server\",\"common_name\":\"$cn\",\"sans\":[{\"type\":\"dns\",\"value\":\"$cn\"}],\"validity_days\":30}" \
      "https://localhost:$port/admin/v1/cas/$ca/certificates" 2>/dev/null) || true
    _answer "$door" "$t" "${out:-000|0||}" "$body"
    if [[ ${out%%|*} == 201 ]]; then
      jq -r .serial "$body" >>"$LOAD/acked.admin"
    else
      sleep 0.05
    fi
  done
}

# est_worker LABEL PORT: simpleenroll with HTTP Basic on PORT, one CSR sent again and again.
est_worker() {
  local label=$1 port=$2 t out serial body="$LOAD/$1.body" csr="$LOAD/$1.csr"
  est_b64_csr "$LOAD/$label.key" "$csr" "/CN=$label.devices.vellum.test"
  while [[ ! -e $LOAD/stop ]]; do
    t=$EPOCHREALTIME
    : >"$body"
    out=$(curl -sS --max-time 60 --cacert "$ROOT_PEM" --resolve "localhost:$port:127.0.0.1" \
      -o "$body" -w '%{http_code}|%{time_total}|%header{retry-after}|%{content_type}' \
      -u "$EST_USER:$EST_PASS" -H 'Content-Type: application/pkcs10' \
      -H 'Content-Transfer-Encoding: base64' --data-binary "@$csr" \
      "https://localhost:$port/.well-known/est/simpleenroll" 2>/dev/null) || true
    _answer "est" "$t" "${out:-000|0||}" "$body"
    if [[ ${out%%|*} == 200 ]]; then
      serial=$(tr -d '\r\n' <"$body" | openssl base64 -d -A | openssl pkcs7 -inform DER -print_certs |
        openssl x509 -noout -serial) || serial=""
      serial=${serial#serial=}
      [[ -n $serial ]] && tr 'A-F' 'a-f' <<<"$serial" >>"$LOAD/acked.est"
    else
      sleep 0.05
    fi
  done
}

# acme_worker URL: acme/client.py load against the directory URL.
acme_worker() {
  python3 "$ACME_HELPERS/client.py" load --directory "$1" --cafile "$ROOT_PEM" \
    --http-port "$VA_HTTP_PORT" --prefix "acme-$RANDOM" --stop "$LOAD/stop" \
    --results "$LOAD/results" --acked "$LOAD/acked.acme" 2>>"$LOAD/acme.log"
}

# load_start NAME: a fresh $LOAD dir (workers are started by the caller with `&` and
# added to WORKERS).
load_start() {
  LOAD="$WORK/load-$1"
  mkdir -p "$LOAD"
  : >"$LOAD/results"
  WORKERS=()
  CLEANUPS+=(load_stop)
}

load_stop() {
  [[ -n $LOAD ]] || return 0
  touch "$LOAD/stop"
  local p
  for p in "${WORKERS[@]}"; do
    # A worker is in one request at most (curl --max-time 60); ACME polls an order at most 60 s.
    timeout 70 tail --pid="$p" -f /dev/null 2>/dev/null || kill "$p" 2>/dev/null || true
  done
  WORKERS=()
}

# results_between FROM TO [DOOR]: the results lines whose start is in [FROM, TO).
results_between() {
  awk -F'|' -v a="$1" -v b="$2" -v d="${3-}" '$2 >= a && $2 < b && (d == "" || $1 == d)' "$LOAD/results"
}

# The serials the clients got back that the database lacks (serials compared without
# leading zeros: openssl prints whole octets, Python none).
missing_acked() {
  sql "SELECT ltrim(serial, '0') FROM certificates" | sort -u >"$LOAD/db-serials"
  cat "$LOAD"/acked.* 2>/dev/null | sed 's/^0*//' | sort -u >"$LOAD/acked-serials"
  comm -23 "$LOAD/acked-serials" "$LOAD/db-serials"
}

_lines() { cat "$LOAD/$1" 2>/dev/null | wc -l; }

# check_acked NAME: every acknowledged certificate is in the database.
check_acked() {
  local missing n
  n=$(cat "$LOAD"/acked.* 2>/dev/null | wc -l)
  missing=$(missing_acked)
  if [[ -z $missing && $n -gt 0 ]]; then
    pass "$1: every certificate a client got back is in the database ($n: admin $(_lines acked.admin), ACME $(_lines acked.acme), EST $(_lines acked.est))"
  else
    fail "$1: every certificate a client got back is in the database" "acknowledged: $n" "missing: $(head -n 5 <<<"$missing")"
  fi
}

# check_quota NAME: for every root, quota_total = quota_available + the quota_assigned of
# its intermediates; for every intermediate, quota_assigned = issued_count +
# quota_remaining, and issued_count = its rows in certificates.
check_quota() {
  local name=$1 problems
  api GET "/cas?limit=200"
  problems=$(jq -r '
    (.items // []) as $cas
    | [ $cas[] | select(.kind == "root") | . as $r
        | ([ $cas[] | select(.parent_id == $r.id) | .quota_assigned // 0 ] | add // 0) as $assigned
        | select($r.quota_total != $r.quota_available + $assigned)
        | "root \($r.id): total \($r.quota_total) != available \($r.quota_available) + assigned \($assigned)" ]
    + [ $cas[] | select(.kind == "intermediate" and .status == "enabled")
        | select(.quota_assigned != .issued_count + .quota_remaining)
        | "intermediate \(.id): assigned \(.quota_assigned) != issued \(.issued_count) + remaining \(.quota_remaining)" ]
    | .[]' <<<"$API_BODY" 2>&1) || problems="GET /cas: $(_api_failure_details)"
  local id issued rows
  while IFS='|' read -r id issued; do
    [[ -n $id ]] || continue
    rows=$(sql "SELECT count(*) FROM certificates WHERE ca_id = '$id'")
    [[ $rows == "$issued" ]] || problems+=$'\n'"intermediate $id: issued_count $issued, rows in certificates $rows"
  done < <(jq -r '.items[]? | select(.kind == "intermediate" and .status == "enabled") | "\(.id)|\(.issued_count)"' <<<"$API_BODY")
  if [[ $API_STATUS == 200 && -z ${problems//$'\n'/} ]]; then
    pass "$name: quota arithmetic holds for every CA (root: total = available + assigned; intermediate: assigned = issued + remaining = rows + remaining)"
  else
    fail "$name: quota arithmetic holds for every CA" "$problems"
  fi
}

server_alive() {
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null &&
    ! grep -q 'panicked' "$SERVER_LOG"; then
    pass "$1: the server is still running, nothing panicked"
  else
    fail "$1: the server is still running, nothing panicked" "$(grep -m3 panicked "$SERVER_LOG" || echo 'process gone')"
  fi
}

# =================================================================================
section "1. PostgreSQL stopped and started under load (admin, ACME, EST)"
# =================================================================================
outage_under_load() {
  pg_cluster_start || return 0
  VELLUM_CONFORMANCE_DATABASE_URL=$PG_BASE_URL
  ACME_WORK="$WORK/acme" ACME_TXT="$WORK/acme/txt"
  mkdir -p "$ACME_TXT"
  read -r VA_HTTP_PORT VA_TLS_PORT VA_DNS_PORT < <(python3 "$ACME_HELPERS/ports.py" --owner $$)
  SERVER_ENV=(VELLUM_VA_HTTP_PORT="$VA_HTTP_PORT" VELLUM_VA_TLS_PORT="$VA_TLS_PORT"
    VELLUM_VA_DNS_RESOLVER="127.0.0.1:$VA_DNS_PORT" VELLUM_MASTER_KEY="$MASTER_KEY" "${QUOTA_ENV[@]}")
  start_server
  CLEANUPS=(acme_stop_dns "${CLEANUPS[@]}")
  quietly acme_start_dns || return 0
  bootstrap_ids || return 0
  EST_BASE="https://localhost:$HTTPS_PORT/.well-known/est"
  api POST "/cas/$BOOT_INT_ID/est/clients" \
    "$(jq -nc --arg u "$EST_USER" --arg p "$EST_PASS" --arg n "$EST_NAMES" '{username:$u, password:$p, name_patterns:[$n]}')"
  quietly expect "EST account for the load" 201 || return 0

  load_start outage
  admin_worker admin1 "$HTTPS_PORT" "$BOOT_INT_ID" & WORKERS+=($!)
  admin_worker admin2 "$HTTPS_PORT" "$BOOT_INT_ID" & WORKERS+=($!)
  est_worker est1 "$HTTPS_PORT" & WORKERS+=($!)
  est_worker est2 "$HTTPS_PORT" & WORKERS+=($!)
  acme_worker "https://localhost:$HTTPS_PORT/acme/directory" & WORKERS+=($!)
  sleep 4
  # A restart first (about a second: connections in use are terminated, 57P01)...
  local restarted down up back
  restarted=$EPOCHREALTIME
  pg_ctl_as_pg -m fast -l "$VELLUM_CI_PGLOG" -o "$PG_OPTS" restart ||
    { fail "pg_ctl restart -m fast" "$(tail -n 5 "$WORK/pg-ctl.log")"; return 0; }
  note "PostgreSQL restarted (pg_ctl restart -m fast) in $(awk -v a="$restarted" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}')s"
  sleep 5
  # ... then an outage of FAULTS_OUTAGE_SECS.
  down=$EPOCHREALTIME
  pg_ctl_as_pg -m fast stop || { fail "pg_ctl stop -m fast" "$(tail -n 5 "$WORK/pg-ctl.log")"; return 0; }
  note "PostgreSQL stopped (pg_ctl stop -m fast) at $(date +%T) for ${FAULTS_OUTAGE_SECS}s"
  sleep "$FAULTS_OUTAGE_SECS"
  # The options of .ci/start-postgres (pg_ctl start does not reuse them by itself).
  pg_ctl_as_pg -l "$VELLUM_CI_PGLOG" -o "$PG_OPTS" start || { fail "pg_ctl start" "$(tail -n 5 "$WORK/pg-ctl.log")"; return 0; }
  up=$EPOCHREALTIME
  sleep 12
  load_stop
  back=$EPOCHREALTIME

  local all during after door n503 nbad slow first_ok
  all=$(cat "$LOAD/results")
  during=$(results_between "$down" "$up")
  after=$(results_between "$up" "$back")
  note "answers: $(wc -l <<<"$all") in all; $(results_between "$restarted" "$down" | awk -F'|' '$3 == 503' | wc -l) answered 503 around the restart; $(grep -c . <<<"$during" || true) started during the outage"
  # Never a 500 (or any 5xx but 503), never a dropped connection.
  nbad=$(awk -F'|' '$3 != 503 && ($3 >= 500 || $3 == "000")' <<<"$all")
  if [[ -z $nbad ]]; then
    pass "outage: no answer is a 500 (or any 5xx but 503) or a dropped connection"
  else
    fail "outage: no answer is a 500 (or any 5xx but 503) or a dropped connection" "$(head -n 5 <<<"$nbad")" \
      "$(for f in "$LOAD"/first.*; do [[ -e $f ]] && echo "$f: $(head -c 300 "$f")"; done)"
  fi
  for door in admin acme est; do
    n503=$(awk -F'|' -v d=$door '$1 == d && $3 == 503' <<<"$all" | wc -l)
    local no_retry
    no_retry=$(awk -F'|' -v d=$door '$1 == d && $3 == 503 && $5 !~ /^[0-9]+$/' <<<"$all" | wc -l)
    slow=$(awk -F'|' -v d=$door '$1 == d && $4 > m {m = $4} END {printf "%.2f", m}' <<<"$during")
    first_ok=$(awk -F'|' -v d=$door -v up="$up" '$1 == d && $3 ~ /^20[01]$/ {t = $2 + $4 - up; if (m == "" || t < m) m = t} END {printf "%.2f", m}' <<<"$after")
    note "$door: $(awk -F'|' -v d=$door '$1 == d' <<<"$during" | wc -l) requests started during the outage, $n503 answered 503 (all runs), slowest during the outage ${slow}s, first success ${first_ok}s after PostgreSQL was back"
    if ((n503 > 0 && no_retry == 0)); then
      pass "outage: $door answered 503 with Retry-After while PostgreSQL was down ($n503 times)"
    elif ((n503 == 0)); then
      fail "outage: $door answered 503 with Retry-After while PostgreSQL was down" "no 503 seen: $(awk -F'|' -v d=$door '$1 == d {print $3}' <<<"$during" | sort | uniq -c | tr '\n' ' ')"
    else
      fail "outage: $door answered 503 with Retry-After while PostgreSQL was down" "$no_retry answers without Retry-After"
    fi
    if [[ -n $first_ok ]] && awk -v f="$first_ok" 'BEGIN {exit !(f != "" && f < 12)}'; then
      pass "outage: $door works again without a restart (first success ${first_ok}s after PostgreSQL was back)"
    else
      fail "outage: $door works again without a restart" "no success after PostgreSQL was back: $(awk -F'|' -v d=$door '$1 == d {print $3}' <<<"$after" | sort | uniq -c | tr '\n' ' ')" \
        "$(tail -n 5 "$LOAD/acme.log" 2>/dev/null)"
    fi
  done
  slow=$(awk -F'|' '$4 > m {m = $4} END {printf "%.2f", m}' <<<"$all")
  if awk -v s="$slow" 'BEGIN {exit !(s < 30)}'; then
    pass "outage: no answer took as long as the request timeout (30 s); slowest ${slow}s"
  else
    fail "outage: no answer took as long as the request timeout (30 s)" "slowest ${slow}s"
  fi
  # The answers' bodies: problem documents naming the database; EST text.
  local f=$LOAD/first.admin.503
  if [[ -e $f ]] && jq -e '.type == "urn:vellum:problem:unavailable" and (.detail | test("database is unavailable"))' "$f" >/dev/null 2>&1; then
    pass "outage: the admin API's 503 is a problem document saying the database is unavailable"
  else
    fail "outage: the admin API's 503 is a problem document saying the database is unavailable" "$(head -c 400 "$f" 2>/dev/null)"
  fi
  f=$LOAD/results.acme-503
  if [[ -e $f ]] && jq -e '.type == "urn:ietf:params:acme:error:serverInternal" and .status == 503' "$f" >/dev/null 2>&1; then
    pass "outage: ACME's 503 is an RFC 8555 problem document (serverInternal, status 503)"
  elif [[ -e $f ]]; then
    fail "outage: ACME's 503 is an RFC 8555 problem document (serverInternal, status 503)" "$(head -c 400 "$f")"
  fi
  f=$LOAD/first.est.503
  if [[ -e $f ]] && grep -q 'database is unavailable' "$f"; then
    pass "outage: EST's 503 says the database is unavailable (text, Retry-After: RFC 7030 4.2.3)"
  else
    fail "outage: EST's 503 says the database is unavailable" "$(head -c 400 "$f" 2>/dev/null)"
  fi
  server_alive "outage"
  check_acked "outage"
  check_quota "outage"
  # Every background loop logged its failure and went on (none may spin: a warning per
  # round at most).
  local warns
  warns=$(grep -c 'WARN' "$SERVER_LOG" || true)
  note "server log: $warns warnings, $(grep -c 'ERROR' "$SERVER_LOG" || true) errors"
}
outage_under_load || true

# =================================================================================
section "2. Two replicas on one PostgreSQL database, one killed with SIGKILL"
# =================================================================================
B_PID="" LB_PID=""
stop_replica_b() {
  [[ -n $B_PID ]] && { kill -TERM "$B_PID" 2>/dev/null; wait "$B_PID" 2>/dev/null; }
  [[ -n $LB_PID ]] && { kill -TERM "$LB_PID" 2>/dev/null; wait "$LB_PID" 2>/dev/null; }
  B_PID="" LB_PID=""
  return 0
}

# free_port: a TCP port nothing listens on now.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# balancer PORT BACKEND...: a TCP balancer on PORT; each connection goes to the first
# backend that accepts it (A while it lives, then B), TLS passed through.
balancer() {
  python3 - "$@" <<'PY' >"$WORK/lb.log" 2>&1 &
import asyncio, sys
port, backends = int(sys.argv[1]), [int(p) for p in sys.argv[2:]]
async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    except Exception:
        pass
    finally:
        w.close()
async def handle(cr, cw):
    for b in backends:
        try:
            br, bw = await asyncio.open_connection("127.0.0.1", b)
            break
        except OSError:
            continue
    else:
        cw.close()
        return
    await asyncio.gather(pipe(cr, bw), pipe(br, cw))
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()
asyncio.run(main())
PY
  LB_PID=$!
}

replica_loss() {
  [[ -n $PG_BASE_URL ]] || { skip "replicas: no PostgreSQL cluster"; return 0; }
  stop_server
  local lb_port a_port b_port b_log="$WORK/server-b.log" data_b="$WORK/data-b"
  lb_port=$(free_port) a_port=$(free_port) b_port=$(free_port)
  CLEANUPS=(stop_replica_b "${CLEANUPS[@]}")
  balancer "$lb_port" "$a_port" "$b_port"
  # A through lib.sh (HTTPS_PORT is then the balancer's: the port of public_url).
  DATA="$WORK/data-a" ROOT_PEM="$WORK/data-a/root.pem" SERVER_LOG="$WORK/server-a.log"
  mkdir -p "$DATA" "$data_b"
  local common=(VELLUM_VA_HTTP_PORT="$VA_HTTP_PORT" VELLUM_VA_TLS_PORT="$VA_TLS_PORT"
    VELLUM_VA_DNS_RESOLVER="127.0.0.1:$VA_DNS_PORT" VELLUM_MASTER_KEY="$MASTER_KEY"
    VELLUM_PUBLIC_URL="https://localhost:$lb_port" "${QUOTA_ENV[@]}")
  SERVER_ENV=("${common[@]}" VELLUM_LISTEN_HTTPS="127.0.0.1:$a_port")
  start_server
  (
    export VELLUM_DATABASE_URL="$TEST_DB_URL" VELLUM_DATA_DIR="$data_b"
    export VELLUM_LISTEN_HTTP="127.0.0.1:0"
    for kv in "${common[@]}" VELLUM_LISTEN_HTTPS="127.0.0.1:$b_port"; do export "${kv?}"; done
    exec "$BIN" serve
  ) </dev/null >"$b_log" 2>&1 &
  B_PID=$!
  local up=0
  for _ in $(seq 1 150); do
    curl -sf -o /dev/null --max-time 2 --cacert "$ROOT_PEM" --resolve "localhost:$b_port:127.0.0.1" \
      "https://localhost:$b_port/healthz" && { up=1; break; }
    kill -0 "$B_PID" 2>/dev/null || break
    sleep 0.2
  done
  if ((up == 0)); then
    fail "replicas: replica B starts on the same database" "$(tail -n 20 "$b_log")"
    return 0
  fi
  note "replica A https $a_port, replica B https $b_port, balancer $lb_port (the public_url of both)"
  bootstrap_ids || return 0
  local dir_url="https://localhost:$lb_port/acme/directory" state="$WORK/split-order.json" out

  load_start replicas
  admin_worker admin-a "$a_port" "$BOOT_INT_ID" admin-a & WORKERS+=($!)
  admin_worker admin-b "$b_port" "$BOOT_INT_ID" admin-b & WORKERS+=($!)
  if out=$(python3 "$ACME_HELPERS/client.py" begin --directory "$dir_url" --cafile "$ROOT_PEM" \
    --name "split.faults.vellum.test" --state "$state" 2>&1); then
    pass "replicas: an ACME account and order created through the balancer on replica A"
  else
    fail "replicas: an ACME account and order created through the balancer on replica A" "$out"
  fi
  # The takeover case: a second order whose challenge A is validating when it dies.
  local taken="$WORK/takeover-order.json" answer_out="$WORK/takeover-answer.out" answer_pid=""
  python3 "$ACME_HELPERS/client.py" begin --directory "$dir_url" --cafile "$ROOT_PEM" \
    --name "takeover.faults.vellum.test" --state "$taken" >/dev/null 2>"$WORK/takeover-begin.err" ||
    fail "replicas: a second order created on replica A" "$(cat "$WORK/takeover-begin.err")"
  sleep 3
  python3 "$ACME_HELPERS/client.py" answer --directory "$dir_url" --cafile "$ROOT_PEM" \
    --http-port "$VA_HTTP_PORT" --state "$taken" --delay 8 --via "$a_port" \
    >"$answer_out" 2>&1 </dev/null &
  answer_pid=$!
  for _ in $(seq 1 100); do
    [[ -s $answer_out ]] && break
    sleep 0.1
  done
  local killed_at=$EPOCHREALTIME
  kill -KILL "$SERVER_PID"
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  note "replica A killed with SIGKILL at $(date +%T), its challenge POST answered '$(head -c 100 "$answer_out")'"
  kill -TERM "$answer_pid" 2>/dev/null
  wait "$answer_pid" 2>/dev/null || true
  local stuck
  stuck=$(sql "SELECT c.status FROM acme_challenges c JOIN acme_authzs a ON a.id = c.authz_id
               WHERE a.id_value = 'takeover.faults.vellum.test' AND c.type = 'http-01'" 2>&1)
  if [[ $(head -c 100 "$answer_out") == processing* && $stuck == processing ]]; then
    pass "replicas: the kill landed while A validated the second order's challenge (processing in the database)"
  else
    fail "replicas: the kill landed while A validated the second order's challenge" \
      "POST answered: $(head -c 300 "$answer_out")" "stored status: $stuck"
  fi
  sleep 1
  if out=$(timeout 90 python3 "$ACME_HELPERS/client.py" finish --directory "$dir_url" --cafile "$ROOT_PEM" \
    --http-port "$VA_HTTP_PORT" --state "$state" --acked "$LOAD/acked.acme" 2>&1); then
    pass "replicas: the order begun on A is finished through the balancer on B (validated, finalized, downloaded: serial $out)"
  else
    fail "replicas: the order begun on A is finished through the balancer on B" "$out"
  fi
  # B's lease, as B computed it from its validator's timeout.
  local lease
  lease=$(grep -o 'lease [0-9]* s' "$b_log" | head -n1 | tr -dc 0-9)
  lease=${lease:-47}
  local bound=$((lease + 3 + 15))
  if out=$(timeout $((bound + 30)) python3 "$ACME_HELPERS/client.py" finish --directory "$dir_url" \
    --cafile "$ROOT_PEM" --http-port "$VA_HTTP_PORT" --state "$taken" --acked "$LOAD/acked.acme" \
    --deadline "$bound" 2>&1); then
    local took
    took=$(awk -v a="$killed_at" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    pass "replicas: the challenge A was validating when killed was taken over by B; the order finalized through the balancer ${took} s after the kill (lease $lease s, bound $bound s; serial $out)"
  else
    fail "replicas: the challenge A was validating when killed is taken over by B within $bound s" "$out" \
      "$(grep -i 'takeover\|taken over\|validating it here' "$b_log" | tail -n 5)"
  fi
  if grep -q 'validating it here' "$b_log"; then
    pass "replicas: B logged the takeover ($(grep -c 'validating it here' "$b_log") challenge(s))"
  else
    fail "replicas: B logged the takeover" "$(tail -n 5 "$b_log")"
  fi
  sleep 3
  load_stop
  local b_all b_after b_fail
  b_all=$(awk -F'|' '$1 == "admin-b"' "$LOAD/results" | wc -l)
  b_after=$(awk -F'|' -v k="$killed_at" '$1 == "admin-b" && $2 >= k' "$LOAD/results" | wc -l)
  b_fail=$(awk -F'|' '$1 == "admin-b" && $3 != 201' "$LOAD/results")
  note "A answered $(awk -F'|' '$1 == "admin-a" && $3 == 201' "$LOAD/results" | wc -l) issuances before it was killed"
  if [[ -z $b_fail && $b_after -gt 0 ]]; then
    pass "replicas: B kept serving while A died ($b_all issuances, every one 201, $b_after after the kill)"
  else
    fail "replicas: B kept serving while A died" "answers after the kill: $b_after" "$(head -n 5 <<<"$b_fail")"
  fi
  check_acked "replicas"
  check_quota "replicas"
  if ! grep -q panicked "$b_log" && kill -0 "$B_PID" 2>/dev/null; then
    pass "replicas: B is still running, nothing panicked"
  else
    fail "replicas: B is still running, nothing panicked" "$(tail -n 20 "$b_log")"
  fi
  stop_replica_b
}
replica_loss || true

# =================================================================================
section "3. SQLite on a full disk (a small tmpfs)"
# =================================================================================
TMPFS=""
tmpfs_remove() {
  [[ -n $TMPFS ]] || return 0
  stop_server
  umount "$TMPFS" 2>/dev/null || umount -l "$TMPFS" 2>/dev/null || true
  TMPFS=""
}

full_disk() {
  stop_server
  pg_cluster_remove
  if [[ $(id -u) != 0 ]]; then
    skip "full disk: mounting a tmpfs needs root"
    return 0
  fi
  TMPFS="$WORK/tmpfs"
  mkdir -p "$TMPFS"
  if ! mount -t tmpfs -o size=24m,mode=0700 tmpfs "$TMPFS" 2>"$WORK/mount.err"; then
    skip "full disk: mount -t tmpfs refused ($(cat "$WORK/mount.err"))"
    TMPFS=""
    return 0
  fi
  CLEANUPS=(tmpfs_remove "${CLEANUPS[@]}")
  unset VELLUM_CONFORMANCE_DATABASE_URL
  DATA="$TMPFS/data" ROOT_PEM="$TMPFS/data/root.pem" SERVER_LOG="$WORK/server-sqlite.log"
  mkdir -p "$DATA"
  SERVER_ENV=("${QUOTA_ENV[@]}")
  start_server
  bootstrap_ids || return 0
  local body='{"type":"server","common_name":"disk.faults.vellum.test","sans":[{"type":"dns","value":"disk.faults.vellum.test"}],"validity_days":30}'
  api POST "/cas/$BOOT_INT_ID/certificates" "$body"
  quietly expect "full disk: issuing works before the disk fills" 201 || return 0
  # Leave about 1.5 MB: the next certificates fill it.
  local avail filler="$TMPFS/filler"
  avail=$(df --output=avail -k "$TMPFS" | tail -n1)
  fallocate -l "$(((avail - 1536) * 1024))" "$filler" 2>/dev/null ||
    dd if=/dev/zero of="$filler" bs=1k count="$((avail - 1536))" status=none
  note "tmpfs of 24 MB; filler $(du -k "$filler" | cut -f1) kB; $(df --output=avail -k "$TMPFS" | tail -n1) kB left"
  local n=0 ok=0 codes="" refused=""
  while ((n < 3000)); do
    n=$((n + 1))
    api POST "/cas/$BOOT_INT_ID/certificates" "$body"
    codes+="$API_STATUS"$'\n'
    if [[ $API_STATUS == 201 ]]; then
      ok=$((ok + 1))
    else
      refused=$API_STATUS
      break
    fi
  done
  note "issued $ok certificates before the first refusal ($(df --output=avail -k "$TMPFS" | tail -n1) kB left)"
  if [[ $refused == 503 ]] && jq -e '.type == "urn:vellum:problem:unavailable" and (.detail | test("disk is full"))' <<<"$API_BODY" >/dev/null 2>&1; then
    pass "full disk: issuance is refused with a 503 problem document saying the disk is full" "detail: $(jb .detail)"
  else
    fail "full disk: issuance is refused with a 503 problem document saying the disk is full" "after $ok certificates" "$(_api_failure_details)"
  fi
  local hdr
  hdr=$(curl_https -s -D - -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    --data-binary "$body" "https://localhost:$HTTPS_PORT/admin/v1/cas/$BOOT_INT_ID/certificates" 2>&1 | tr -d '\r')
  if grep -q '^HTTP/[0-9.]* 503' <<<"$hdr" && grep -qi '^retry-after: [0-9]' <<<"$hdr"; then
    pass "full disk: the refusal carries Retry-After ($(grep -i '^retry-after' <<<"$hdr"))"
  else
    fail "full disk: the refusal carries Retry-After" "$hdr"
  fi
  # More refusals, each as clear; reads still answered.
  local more=""
  for _ in 1 2 3 4 5; do
    api POST "/cas/$BOOT_INT_ID/certificates" "$body"
    more+="$API_STATUS "
  done
  if [[ $more == "503 503 503 503 503 " ]]; then
    pass "full disk: further issuance refused the same way (503 x5), no 500"
  else
    fail "full disk: further issuance refused the same way (503 x5), no 500" "got: $more" "$(_api_failure_details)"
  fi
  api GET "/cas/$BOOT_INT_ID"
  expect "full disk: reads are still answered (GET /cas/{id} 200)" 200
  local issued_full
  issued_full=$(jb .issued_count)
  local integrity
  integrity=$(sqlite3 -readonly "$DATA/vellum.db" 'PRAGMA integrity_check' 2>&1)
  if [[ $integrity == ok ]]; then
    pass "full disk: PRAGMA integrity_check = ok while the disk is full"
  else
    fail "full disk: PRAGMA integrity_check = ok while the disk is full" "$integrity"
  fi
  rm -f "$filler"
  local back=0 t0=$SECONDS
  while ((SECONDS - t0 < 10)); do
    api POST "/cas/$BOOT_INT_ID/certificates" "$body"
    [[ $API_STATUS == 201 ]] && { back=1; break; }
    sleep 0.2
  done
  if ((back)); then
    pass "full disk: once the filler is removed, issuing works again without a restart ($((SECONDS - t0))s)"
  else
    fail "full disk: once the filler is removed, issuing works again without a restart" "$(_api_failure_details)"
  fi
  api GET "/cas/$BOOT_INT_ID"
  if [[ $(jb .issued_count) == $((issued_full + 1)) && $(jb '.quota_assigned') == $(($(jb .issued_count) + $(jb .quota_remaining))) ]]; then
    pass "full disk: the refusals spent no quota (issued_count $issued_full, then $((issued_full + 1)); assigned = issued + remaining)"
  else
    fail "full disk: the refusals spent no quota" "$(_api_failure_details)"
  fi
  integrity=$(sqlite3 -readonly "$DATA/vellum.db" 'PRAGMA integrity_check' 2>&1)
  if [[ $integrity == ok ]]; then
    pass "full disk: PRAGMA integrity_check = ok after recovery"
  else
    fail "full disk: PRAGMA integrity_check = ok after recovery" "$integrity"
  fi
  server_alive "full disk"
  stop_server
  tmpfs_remove
}
full_disk || true

finish
