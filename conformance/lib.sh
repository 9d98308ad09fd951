# shellcheck shell=bash
# shellcheck disable=SC2034,SC2016 # globals here are read by the scripts that source this file; jq programs are single-quoted
# Shared code of the conformance scripts (sourced, not run): every
# conformance/<tool>.sh starts with
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   conformance_init <name> [TOOL...]   # scratch dir, exit trap, tools check
#   start_server                        # its own server, on ports of its own
#
# and ends with `finish`, which stops the server and prints the summary line
# "N passed, M failed, K skipped" (exit status 1 when M > 0).
#
# What is here: result bookkeeping (pass/fail/skip, quietly), the server's
# lifecycle, the admin API client (api + expect*), certificate helpers,
# the pkilint wrappers, and the helpers that build hierarchies and issue
# leaves through the admin API (buy_root, enable_generate, issue_leaf, ...).
#
# Globals set by conformance_init / start_server, used by the helpers:
#   HERE        the conformance/ directory;  REPO  the repository
#   WORK        scratch dir of this script;  DATA  the server's VELLUM_DATA_DIR
#   CERTS       certificates fetched from the API (under WORK)
#   BIN         the server binary;  SERVER_LOG  its output
#   ROOT_PEM    root CA certificate written by the server (trust anchor)
#   HTTPS_PORT  / HTTP_PORT   the server's listeners (bound to port 0, read
#               back from the addresses the server prints)
#   TOKEN       admin bearer token
#
# Environment (all optional):
#   VELLUM_BIN                      server binary to test; default: cargo build
#                                   --release, then target/release/vellum
#   VELLUM_CONFORMANCE_DATABASE_URL a PostgreSQL server URL: each script then
#                                   creates a database of its own there (psql)
#                                   and drops it at the end; default: SQLite
#   VELLUM_CONFORMANCE_KEEP=1       keep the scratch dir even when all passed
#   VELLUM_CONFORMANCE_STARTUP_SECS seconds to wait for the server (default 60)
#   VELLUM_CONFORMANCE_RESULT       file to write "PASSED FAILED SKIPPED" to at
#                                   exit (conformance/run uses it)

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"

PASSED=0
FAILED=0
SKIPPED=0
_QUIET=0 # while set (quietly), pass() neither prints nor counts

# --- results ------------------------------------------------------------------
# Indented detail lines under a result, capped so one failure cannot flood CI.
_details() {
  local line n=0
  while IFS= read -r line; do
    n=$((n + 1))
    if ((n > 40)); then echo "      ..."; break; fi
    printf '      %s\n' "$line"
  done < <(printf '%s\n' "$@")
}

pass() {
  ((_QUIET)) && return 0
  PASSED=$((PASSED + 1)); echo "PASS  $1"; shift; (($#)) && _details "$@"; return 0
}
fail() { FAILED=$((FAILED + 1)); echo "FAIL  $1"; shift; (($#)) && _details "$@"; return 1; }
skip() { SKIPPED=$((SKIPPED + 1)); echo "SKIP  $1"; shift; (($#)) && _details "$@"; return 0; }
note() { _details "$@"; }

# quietly CMD...: runs CMD (a helper that reports PASS/FAIL) as a setup step:
# its failures are reported and counted as usual, its passes are not (they are
# checked where they belong, or in tests/it). Returns CMD's status; call it in
# a condition (`quietly buy_root ... || return 0`).
quietly() {
  local prev=$_QUIET rc
  _QUIET=1
  "$@" && rc=0 || rc=$?
  _QUIET=$prev
  return "$rc"
}

section() { printf '\n=== %s ===\n' "$*"; }

# check NAME CMD...: PASS when CMD exits 0, else FAIL with its output.
check() {
  local name=$1; shift
  local out
  if out=$("$@" 2>&1); then
    pass "$name"
  else
    fail "$name" "command: $*" "$out"
  fi
}

# --- lifecycle -----------------------------------------------------------------
SERVER_PID=""
SUMMARY_DONE=0
ERR_LINE=""
CLEANUPS=()      # functions run at exit, before the server stops (e.g. helpers' servers)
SCRIPT_NAME=""
SERVER_ENV=()    # NAME=VALUE pairs start_server adds to the server's environment
TEST_DB_URL=""   # the database created for this script (PostgreSQL), dropped at exit

# conformance_init NAME [TOOL...]: scratch dir, exit trap, and a check that
# openssl, curl, jq, python3 and each TOOL are on PATH (exit 2 otherwise).
conformance_init() {
  SCRIPT_NAME=$1; shift
  set -E # ERR trap also inside functions (for the "aborted at line" report)
  local tool
  for tool in openssl curl jq python3 "$@"; do
    command -v "$tool" >/dev/null ||
      { echo "conformance/$SCRIPT_NAME: '$tool' not found (run .ci/install-deps)" >&2; exit 2; }
  done
  WORK="$(mktemp -d "/tmp/vellum-conformance-$SCRIPT_NAME.XXXXXX")"
  DATA="$WORK/data"
  CERTS="$WORK/certs"
  mkdir -p "$DATA" "$CERTS"
  SERVER_LOG="$WORK/server.log"
  ROOT_PEM="$DATA/root.pem"
  trap 'ERR_LINE=${ERR_LINE:-$LINENO}' ERR
  trap _on_exit EXIT
  trap 'exit 130' INT TERM
}

show_server_log() {
  echo "--- last 60 lines of $SERVER_LOG ---"
  tail -n 60 "$SERVER_LOG" 2>/dev/null || echo "(no log)"
  echo "--- end of server log ---"
}

summary() {
  echo
  echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
  SUMMARY_DONE=1
}

_on_exit() {
  local rc=$? f
  # Subshells inherit the trap: only the script's own shell cleans up.
  [[ $BASHPID == "$$" ]] || exit "$rc"
  set +e
  trap - ERR
  for f in "${CLEANUPS[@]}"; do "$f"; done
  stop_server
  if ((SUMMARY_DONE == 0)); then
    if ((rc == 130)); then
      fail "conformance/$SCRIPT_NAME interrupted (SIGINT/SIGTERM)" || true
    else
      fail "conformance/$SCRIPT_NAME aborted unexpectedly (exit $rc, near line ${ERR_LINE:-?})" || true
    fi
    show_server_log
    summary
    rc=1
  fi
  _drop_database
  if [[ -n ${VELLUM_CONFORMANCE_RESULT:-} ]]; then
    echo "$PASSED $FAILED $SKIPPED" >"$VELLUM_CONFORMANCE_RESULT"
  fi
  if ((FAILED > 0)) || [[ ${VELLUM_CONFORMANCE_KEEP:-} == 1 ]]; then
    echo "scratch dir kept: $WORK (server.log, api.log, certs/)"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}

# finish: stops the server (FAIL when it does not exit within 10 s of
# SIGTERM; a PASS line too with REPORT_SHUTDOWN=1), prints the summary, exits
# 1 on any failure.
finish() {
  local f
  for f in "${CLEANUPS[@]}"; do "$f"; done
  CLEANUPS=()
  if stop_server; then
    [[ ${REPORT_SHUTDOWN:-} == 1 ]] && pass "server exits within 10 s of SIGTERM"
  else
    fail "server exits within 10 s of SIGTERM" "had to SIGKILL it" || true
  fi
  ((FAILED > 0)) && show_server_log
  summary
  ((FAILED == 0)) || exit 1
  exit 0
}

# Stop the server: SIGTERM, up to 10 s grace, then SIGKILL. Returns 1 if it
# had to be killed.
stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  local pid=$SERVER_PID
  SERVER_PID=""
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  return 1
}

# _create_database: with VELLUM_CONFORMANCE_DATABASE_URL, a database of this
# script's own on that server (scripts may run in parallel; each server
# bootstraps its own hierarchy). Prints its URL.
_create_database() {
  local base=$VELLUM_CONFORMANCE_DATABASE_URL name
  command -v psql >/dev/null || { echo "psql not found (apt-get install postgresql-client)" >&2; return 1; }
  name="vc_${SCRIPT_NAME//[^a-z0-9]/_}_$(openssl rand -hex 6)"
  psql -q -v ON_ERROR_STOP=1 "$base" -c "CREATE DATABASE $name" >&2 || return 1
  echo "${base%/*}/$name"
}

_drop_database() {
  [[ -n $TEST_DB_URL ]] || return 0
  [[ ${VELLUM_CONFORMANCE_KEEP:-} == 1 ]] && { echo "database kept: $TEST_DB_URL"; return 0; }
  psql -q "$VELLUM_CONFORMANCE_DATABASE_URL" -c "DROP DATABASE IF EXISTS ${TEST_DB_URL##*/} WITH (FORCE)" >/dev/null 2>&1 || true
  TEST_DB_URL=""
}

# start_server: starts `vellum serve` on a data dir of this script's own,
# HTTPS and HTTP listeners on port 0 (the bound ports are read from the
# addresses the server prints), with SERVER_ENV (NAME=VALUE...) as extra
# environment;
# waits until the admin token and root exist and both listeners answer. Sets
# BIN, HTTPS_PORT, HTTP_PORT and TOKEN. Reports "server starts" as a PASS only
# with REPORT_STARTUP=1; a failure always FAILs and ends the script.
start_server() {
  if [[ -n ${VELLUM_BIN:-} ]]; then
    BIN="$VELLUM_BIN"
  else
    (cd "$REPO" && cargo build --release) || { fail "cargo build --release" || true; summary; exit 1; }
    BIN="$REPO/target/release/vellum"
  fi
  [[ -x $BIN ]] || { fail "server binary $BIN exists" || true; summary; exit 1; }
  local db=""
  if [[ -n ${VELLUM_CONFORMANCE_DATABASE_URL:-} ]]; then
    db=$(_create_database) || { fail "create a PostgreSQL database for this script" || true; summary; exit 1; }
    TEST_DB_URL=$db # (set in _create_database's subshell too, which does not count)
  fi
  : >"$SERVER_LOG"
  (
    unset VELLUM_DATABASE_URL
    [[ -n $db ]] && export VELLUM_DATABASE_URL="$db"
    export VELLUM_DATA_DIR="$DATA"
    export VELLUM_LISTEN_HTTPS="127.0.0.1:0"
    export VELLUM_LISTEN_HTTP="127.0.0.1:0"
    local kv
    for kv in "${SERVER_ENV[@]}"; do export "${kv?}"; done
    exec "$BIN" serve
  ) </dev/null >"$SERVER_LOG" 2>&1 &
  SERVER_PID=$!

  # The HTTPS probe here is liveness only (-k): openssl-server.sh verifies the
  # certificate chain, so a TLS misconfiguration shows up as a precise FAIL
  # there instead of as a startup timeout.
  local startup_secs=${VELLUM_CONFORMANCE_STARTUP_SECS:-60} started_at=$SECONDS code
  local deadline=$((SECONDS + startup_secs)) ready=0
  HTTPS_PORT="" HTTP_PORT=""
  while ((SECONDS < deadline)); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      wait "$SERVER_PID" 2>/dev/null && code=0 || code=$?
      SERVER_PID=""
      fail "server starts" "vellum serve exited with status $code during startup" || true
      show_server_log
      summary
      exit 1
    fi
    if [[ -z $HTTPS_PORT || -z $HTTP_PORT ]]; then
      HTTPS_PORT=$(sed -n 's|^ *HTTPS (admin API): *https://[^:]*:\([0-9]*\).*|\1|p' "$SERVER_LOG" | head -n1) || true
      HTTP_PORT=$(sed -n 's|^ *HTTP (CRLs, CA certs): *http://[^:]*:\([0-9]*\).*|\1|p' "$SERVER_LOG" | head -n1) || true
    fi
    if [[ -n $HTTPS_PORT && -n $HTTP_PORT && -s $DATA/admin-token && -s $ROOT_PEM ]] &&
      curl -sfk -o /dev/null --max-time 5 \
        --resolve "localhost:$HTTPS_PORT:127.0.0.1" "https://localhost:$HTTPS_PORT/healthz" &&
      curl -sf -o /dev/null --max-time 5 "http://127.0.0.1:$HTTP_PORT/healthz"; then
      ready=1
      break
    fi
    sleep 0.2
  done
  if ((ready == 0)); then
    fail "server starts" "not ready after ${startup_secs}s (printed addresses, admin-token, root.pem, both /healthz)" \
      "ports read from the log: https '${HTTPS_PORT}', http '${HTTP_PORT}'" \
      "admin-token: $([[ -s $DATA/admin-token ]] && echo present || echo missing)" \
      "root.pem:    $([[ -s $ROOT_PEM ]] && echo present || echo missing)" || true
    show_server_log
    summary
    exit 1
  fi
  echo "data dir $DATA, https 127.0.0.1:$HTTPS_PORT, http 127.0.0.1:$HTTP_PORT${db:+, database ${db##*/}}"
  if [[ ${REPORT_STARTUP:-} == 1 ]]; then
    pass "server starts (ready after $((SECONDS - started_at))s)"
  fi
  TOKEN="$(head -n1 "$DATA/admin-token" | tr -d '[:space:]')"
}

# bootstrap_ids: sets BOOT_ROOT_ID / BOOT_INT_ID (the enabled root and
# intermediate the server made at first start) and saves their certificates
# as $CERTS/boot-root.pem and $CERTS/boot-int.pem. FAILs when there are not
# exactly one of each.
BOOT_ROOT_ID="" BOOT_INT_ID=""
bootstrap_ids() {
  api GET /cas
  local roots ints
  roots=$(jq -c '[.items[]? | select(.kind == "root" and .status == "enabled")]' <<<"$API_BODY" 2>/dev/null || echo '[]')
  ints=$(jq -c '[.items[]? | select(.kind == "intermediate" and .status == "enabled")]' <<<"$API_BODY" 2>/dev/null || echo '[]')
  if [[ $API_STATUS != 200 || $(jq length <<<"$roots") != 1 || $(jq length <<<"$ints") != 1 ]]; then
    fail "the bootstrap hierarchy: exactly one enabled root and one enabled intermediate in GET /cas" \
      "$(_api_failure_details)"
    return 1
  fi
  BOOT_ROOT_ID=$(jq -r '.[0].id' <<<"$roots")
  BOOT_INT_ID=$(jq -r '.[0].id' <<<"$ints")
  jq -r '.[0].certificate_pem // empty' <<<"$roots" >"$CERTS/boot-root.pem"
  jq -r '.[0].certificate_pem // empty' <<<"$ints" >"$CERTS/boot-int.pem"
}

# --- HTTP ------------------------------------------------------------------------
# curl against the HTTPS listener, trusting only the server's root, with
# "localhost" pinned to 127.0.0.1 (the server listens on IPv4 only).
curl_https() {
  curl -sS --max-time 60 --cacert "$ROOT_PEM" \
    --resolve "localhost:$HTTPS_PORT:127.0.0.1" "$@"
}

# api METHOD PATH [JSON_BODY]
# Calls https://localhost:$HTTPS_PORT/admin/v1$PATH with the bearer token.
# Sets API_STATUS (000 when the request failed), API_CTYPE and API_BODY.
# Every call is appended to $WORK/api.log.
api() {
  local method=$1 path=$2 body=${3-}
  local resp="$WORK/resp.body" meta
  local args=(-X "$method" -o "$resp" -w '%{http_code}\n%{content_type}'
    -H "Authorization: Bearer $TOKEN" -H 'Accept: application/json')
  if [[ -n $body ]]; then
    args+=(-H 'Content-Type: application/json' --data-binary "$body")
  fi
  : >"$resp"
  if meta=$(curl_https "${args[@]}" "https://localhost:$HTTPS_PORT/admin/v1$path" 2>"$WORK/curl.err"); then
    API_STATUS=${meta%%$'\n'*}
    API_CTYPE=${meta#*$'\n'}
  else
    API_STATUS=000
    API_CTYPE=
    cat "$WORK/curl.err" >"$resp"
  fi
  API_BODY=$(cat "$resp")
  {
    echo "> $method $path"
    [[ -n $body ]] && printf '%s\n' "$body" | cut -c1-300 | head -n 5
    echo "< $API_STATUS $API_CTYPE"
    printf '%s\n' "$API_BODY" | cut -c1-300 | head -n 20
    echo
  } >>"$WORK/api.log"
}

# jb FILTER: jq -r FILTER on the last response body ("" when not JSON).
jb() { jq -r "$1" <<<"$API_BODY" 2>/dev/null || true; }

_api_failure_details() {
  printf '%s\n' "HTTP $API_STATUS ${API_CTYPE:-}" "$(head -c 3000 <<<"$API_BODY")"
}

# expect NAME CODE [CODE...]: PASS when the last api call returned one of CODEs.
expect() {
  local name=$1 code; shift
  for code in "$@"; do
    if [[ $API_STATUS == "$code" ]]; then pass "$name"; return 0; fi
  done
  fail "$name" "expected HTTP $*" "$(_api_failure_details)"
}

# expect_ca NAME CODE CA_STATUS [OUT_PEM]
# The last call returned CODE with a CA object whose status is CA_STATUS; when
# OUT_PEM is given, its certificate_pem must parse and is saved there.
expect_ca() {
  local name=$1 code=$2 want=$3 out=${4-} problems=()
  [[ $API_STATUS == "$code" ]] || problems+=("expected HTTP $code")
  local got_status; got_status=$(jb '.status // empty')
  [[ $got_status == "$want" ]] || problems+=("expected status \"$want\", got \"$got_status\"")
  [[ -n $(jb '.id // empty') ]] || problems+=("no id")
  if [[ -n $out ]]; then
    jb '.certificate_pem // empty' >"$out"
    if ! openssl x509 -in "$out" -noout 2>/dev/null; then
      problems+=("certificate_pem missing or not a PEM certificate")
    fi
  fi
  if ((${#problems[@]})); then
    fail "$name" "${problems[@]}" "$(_api_failure_details)"
  else
    pass "$name"
  fi
}

# expect_problem NAME CODE [DETAIL_SUBSTRING [-i]]
# The last call failed with CODE as application/problem+json carrying
# type/title/status/detail, status == CODE, and (if given) detail containing
# DETAIL_SUBSTRING (case-sensitive unless -i).
expect_problem() {
  local name=$1 code=$2 want=${3-} ci=${4-} problems=()
  [[ $API_STATUS == "$code" ]] || problems+=("expected HTTP $code")
  [[ $API_CTYPE == application/problem+json* ]] ||
    problems+=("expected Content-Type application/problem+json, got \"$API_CTYPE\"")
  if ! jq -e 'type == "object" and has("type") and has("title") and has("status") and has("detail")' \
    <<<"$API_BODY" >/dev/null 2>&1; then
    problems+=("body lacks type/title/status/detail")
  elif [[ $(jb .status) != "$code" ]]; then
    problems+=("problem .status is $(jb .status), not $code")
  fi
  if [[ -n $want ]]; then
    local detail; detail=$(jb '.detail // ""')
    local opt=(-F); [[ $ci == -i ]] && opt+=(-i)
    grep -q "${opt[@]}" -- "$want" <<<"$detail" ||
      problems+=("detail does not mention \"$want\": \"$detail\"")
  fi
  if ((${#problems[@]})); then
    fail "$name" "${problems[@]}" "$(_api_failure_details)"
  else
    pass "$name" "detail: $(jb '.detail // ""')"
  fi
}

# get_ca ID: api GET /cas/ID; when that endpoint is missing, fall back to
# scanning GET /cas (following next_cursor) and fake a 200 with the object.
get_ca() {
  local id=$1
  api GET "/cas/$id"
  [[ $API_STATUS == 200 ]] && return 0
  local cursor="" obj
  for _ in $(seq 1 50); do
    api GET "/cas${cursor:+?cursor=$cursor}"
    [[ $API_STATUS == 200 ]] || return 1
    obj=$(jq -c --arg id "$id" '.items[]? | select(.id == $id)' <<<"$API_BODY")
    if [[ -n $obj ]]; then API_BODY=$obj; return 0; fi
    cursor=$(jb '.next_cursor // empty')
    [[ -n $cursor ]] || break
  done
  API_STATUS=404
  return 1
}

# --- certificates ----------------------------------------------------------------
# SHA-256 fingerprint of a PEM (or DER with "der") certificate.
cert_fp() {
  openssl x509 -in "$1" -inform "${2:-pem}" -noout -fingerprint -sha256 2>/dev/null | cut -d= -f2
}

cert_text() { openssl x509 -in "$1" -noout -text 2>&1; }

# Serial as upper-case hex without leading zeros (comparable across tools).
cert_serial() {
  openssl x509 -in "$1" -noout -serial | cut -d= -f2 | tr a-f A-F | sed 's/^0*//'
}

# verify_chain NAME ROOT_PEM CERT_PEM [UNTRUSTED_PEM]
verify_chain() {
  local name=$1 root=$2 cert=$3 untrusted=${4-} out
  local args=(-CAfile "$root")
  [[ -n $untrusted ]] && args+=(-untrusted "$untrusted")
  if out=$(openssl verify "${args[@]}" "$cert" 2>&1) && grep -q ': OK$' <<<"$out"; then
    pass "$name"
  else
    fail "$name" "openssl verify ${args[*]} $cert" "$out"
  fi
}

# key_algorithm_of PEM: the certificate's public key in the API's vocabulary
# (rsa-2048, ec-p256, ec-p384, ed25519, ...), or "unknown".
key_algorithm_of() {
  local t; t=$(cert_text "$1")
  if grep -q 'Public Key Algorithm: rsaEncryption' <<<"$t"; then
    echo "rsa-$(grep -oE 'Public-Key: \(([0-9]+) bit\)' <<<"$t" | grep -oE '[0-9]+' | head -n1)"
  elif grep -q 'Public Key Algorithm: id-ecPublicKey' <<<"$t"; then
    if grep -q 'NIST CURVE: P-256' <<<"$t"; then echo ec-p256
    elif grep -q 'NIST CURVE: P-384' <<<"$t"; then echo ec-p384
    elif grep -q 'NIST CURVE: P-521' <<<"$t"; then echo ec-p521
    else echo ec-unknown; fi
  elif grep -q 'Public Key Algorithm: ED25519' <<<"$t"; then
    echo ed25519
  else
    echo unknown
  fi
}

# is_self_issued PEM: the certificate's subject equals its issuer (a root).
is_self_issued() {
  local s i
  s=$(openssl x509 -in "$1" -noout -subject -nameopt RFC2253 2>/dev/null | sed 's/^subject=//') || return 1
  i=$(openssl x509 -in "$1" -noout -issuer -nameopt RFC2253 2>/dev/null | sed 's/^issuer=//') || return 1
  [[ -n $s && $s == "$i" ]]
}

# pubkey_of_cert PEM / pubkey_of_key KEY_FILE [PASSWORD] / pubkey_of_csr CSR:
# the SubjectPublicKeyInfo as PEM, for comparing keys across files.
pubkey_of_cert() { openssl x509 -in "$1" -noout -pubkey 2>/dev/null; }
pubkey_of_key() {
  if [[ -n ${2-} ]]; then
    openssl pkey -in "$1" -passin "pass:$2" -pubout 2>/dev/null
  else
    openssl pkey -in "$1" -passin pass: -pubout 2>/dev/null
  fi
}
pubkey_of_csr() { openssl req -in "$1" -noout -pubkey 2>/dev/null; }

# count_pem FILE LABEL: number of "-----BEGIN LABEL-----" blocks in FILE.
count_pem() { grep -c -- "-----BEGIN $2-----" "$1" 2>/dev/null || true; }

# crl_number FILE [DER|PEM]: the CRL Number as a decimal integer ("" if none).
crl_number() {
  local hex
  hex=$(openssl crl -in "$1" -inform "${2:-DER}" -noout -crlnumber 2>/dev/null | sed -n 's/^crlNumber=0x//p')
  [[ -n $hex ]] && echo $((16#$hex))
}

# now_ms: wall clock in milliseconds.
now_ms() { date +%s%3N; }

# api_download METHOD PATH JSON_BODY OUT: like api, but the response body goes
# (byte-exact) to OUT. Sets API_STATUS and API_CTYPE; API_BODY holds the body
# only for non-2xx answers (problem documents), else "".
api_download() {
  local method=$1 path=$2 body=$3 out=$4 meta
  : >"$out"
  if meta=$(curl_https -X "$method" -o "$out" -w '%{http_code}\n%{content_type}' \
    -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    --data-binary "$body" "https://localhost:$HTTPS_PORT/admin/v1$path" 2>"$WORK/curl.err"); then
    API_STATUS=${meta%%$'\n'*}
    API_CTYPE=${meta#*$'\n'}
  else
    API_STATUS=000
    API_CTYPE=
    cat "$WORK/curl.err" >"$out"
  fi
  if [[ $API_STATUS == 2* ]]; then API_BODY=""; else API_BODY=$(cat "$out"); fi
  {
    echo "> $method $path (download)"
    printf '%s\n' "$body" | sed -E 's/"password":"[^"]*"/"password":"***"/' | cut -c1-300
    echo "< $API_STATUS $API_CTYPE ($(wc -c <"$out") bytes)"
    [[ -n $API_BODY ]] && printf '%s\n' "$API_BODY" | cut -c1-300 | head -n 5
    echo
  } >>"$WORK/api.log"
}

# plain_get PATH OUT [CURL_ARGS...]: GET http://127.0.0.1:$HTTP_PORT$PATH into
# OUT; prints the HTTP status ("000" when the request failed).
plain_get() {
  local path=$1 out=$2 st; shift 2
  st=$(curl -sS -o "$out" -w '%{http_code}' --max-time 30 "$@" "http://127.0.0.1:$HTTP_PORT$path" 2>/dev/null) || true
  echo "${st:-000}"
}

# --- pkilint ---------------------------------------------------------------------
# Run a pkilint tool through the python3 that has pkilint installed (works even
# when pyenv shims for its console scripts are stale).
pkilint_tool() { local tool=$1; shift; python3 -m "pkilint.bin.$tool" "$@"; }

# Findings that are pkilint false positives, as a jq condition on a finding
# ($p is the node path of the finding's result):
# - pkix.invalid_domain_name_syntax for a dNSName that is exactly "localhost"
#   (a valid RFC 1034 preferred-syntax name; pkilint wants a dot). It only
#   concerns the HTTPS server certificate. Nothing else is ignored.
PKILINT_IGNORED='(.code == "pkix.invalid_domain_name_syntax"
                  and ($p | endswith(".dNSName"))
                  and (.message // "") == "Invalid domain name syntax: \"localhost\"")'

# Severities that fail a lint check, and those that are only listed.
PKILINT_FAILING='["FATAL","ERROR","WARNING"]'
PKILINT_LISTED='["NOTICE","INFO"]'

# _pkilint_judge NAME JSON_OUTPUT: FAIL on FATAL/ERROR/WARNING findings, PASS
# otherwise. NOTICE/INFO findings, and ignored known false positives, are
# printed under the result line.
_pkilint_judge() {
  local name=$1 json=$2
  if ! jq -e '.results | type == "array"' <<<"$json" >/dev/null 2>&1; then
    fail "$name" "pkilint did not produce JSON:" "$json"
    return 1
  fi
  # $sev: severities to list; $ign: true = only ignored findings, false = none.
  local findings='.results[] | .validator as $v | .node_path as $p
      | .finding_descriptions[] | select(.severity | IN($sev[]))
      | select(('"$PKILINT_IGNORED"') == $ign)
      | "\(.severity) \(.code) [\($v) @ \($p)]" + (if .message then ": \(.message)" else "" end)'
  local failing listed ignored
  failing=$(jq -r --argjson sev "$PKILINT_FAILING" --argjson ign false "$findings" <<<"$json")
  listed=$(jq -r --argjson sev "$PKILINT_LISTED" --argjson ign false "$findings" <<<"$json")
  ignored=$(jq -r --argjson sev '["FATAL","ERROR","WARNING","NOTICE","INFO"]' --argjson ign true "$findings" <<<"$json" |
    sed 's/^/ignored (known false positive): /')
  if [[ -n $failing ]]; then
    fail "$name" "$failing" ${listed:+"$listed"} ${ignored:+"$ignored"}
  else
    pass "$name" ${listed:+"$listed"} ${ignored:+"$ignored"}
  fi
}

# pkilint_cert NAME PEM: RFC 5280 lint of one certificate.
pkilint_cert() {
  local out
  out=$(pkilint_tool lint_pkix_cert lint -s INFO -f JSON "$2" 2>&1) || true
  _pkilint_judge "$1" "$out"
}

# pkilint_chain NAME ISSUER_PEM SUBJECT_PEM: RFC 5280 issuer/subject pair lint.
pkilint_chain() {
  local out
  out=$(pkilint_tool lint_pkix_signer_signee_cert_chain lint -s INFO -f JSON "$2" "$3" 2>&1) || true
  _pkilint_judge "$1" "$out"
}

# pkilint_crl NAME CRL_FILE [CRL|ARL]: RFC 5280 (PKIX profile) CRL lint; the
# file may be DER or PEM. ARL for CRLs issued by a root (they list revoked
# CAs), CRL (the default) for those issued by an intermediate.
pkilint_crl() {
  local out
  out=$(pkilint_tool lint_crl lint -t "${3:-CRL}" -p PKIX -s INFO -f JSON "$2" 2>&1) || true
  _pkilint_judge "$1" "$out"
}

# --- hierarchies, leaves and their checks through the admin API and openssl -------
# fetch_plain NAME PATH OUT: GET http://127.0.0.1:$HTTP_PORT$PATH into OUT.
# Returns 0 on 200; 2 on 404 (reported as SKIP: endpoint not there yet);
# 1 otherwise (reported as FAIL).
fetch_plain() {
  local name=$1 path=$2 out=$3 st
  st=$(curl -sS -o "$out" -w '%{http_code}' --max-time 30 "http://127.0.0.1:$HTTP_PORT$path" 2>&1) || true
  case $st in
    200) return 0 ;;
    404) skip "$name" "GET $path returned 404: endpoint not implemented yet?"; return 2 ;;
    *) fail "$name" "GET http://127.0.0.1:$HTTP_PORT$path -> $st" "$(head -c 500 "$out" 2>/dev/null)"; return 1 ;;
  esac
}

# url_path URL: the path part of an http(s) URL ("/crl/x.crl").
url_path() { local rest=${1#*://}; [[ $rest == */* ]] && echo "/${rest#*/}" || echo /; }

# check_ca_endpoint LABEL CA_ID CA_PEM: /ca/{id}.crt serves the DER certificate.
check_ca_endpoint() {
  local label=$1 id=$2 pem=$3 out="$CERTS/$2.crt" name="$1: GET /ca/{id}.crt returns its DER certificate"
  fetch_plain "$name" "/ca/$id.crt" "$out" || return 0
  if [[ $(cert_fp "$out" der) == "$(cert_fp "$pem")" && -n $(cert_fp "$pem") ]]; then
    pass "$name"
  else
    fail "$name" "response is not the DER encoding of the CA certificate" "$(head -c 200 "$out" | od -An -c | head -n 3)"
  fi
}

# check_crl LABEL CA_ID CA_PEM [REVOKED_SERIAL]: /crl/{id}.crl is a DER CRL
# signed by that CA (kept as $CERTS/CA_ID.crl) and (optionally) lists
# REVOKED_SERIAL with reason keyCompromise.
check_crl() {
  local label=$1 id=$2 pem=$3 serial=${4-} out="$CERTS/$2.crl" name="$1: GET /crl/{id}.crl is a CRL signed by the CA"
  local r
  fetch_plain "$name" "/crl/$id.crl" "$out" && r=0 || r=$?
  ((r == 0)) || return 0
  local v
  if v=$(openssl crl -inform DER -in "$out" -CAfile "$pem" -noout 2>&1) && grep -q 'verify OK' <<<"$v"; then
    pass "$name"
  else
    fail "$name" "openssl crl -inform DER -CAfile <ca> :" "$v"
    return 0
  fi
  if [[ -n $serial ]]; then
    # The CRL may be regenerated asynchronously: re-fetch for a few seconds.
    local text
    for _ in $(seq 1 10); do
      text=$(openssl crl -inform DER -in "$out" -noout -text 2>&1)
      if grep -qiE "Serial Number: 0*$serial\$" <<<"$text"; then
        if grep -A4 -iE "Serial Number: 0*$serial\$" <<<"$text" | grep -q 'Key Compromise'; then
          pass "$label: CRL lists serial $serial with reason keyCompromise"
        else
          fail "$label: CRL lists serial $serial with reason keyCompromise" "listed, but without reason Key Compromise:" \
            "$(grep -A4 -iE "Serial Number: 0*$serial\$" <<<"$text")"
        fi
        return 0
      fi
      sleep 0.5
      curl -sS -o "$out" --max-time 30 "http://127.0.0.1:$HTTP_PORT/crl/$id.crl" || true
    done
    fail "$label: CRL lists serial $serial with reason keyCompromise" "serial not found in:" "$text"
  fi
}

# buy_root LABEL ALG: POST /cas kind=root; sets NEW_ROOT_ID and NEW_BUNDLED_ID.
buy_root() {
  local label=$1 alg=$2
  NEW_ROOT_ID="" NEW_BUNDLED_ID=""
  api POST /cas "$(jq -nc --arg cn "Conformance ${label#*. } Root" --arg alg "$alg" \
    '{kind:"root", common_name:$cn, key_algorithm:$alg, validity_days:3650, service_months:24, quota:50}')"
  expect_ca "$label: buy root ($alg) -> 201 pending" 201 pending || return 1
  NEW_ROOT_ID=$(jb '.id')
  NEW_BUNDLED_ID=$(jb '.intermediate_id // empty')
  if [[ -z $NEW_BUNDLED_ID ]]; then
    fail "$label: root purchase returns intermediate_id" "$(_api_failure_details)"
    return 1
  fi
}

# buy_intermediate LABEL PARENT ALG: POST /cas kind=intermediate; sets NEW_INT_ID.
buy_intermediate() {
  local label=$1 parent=$2 alg=$3
  NEW_INT_ID=""
  api POST /cas "$(jq -nc --arg p "$parent" --arg cn "Conformance ${label#*. } Intermediate" --arg alg "$alg" \
    '{kind:"intermediate", parent_id:$p, common_name:$cn, key_algorithm:$alg, validity_days:1825}')"
  expect_ca "$label: buy intermediate ($alg) -> 201 pending" 201 pending || return 1
  NEW_INT_ID=$(jb '.id')
  if [[ $(jb '.parent_id // empty') != "$parent" ]]; then
    fail "$label: new intermediate's parent_id" "expected $parent" "$(_api_failure_details)"
  fi
}

# enable_generate LABEL ID OUT_PEM [EXPECTED_ALG]
enable_generate() {
  local label=$1 id=$2 out=$3 alg=${4-}
  api POST "/cas/$id/enable" '{"mode":"generate"}'
  expect_ca "$label: enable (generate) -> 200 enabled with certificate" 200 enabled "$out" || return 1
  if [[ -n $alg ]]; then
    local got; got=$(key_algorithm_of "$out")
    if [[ $got == "$alg" && $(jb '.key_algorithm // empty') == "$alg" ]]; then
      pass "$label: certificate key is $alg"
    else
      fail "$label: certificate key is $alg" "certificate: $got, API key_algorithm: $(jb '.key_algorithm // empty')"
    fi
  fi
}

# issue_leaf LABEL CA_ID BODY_JSON OUT_PREFIX: POST /cas/CA_ID/certificates
# expecting 201 and a certificate object; saves OUT_PREFIX.json, .pem (leaf)
# and .chain.pem, and sets LEAF_ID and LEAF_SERIAL.
issue_leaf() {
  local label=$1 ca=$2 body=$3 out=$4 problems=()
  LEAF_ID="" LEAF_SERIAL=""
  api POST "/cas/$ca/certificates" "$body"
  if [[ $API_STATUS != 201 ]]; then
    fail "$label -> 201 certificate" "expected HTTP 201" "$(_api_failure_details)"
    return 1
  fi
  printf '%s\n' "$API_BODY" >"$out.json"
  jb '.certificate_pem // empty' >"$out.pem"
  jb '.chain_pem // empty' >"$out.chain.pem"
  LEAF_ID=$(jb '.id // empty')
  LEAF_SERIAL=$(jb '.serial // empty')
  openssl x509 -in "$out.pem" -noout 2>/dev/null || problems+=("certificate_pem is not a PEM certificate")
  [[ -n $LEAF_ID ]] || problems+=("no id")
  local want_type; want_type=$(jq -r '.type' <<<"$body")
  [[ $(jb '.type // empty') == "$want_type" ]] || problems+=("type is \"$(jb '.type // empty')\", expected \"$want_type\"")
  [[ $(jb '.ca_id // empty') == "$ca" ]] || problems+=("ca_id is \"$(jb '.ca_id // empty')\", expected $ca")
  [[ $(jb '.status // empty') == issued ]] || problems+=("status is \"$(jb '.status // empty')\", expected issued")
  [[ $(jb '.common_name // empty') == "$(jq -r '.common_name' <<<"$body")" ]] ||
    problems+=("common_name is \"$(jb '.common_name // empty')\"")
  local api_serial; api_serial=$(tr a-f A-F <<<"$LEAF_SERIAL" | sed 's/^0*//')
  [[ -n $api_serial && $api_serial == "$(cert_serial "$out.pem" 2>/dev/null)" ]] ||
    problems+=("serial \"$LEAF_SERIAL\" is not the certificate's serial ($(cert_serial "$out.pem" 2>/dev/null))")
  local has_key=true
  jq -e 'has("csr_pem")' <<<"$body" >/dev/null && has_key=false
  [[ $(jb '.has_private_key') == "$has_key" ]] || problems+=("has_private_key is $(jb '.has_private_key'), expected $has_key")
  [[ -n $(jb '.not_before // empty') && -n $(jb '.not_after // empty') ]] || problems+=("not_before/not_after missing")
  # chain_pem: the issuing intermediate, then the root.
  local n; n=$(count_pem "$out.chain.pem" CERTIFICATE)
  awk '/-----BEGIN CERTIFICATE-----/{n++} n==1' "$out.chain.pem" >"$out.chain1.pem"
  awk '/-----BEGIN CERTIFICATE-----/{n++} n==2' "$out.chain.pem" >"$out.chain2.pem"
  if [[ $n != 2 || $(cert_fp "$out.chain1.pem") != "$(cert_fp "$L_INT_PEM_FOR_CHAIN")" ||
    $(cert_fp "$out.chain2.pem") != "$(cert_fp "$L_ROOT_PEM_FOR_CHAIN")" ]]; then
    problems+=("chain_pem is not [intermediate, root]: $n certificates" \
      "$(openssl crl2pkcs7 -nocrl -certfile "$out.chain.pem" 2>/dev/null | openssl pkcs7 -print_certs -noout 2>/dev/null | grep subject)")
  fi
  if ((${#problems[@]})); then
    fail "$label -> 201 certificate" "${problems[@]}" "$(_api_failure_details | head -c 1500)"
    return 1
  fi
  pass "$label -> 201 certificate" "id $LEAF_ID, serial $LEAF_SERIAL"
}

# ext_text PEM NAME: the lines of extension NAME (e.g. "Extended Key Usage") in
# openssl x509 -text, without the header line, trimmed.
ext_text() {
  cert_text "$1" | awk -v name="$2" '
    { match($0, /^ */); ind = RLENGTH }
    on && ind <= hind { exit }
    on { sub(/^ +/, ""); print; next }
    index($0, name) && ($0 ~ /X509v3|Authority Information Access/) { on = 1; hind = ind }'
}

# check_leaf LABEL PEM TYPE EXPECTED_SAN_LINE CA_ID ALG [nocdp]: chain verifies
# against the leaf hierarchy; openssl shows the type's EKU, exactly the SANs,
# CRL distribution point /crl/CA_ID.crl (none with "nocdp"), CA Issuers
# /ca/CA_ID.crt, CA:FALSE, and the key algorithm.
check_leaf() {
  local label=$1 pem=$2 type=$3 sans=$4 ca=$5 alg=$6 nocdp=${7-}
  verify_chain "$label: openssl verify -CAfile root.pem -untrusted intermediate.pem leaf.pem" \
    "$L_ROOT_PEM" "$pem" "$L_INT_PEM"
  local want_eku eku
  case $type in
    server) want_eku="TLS Web Server Authentication" ;;
    client) want_eku="TLS Web Client Authentication" ;;
  esac
  eku=$(ext_text "$pem" "Extended Key Usage")
  if [[ $eku == "$want_eku" ]]; then
    pass "$label: extendedKeyUsage is $want_eku"
  else
    fail "$label: extendedKeyUsage is $want_eku" "got: '$eku'"
  fi
  local san; san=$(ext_text "$pem" "Subject Alternative Name")
  if [[ $san == "$sans" ]]; then
    pass "$label: subjectAltName is exactly: $sans"
  else
    fail "$label: subjectAltName is exactly: $sans" "got: '$san'"
  fi
  local t problems=()
  t=$(cert_text "$pem")
  local cdp aia
  cdp=$(grep -A4 'X509v3 CRL Distribution Points' <<<"$t" | grep -oE 'URI:[^ ,]+' | cut -c5- | tr '\n' ' ' | sed 's/ $//')
  aia=$(grep -A4 'Authority Information Access' <<<"$t" | grep -oE 'CA Issuers - URI:[^ ,]+' | sed 's/^CA Issuers - URI://' | tr '\n' ' ' | sed 's/ $//')
  if [[ $nocdp == nocdp ]]; then
    [[ -z $cdp ]] && ! grep -q 'CRL Distribution Points' <<<"$t" || problems+=("expected no CRL Distribution Points, got '$cdp'")
  else
    [[ $cdp == http://* && $(url_path "$cdp") == "/crl/$ca.crl" ]] ||
      problems+=("CRL Distribution Points: expected one http URL ending /crl/$ca.crl, got '$cdp'")
  fi
  [[ $aia == http://* && $(url_path "$aia") == "/ca/$ca.crt" ]] ||
    problems+=("CA Issuers: expected one http URL ending /ca/$ca.crt, got '$aia'")
  grep -A1 'X509v3 Basic Constraints' <<<"$t" | grep -q 'CA:FALSE' || problems+=("basicConstraints CA:FALSE missing")
  grep -A1 'X509v3 Key Usage' <<<"$t" | grep -q 'Digital Signature' || problems+=("keyUsage lacks Digital Signature")
  local got_alg; got_alg=$(key_algorithm_of "$pem")
  [[ $got_alg == "$alg" ]] || problems+=("key algorithm is $got_alg, expected $alg")
  local what="CRL Distribution Points ${nocdp:+(none) }and CA Issuers URLs, CA:FALSE, $alg key"
  if ((${#problems[@]})); then
    fail "$label: $what" "${problems[@]}"
  else
    pass "$label: $what" "CDP: ${cdp:-none}" "CA Issuers: $aia"
  fi
}

# =================================================================================
# fetch_crl_pem CA_ID OUT_PREFIX: GET /crl/CA_ID.crl into OUT_PREFIX.der and its
# PEM conversion OUT_PREFIX.pem; returns non-zero unless 200 and parseable.
fetch_crl_pem() {
  local st; st=$(plain_get "/crl/$1.crl" "$2.der")
  [[ $st == 200 ]] && openssl crl -inform DER -in "$2.der" -outform PEM -out "$2.pem" 2>/dev/null
}

# crl_verify LEAF CRL_PEM [-crl_check_all]: openssl verify with CRL checking
# against the leaf hierarchy; prints openssl's output; exit status as openssl's.
crl_verify() {
  openssl verify "${3:--crl_check}" -CAfile "$L_ROOT_PEM" -untrusted "$L_INT_PEM" -CRLfile "$2" "$1" 2>&1
}

# export_cert ID BODY_JSON OUT: POST /certificates/ID/export into OUT.
export_cert() { api_download POST "/certificates/$1/export" "$2" "$3"; }

# expect_download NAME: PASS/FAIL on the last export being a 200 with a body.
expect_download() {
  if [[ $API_STATUS == 200 && -s $2 ]]; then return 0; fi
  fail "$1" "expected HTTP 200 with a body" "HTTP $API_STATUS $API_CTYPE" "$(head -c 1000 "$2")"
  return 1
}

# The CAs issue_leaf compares chain_pem with, and check_leaf verifies against
# (set by leaf_hierarchy, or by the caller per hierarchy).
L_ROOT_ID="" L_INT_ID="" L_ROOT_PEM="" L_INT_PEM=""
L_INT_PEM_FOR_CHAIN="" L_ROOT_PEM_FOR_CHAIN=""

# leaf_hierarchy: a hierarchy of the script's own for leaves (the bootstrap
# intermediate's quota is left alone): root (quota 40) + bundled intermediate,
# ec-p256, 25 assigned. Sets L_ROOT_ID, L_INT_ID, L_ROOT_PEM, L_INT_PEM (and
# the chain globals). A setup step: FAILs when something is refused, no PASS
# lines (tests/it/hierarchy.rs checks these answers).
leaf_hierarchy() {
  L_ROOT_PEM="$CERTS/l-root.pem" L_INT_PEM="$CERTS/l-int.pem"
  api POST /cas '{"kind":"root","common_name":"Conformance Leaf Root","key_algorithm":"ec-p256","validity_days":3650,"quota":40}'
  quietly expect_ca "buy leaf root (quota 40) -> 201 pending" 201 pending || return 1
  L_ROOT_ID=$(jb '.id')
  local int_id; int_id=$(jb '.intermediate_id // empty')
  [[ -n $int_id ]] || { fail "leaf root purchase returns intermediate_id" "$(_api_failure_details)"; return 1; }
  quietly enable_generate "leaf root" "$L_ROOT_ID" "$L_ROOT_PEM" ec-p256 || return 1
  quietly enable_generate "leaf intermediate" "$int_id" "$L_INT_PEM" || return 1
  api POST "/cas/$L_ROOT_ID/quota/assign" "$(jq -nc --arg i "$int_id" '{intermediate_id:$i, count:25}')"
  quietly expect "quota/assign 25 to the leaf intermediate" 200 || return 1
  L_INT_ID=$int_id
  L_INT_PEM_FOR_CHAIN=$L_INT_PEM L_ROOT_PEM_FOR_CHAIN=$L_ROOT_PEM
}

# The leaves most scripts need, issued from the leaf hierarchy (bodies shared
# so every script checks the same certificates): body JSON by name.
leaf_body() {
  case $1 in
    p256) echo '{"type":"server","common_name":"www.conformance.example","sans":[{"type":"dns","value":"www.conformance.example"},{"type":"dns","value":"api.conformance.example"},{"type":"ip","value":"192.0.2.10"}],"validity_days":90,"organization":"Conformance","organizational_unit":"Suite","locality":"Berlin","state":"Berlin","country":"DE","tags":{"env":"conformance","suite":"g"},"name":"conformance p256"}' ;;
    rsa) echo '{"type":"server","common_name":"rsa.conformance.example","sans":[{"type":"dns","value":"rsa.conformance.example"}],"validity_days":90,"key_algorithm":"rsa-2048"}' ;;
    ed) echo '{"type":"server","common_name":"ed.conformance.example","sans":[{"type":"dns","value":"ed.conformance.example"},{"type":"ip","value":"2001:db8::10"}],"validity_days":90,"key_algorithm":"ed25519"}' ;;
    nocrl) echo '{"type":"server","common_name":"nocrl.conformance.example","sans":[{"type":"dns","value":"nocrl.conformance.example"}],"validity_days":90,"include_crl":false}' ;;
    *) echo "leaf_body: unknown leaf $1" >&2; return 1 ;;
  esac
}

# csr_client_body CSR_FILE: the body of the client certificate issued from an
# openssl-made CSR.
csr_client_body() {
  jq -nc --rawfile csr "$1" \
    '{type:"client", common_name:"device1", validity_days:90, csr_pem:$csr, tags:{env:"conformance"},
      sans:[{type:"email", value:"device1@conformance.example"}, {type:"uri", value:"https://devices.conformance.example/device1"}]}'
}

# make_csr KEY_OUT CSR_OUT SUBJECT: an EC P-256 key and CSR made by openssl.
make_csr() {
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$3" \
    -keyout "$1" -out "$2" >/dev/null 2>&1
}

# --- exports --------------------------------------------------------------------
EXPORT_PW="conformance-Pw-1"

# issue_key_leaves DIR: the ec-p256, rsa-2048 and ed25519 server certificates
# of leaf_body from the leaf hierarchy, as setup (their checks are in
# openssl-leaf.sh); DIR/{p256,rsa,ed}.pem and LEAF_IDS[p256|rsa|ed].
declare -A LEAF_IDS=()
issue_key_leaves() {
  local d=$1 which
  mkdir -p "$d"
  for which in p256 rsa ed; do
    quietly issue_leaf "server cert ($which) to export" "$L_INT_ID" "$(leaf_body "$which")" "$d/$which" &&
      LEAF_IDS[$which]=$LEAF_ID
  done
  return 0
}
