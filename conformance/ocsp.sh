#!/usr/bin/env bash
# The OCSP responder (RFC 6960, RFC 5019) judged by `openssl ocsp`: the
# bootstrap intermediate with OCSP on, a leaf's AIA OCSP URL (read with
# openssl x509 -ocsp_uri) answering good, then revoked after a revocation
# through the admin API, through ACME (lego revoke) and of an EST-enrolled
# certificate; each by POST with and without nonce and by GET
# (base64 request in the URL, then openssl ocsp -respin); unknown serials; the
# delegated OCSP signing certificate; pkilint's lint_ocsp_response on
# responses (CA-signed and delegated) and lint_pkix_cert on the delegated
# signer. FATAL/ERROR/WARNING findings fail a lint check.
#
#   bash conformance/ocsp.sh      (see lib.sh and lib-acme.sh for the environment)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=lib-acme.sh
source "$HERE/lib-acme.sh"
# shellcheck source-path=SCRIPTDIR source=lib-est.sh
source "$HERE/lib-est.sh"
conformance_init ocsp
python3 -c 'import pkilint' 2>/dev/null ||
  { echo "conformance/ocsp: python3 module pkilint not found (run .ci/install-deps)" >&2; exit 2; }

# =================================================================================
section "OCSP on the bootstrap intermediate"
# =================================================================================
acme_start || finish
INT_ID=$BOOT_INT_ID
INT_PEM="$CERTS/boot-int.pem"
OCSP_URL=""
D="$WORK/ocsp"
mkdir -p "$D"

api PUT "/cas/$INT_ID/ocsp" '{"enabled":true}'
if [[ $API_STATUS == 200 && $(jb '.enabled') == true ]]; then
  OCSP_URL=$(jb '.url')
  pass "PUT /cas/{id}/ocsp {enabled:true} -> 200" "responder $OCSP_URL"
else
  fail "PUT /cas/{id}/ocsp {enabled:true} -> 200" "$(_api_failure_details)"
  finish
fi

# ocsp_post LABEL CERT_PEM EXPECTED NONCE_ARG: openssl ocsp against the URL in
# the certificate's AIA (POST), verifying the response against root.pem.
ocsp_post() {
  local label=$1 cert=$2 want=$3 nonce=$4 url out
  url=$(openssl x509 -in "$cert" -noout -ocsp_uri 2>/dev/null)
  if [[ -z $url ]]; then
    fail "$label: the certificate's AIA names an OCSP responder" "$(cert_text "$cert" | grep -A3 'Authority Information')"
    return 1
  fi
  out=$(openssl ocsp -issuer "$INT_PEM" -cert "$cert" -url "$url" -CAfile "$ROOT_PEM" "$nonce" -resp_text 2>&1) || true
  if grep -q "Response verify OK" <<<"$out" && grep -qE "^$cert: $want\$" <<<"$out" &&
    { [[ $nonce == -no_nonce ]] || grep -q "OCSP Nonce" <<<"$out"; } &&
    ! grep -q "WARNING" <<<"$out"; then
    pass "$label: openssl ocsp (POST $nonce) says $want" "$(grep -E "^$cert:|Reason|Revocation Time" <<<"$out")"
  else
    fail "$label: openssl ocsp (POST $nonce) says $want" "openssl ocsp -issuer $INT_PEM -cert $cert -url $url $nonce" "$out"
  fi
}

# ocsp_get LABEL CERT_PEM EXPECTED: the request as base64 in the URL (GET), the
# answer read with openssl ocsp -respin; also the GET caching headers.
ocsp_get() {
  local label=$1 cert=$2 want=$3 b64 st out
  openssl ocsp -issuer "$INT_PEM" -cert "$cert" -no_nonce -reqout "$D/req.der" >/dev/null 2>&1
  b64=$(openssl base64 -A -in "$D/req.der" | sed 's|+|%2B|g; s|/|%2F|g; s|=|%3D|g')
  st=$(plain_get "/ocsp/$INT_ID/$b64" "$D/get.der" -D "$D/get.hdr")
  out=$(openssl ocsp -respin "$D/get.der" -issuer "$INT_PEM" -cert "$cert" -CAfile "$ROOT_PEM" -no_nonce 2>&1) || true
  if [[ $st == 200 ]] && grep -q "Response verify OK" <<<"$out" && grep -qE "^$cert: $want\$" <<<"$out" &&
    grep -qi '^cache-control: max-age=' "$D/get.hdr" && grep -qi '^etag:' "$D/get.hdr" &&
    grep -qi '^last-modified:' "$D/get.hdr"; then
    pass "$label: GET /ocsp/{ca}/{base64} says $want (Cache-Control max-age, ETag, Last-Modified)" \
      "$(grep -iE '^(cache-control|etag|last-modified)' "$D/get.hdr" | tr -d '\r')"
  else
    fail "$label: GET /ocsp/{ca}/{base64} says $want (Cache-Control max-age, ETag, Last-Modified)" \
      "HTTP $st" "$(tr -d '\r' <"$D/get.hdr" 2>/dev/null)" "$out"
  fi
}

# ocsp_all LABEL CERT_PEM EXPECTED: POST with nonce, POST without, GET.
ocsp_all() {
  ocsp_post "$1" "$2" "$3" -nonce
  ocsp_post "$1" "$2" "$3" -no_nonce
  ocsp_get "$1" "$2" "$3"
}

# wait_revoked LABEL CERT_PEM: polls GET until it says revoked (≤ 1 s).
wait_revoked() {
  local start; start=$(now_ms)
  while (($(now_ms) - start < 1000)); do
    openssl ocsp -issuer "$INT_PEM" -cert "$2" -url "$OCSP_URL" -CAfile "$ROOT_PEM" -no_nonce 2>/dev/null |
      grep -qE ": revoked\$" && { pass "$1: revoked within $(($(now_ms) - start)) ms"; return 0; }
    sleep 0.05
  done
  fail "$1: revoked within 1 s"
}

# lint_response LABEL FILE
lint_response() {
  local out
  out=$(pkilint_tool lint_ocsp_response lint -s INFO -f JSON "$2" 2>&1) || true
  _pkilint_judge "$1" "$out"
}

# =================================================================================
section "admin API: issue, good, revoke, revoked"
# =================================================================================
admin_leaf() {
  api POST "/cas/$INT_ID/certificates" \
    '{"type":"server","common_name":"ocsp.conformance.example","sans":[{"type":"dns","value":"ocsp.conformance.example"}],"validity_days":30}'
  quietly expect "issue a leaf through the admin API" 201 || return 0
  jb '.certificate_pem' >"$D/admin.pem"
  local id; id=$(jb '.id')
  ocsp_all "admin leaf" "$D/admin.pem" good
  lint_response "lint_ocsp_response: good, CA-signed" "$D/get.der"
  # An unknown serial.
  local out
  out=$(openssl ocsp -issuer "$INT_PEM" -serial 0x7f0102030405 -url "$OCSP_URL" -CAfile "$ROOT_PEM" 2>&1) || true
  if grep -qE "^0x7f0102030405: unknown\$" <<<"$out" && grep -q "Response verify OK" <<<"$out"; then
    pass "openssl ocsp -serial (never issued) says unknown"
  else
    fail "openssl ocsp -serial (never issued) says unknown" "$out"
  fi
  api POST "/certificates/$id/revoke" '{"reason":"keyCompromise"}'
  quietly expect "revoke the admin leaf" 200 || return 0
  wait_revoked "admin revocation" "$D/admin.pem"
  ocsp_all "admin leaf, revoked" "$D/admin.pem" revoked
  lint_response "lint_ocsp_response: revoked (keyCompromise), CA-signed" "$D/get.der"
}
admin_leaf || true

# =================================================================================
section "ACME: lego obtains, good; lego revoke, revoked"
# =================================================================================
acme_leaf() {
  local lego; lego=$(command -v lego || true)
  [[ -n $lego ]] || { fail "lego is installed" "not on PATH (run .ci/install-deps)"; return 0; }
  local p="$D/lego" name="ocsp-lego.$ACME_ZONE" out="$D/lego.out" rc
  acme_client "$out" env LEGO_CA_CERTIFICATES="$ROOT_PEM" "$lego" --server "$ACME_DIR_URL" \
    --email ops@example.com --accept-tos --path "$p" --domains "$name" \
    --http --http.port "127.0.0.1:$VA_HTTP_PORT" run && rc=0 || rc=$?
  if ((rc != 0)); then
    fail "lego run (http-01) -d $name" "$(acme_client_failure "$rc" "$out")"
    return 0
  fi
  awk '/-----BEGIN CERTIFICATE-----/{n++} n==1' "$p/certificates/$name.crt" >"$D/acme.pem"
  ocsp_all "ACME leaf" "$D/acme.pem" good
  acme_client "$out" env LEGO_CA_CERTIFICATES="$ROOT_PEM" "$lego" --server "$ACME_DIR_URL" \
    --email ops@example.com --accept-tos --path "$p" --domains "$name" revoke --reason 4 --keep && rc=0 || rc=$?
  if ((rc != 0)); then
    fail "lego revoke --reason 4" "$(acme_client_failure "$rc" "$out")"
    return 0
  fi
  wait_revoked "ACME revocation (lego revoke)" "$D/acme.pem"
  ocsp_all "ACME leaf, revoked" "$D/acme.pem" revoked
}
acme_leaf || true

# =================================================================================
section "EST: enrolled, good; revoked, revoked"
# =================================================================================
est_leaf() {
  EST_WORK="$D/est" EST_INT_PEM="$INT_PEM"
  EST_BASE="https://localhost:$HTTPS_PORT/.well-known/est"
  mkdir -p "$EST_WORK"
  api POST "/cas/$INT_ID/est/clients" \
    "$(jq -nc --arg u "$EST_USER" --arg p "$EST_PASS" --arg n "$EST_NAMES" '{username:$u, password:$p, name_patterns:[$n]}')"
  quietly expect "create an EST HTTP Basic account" 201 || return 0
  est_b64_csr "$EST_WORK/dev.key" "$EST_WORK/dev.csr.b64" "/CN=ocsp.devices.vellum.test"
  est_call POST simpleenroll "$EST_WORK/dev.b64" -u "$EST_USER:$EST_PASS" \
    -H 'Content-Type: application/pkcs10' --data-binary "@$EST_WORK/dev.csr.b64"
  if [[ $EST_STATUS != 200 ]] || ! est_certs "$EST_WORK/dev.b64" "$D/est.pem" >/dev/null; then
    fail "EST simpleenroll" "$(est_details "$EST_WORK/dev.b64")"
    return 0
  fi
  ocsp_all "EST leaf" "$D/est.pem" good
  local serial; serial=$(openssl x509 -in "$D/est.pem" -noout -serial | cut -d= -f2 | tr A-F a-f | sed 's/^0*//')
  api GET "/certificates?q=ocsp.devices.vellum.test"
  # Without leading zeros on both sides: openssl prints whole bytes ("05AE…"), as does the
  # inventory; a serial whose first byte is below 0x10 otherwise never matched.
  local id; id=$(jq -r --arg s "$serial" '[.items[]? | select((.serial | ltrimstr("0")) == $s)][0].id // empty' <<<"$API_BODY")
  if [[ -z $id ]]; then
    fail "find the EST certificate in the inventory" "$(_api_failure_details)"
    return 0
  fi
  api POST "/certificates/$id/revoke" '{"reason":"cessationOfOperation"}'
  quietly expect "revoke the EST-enrolled certificate" 200 || return 0
  wait_revoked "EST-enrolled certificate revoked" "$D/est.pem"
  ocsp_all "EST leaf, revoked" "$D/est.pem" revoked
}
est_leaf || true

# =================================================================================
section "delegated OCSP signing certificate"
# =================================================================================
delegated() {
  api PUT "/cas/$INT_ID/ocsp" '{"enabled":true,"delegated_signer":true}'
  quietly expect "switch to a delegated signer" 200 || return 0
  jb '.signer.certificate_pem // empty' >"$D/signer.pem"
  local text; text=$(cert_text "$D/signer.pem")
  if grep -q "OCSP Signing" <<<"$text" && grep -q "OCSP No Check" <<<"$text"; then
    pass "the delegated signer has EKU OCSPSigning and id-pkix-ocsp-nocheck"
  else
    fail "the delegated signer has EKU OCSPSigning and id-pkix-ocsp-nocheck" "$text"
  fi
  pkilint_cert "lint_pkix_cert: delegated OCSP signer" "$D/signer.pem"
  api POST "/cas/$INT_ID/certificates" \
    '{"type":"server","common_name":"delegated.conformance.example","sans":[{"type":"dns","value":"delegated.conformance.example"}],"validity_days":30}'
  quietly expect "issue a leaf" 201 || return 0
  jb '.certificate_pem' >"$D/deleg.pem"
  ocsp_all "delegated signer" "$D/deleg.pem" good
  lint_response "lint_ocsp_response: good, delegated signer" "$D/get.der"
}
delegated || true

finish
