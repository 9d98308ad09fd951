#!/usr/bin/env bash
# Delta CRLs (RFC 5280 §5.2.4) judged by openssl and pkilint: delta CRLs turned
# on for the bootstrap intermediate and root through the admin API; a new leaf
# names the delta in freshestCRL; the base CRL carries freshestCRL and the
# delta CRL a critical deltaCRLIndicator equal to the base's number, with a
# higher number of its own (openssl crl -text); `openssl verify -crl_check
# -use_deltas` with base + delta says OK before a revocation and "certificate
# revoked" after it, while the base alone (not yet re-signed) still says OK;
# pkilint's lint_crl on the delta (empty and listing the leaf), on the base
# with freshestCRL, and on the root's base and delta (ARL). FATAL/ERROR/WARNING
# findings fail a lint check.
#
#   bash conformance/delta-crl.sh      (see lib.sh for the environment)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
conformance_init delta-crl
python3 -c 'import pkilint' 2>/dev/null ||
  { echo "conformance/delta-crl: python3 module pkilint not found (run .ci/install-deps)" >&2; exit 2; }
start_server
bootstrap_ids || finish
INT_ID=$BOOT_INT_ID
INT_PEM="$CERTS/boot-int.pem"
D="$WORK/delta"
mkdir -p "$D"

# fetch_pair PREFIX CA_ID: the CA's base and delta CRLs into PREFIX-base.{der,pem}
# and PREFIX-delta.{der,pem}; non-zero unless both are 200 and parse.
fetch_pair() {
  local p=$1 ca=$2 st
  st=$(plain_get "/crl/$ca.crl" "$p-base.der")
  [[ $st == 200 ]] || { fail "GET /crl/$ca.crl -> 200" "HTTP $st"; return 1; }
  st=$(plain_get "/crl/$ca-delta.crl" "$p-delta.der")
  [[ $st == 200 ]] || { fail "GET /crl/$ca-delta.crl -> 200" "HTTP $st" "$(head -c 300 "$p-delta.der")"; return 1; }
  openssl crl -inform DER -in "$p-base.der" -out "$p-base.pem" 2>/dev/null &&
    openssl crl -inform DER -in "$p-delta.der" -out "$p-delta.pem" 2>/dev/null
}

# verify_deltas LEAF BASE_PEM DELTA_PEM: openssl verify -crl_check -use_deltas.
verify_deltas() {
  openssl verify -crl_check -use_deltas -CAfile "$ROOT_PEM" -untrusted "$INT_PEM" \
    -CRLfile "$2" -CRLfile "$3" "$1" 2>&1
}

# =================================================================================
section "delta CRLs off: the delta URL answers 404"
# =================================================================================
st=$(plain_get "/crl/$INT_ID-delta.crl" "$D/off.body")
if [[ $st == 404 ]]; then
  pass "GET /crl/{id}-delta.crl with delta CRLs off -> 404" "$(head -c 200 "$D/off.body")"
else
  fail "GET /crl/{id}-delta.crl with delta CRLs off -> 404" "HTTP $st"
fi

# =================================================================================
section "delta CRLs on the bootstrap intermediate"
# =================================================================================
api PUT "/cas/$INT_ID/crl" '{"enabled":true,"delta_enabled":true,"delta_interval_minutes":30}'
if [[ $API_STATUS == 200 && $(jb '.delta_enabled') == true ]]; then
  pass "PUT /cas/{id}/crl {delta_enabled:true} -> 200" "delta CRL at $(jb '.delta_url')"
else
  fail "PUT /cas/{id}/crl {delta_enabled:true} -> 200" "$(_api_failure_details)"
  finish
fi
api PUT "/cas/$INT_ID/crl" '{"enabled":true,"delta_enabled":true,"delta_interval_minutes":2}'
expect_problem "delta_interval_minutes 2 -> 422 in words" 422 "between 5 and 1440"

api POST "/cas/$INT_ID/certificates" '{"type":"server","common_name":"delta.conformance.example","sans":[{"type":"dns","value":"delta.conformance.example"}],"validity_days":30}'
if [[ $API_STATUS == 201 ]]; then
  LEAF_ID=$(jb '.id')
  jb '.certificate_pem' >"$D/leaf.pem"
  pass "issue a leaf -> 201" "serial $(jb '.serial')"
else
  fail "issue a leaf -> 201" "$(_api_failure_details)"
  finish
fi
text=$(cert_text "$D/leaf.pem")
if grep -A3 "X509v3 Freshest CRL" <<<"$text" | grep -q "URI:http://.*/crl/$INT_ID-delta.crl"; then
  pass "the new leaf names the delta CRL in freshestCRL (openssl x509 -text)" \
    "$(grep -A3 'X509v3 Freshest CRL' <<<"$text")"
else
  fail "the new leaf names the delta CRL in freshestCRL (openssl x509 -text)" "$text"
fi
pkilint_cert "lint_pkix_cert: leaf with freshestCRL" "$D/leaf.pem"

if fetch_pair "$D/a" "$INT_ID"; then
  base_text=$(openssl crl -in "$D/a-base.pem" -noout -text 2>&1)
  delta_text=$(openssl crl -in "$D/a-delta.pem" -noout -text 2>&1)
  base_n=$(crl_number "$D/a-base.der")
  delta_n=$(crl_number "$D/a-delta.der")
  indicator=$(grep -A1 "X509v3 Delta CRL Indicator: critical" <<<"$delta_text" | tail -n1 | tr -d ' ')
  if grep -A3 "X509v3 Freshest CRL" <<<"$base_text" | grep -q "/crl/$INT_ID-delta.crl"; then
    pass "the base CRL carries freshestCRL naming the delta CRL"
  else
    fail "the base CRL carries freshestCRL naming the delta CRL" "$base_text"
  fi
  if [[ -n $indicator && $((indicator)) == "$base_n" && $delta_n -gt $base_n ]]; then
    pass "the delta CRL: critical deltaCRLIndicator = base number $base_n, its own number $delta_n is higher"
  else
    fail "the delta CRL: critical deltaCRLIndicator = base number, its own number higher" \
      "base $base_n, delta $delta_n, indicator '$indicator'" "$delta_text"
  fi
  out=$(verify_deltas "$D/leaf.pem" "$D/a-base.pem" "$D/a-delta.pem") || true
  if grep -q ": OK$" <<<"$out"; then
    pass "openssl verify -crl_check -use_deltas (base + delta) before the revocation: OK"
  else
    fail "openssl verify -crl_check -use_deltas (base + delta) before the revocation: OK" "$out"
  fi
  pkilint_crl "lint_crl -t CRL -p PKIX: base CRL with freshestCRL" "$D/a-base.der" CRL
  pkilint_crl "lint_crl -t CRL -p PKIX: empty delta CRL" "$D/a-delta.der" CRL
fi

api POST "/certificates/$LEAF_ID/revoke" '{"reason":"key_compromise"}'
expect "revoke the leaf -> 200" 200
if fetch_pair "$D/b" "$INT_ID"; then
  out=$(verify_deltas "$D/leaf.pem" "$D/b-base.pem" "$D/b-delta.pem") || true
  if grep -q "certificate revoked" <<<"$out"; then
    pass "openssl verify -crl_check -use_deltas after the revocation: certificate revoked" "$out"
  else
    fail "openssl verify -crl_check -use_deltas after the revocation: certificate revoked" "$out"
  fi
  out=$(openssl verify -crl_check -CAfile "$ROOT_PEM" -untrusted "$INT_PEM" -CRLfile "$D/b-base.pem" "$D/leaf.pem" 2>&1) || true
  if grep -q ": OK$" <<<"$out" && [[ $(crl_number "$D/b-base.der") == "$(crl_number "$D/a-base.der")" ]]; then
    pass "the base CRL waits for its schedule (same number, the leaf not on it yet)"
  else
    fail "the base CRL waits for its schedule (same number, the leaf not on it yet)" "$out"
  fi
  pkilint_crl "lint_crl -t CRL -p PKIX: delta CRL listing the revoked leaf" "$D/b-delta.der" CRL
fi

# =================================================================================
section "delta CRLs on the bootstrap root (ARLs)"
# =================================================================================
api PUT "/cas/$BOOT_ROOT_ID/crl" '{"enabled":true,"delta_enabled":true}'
expect "PUT /cas/{root}/crl {delta_enabled:true} -> 200" 200
if fetch_pair "$D/r" "$BOOT_ROOT_ID"; then
  pkilint_crl "lint_crl -t ARL -p PKIX: root base CRL with freshestCRL" "$D/r-base.der" ARL
  pkilint_crl "lint_crl -t ARL -p PKIX: root delta CRL" "$D/r-delta.der" ARL
fi

finish
