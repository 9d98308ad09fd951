# shellcheck shell=bash
# Helpers for conformance/run (sourced, not run).
#
# Result bookkeeping (pass/fail/skip), the admin API client (api + expect*),
# JSON and certificate helpers, and the pkilint wrappers.
#
# Globals the caller sets before using the API helpers:
#   WORK        scratch dir for this run
#   ROOT_PEM    root CA certificate written by the server (trust anchor)
#   HTTPS_PORT  / HTTP_PORT   the server's listeners
#   TOKEN       admin bearer token

PASSED=0
FAILED=0
SKIPPED=0

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

pass() { PASSED=$((PASSED + 1)); echo "PASS  $1"; shift; (($#)) && _details "$@"; return 0; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL  $1"; shift; (($#)) && _details "$@"; return 1; }
skip() { SKIPPED=$((SKIPPED + 1)); echo "SKIP  $1"; shift; (($#)) && _details "$@"; return 0; }
note() { _details "$@"; }

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
