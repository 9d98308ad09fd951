#!/usr/bin/env bash
# CA certificate renewal and rollover (issue 17) judged by openssl, driving the
# real binary with curl: a fresh RSA root + intermediate; a leaf issued before;
# the intermediate renewed with the same key (POST /cas/{id}/renew) -> the old
# leaf verifies through the old and the new intermediate certificate, a new
# leaf through both; EST /cacerts serves the new intermediate; the root renewed
# with a new key -> cross-signed certificate (openssl x509: AKI = old key, SKI =
# new key, issuer = the root's name) verified by the old root; the intermediate
# renewed again by the new root -> a new leaf verifies with the new root alone
# and with the old root alone through the cross certificate (openssl verify
# -untrusted), not without it; the old chain still verifies with the old root;
# each root key's CRL (/crl/{root}.crl, /crl/{root}-g2.crl) verifies with that
# key's certificate (openssl crl -CAfile) and openssl verify -crl_check_all
# passes over both chains; a revoked old leaf is found on the CRL the old
# intermediate key verifies; pkilint on the cross certificate and the renewed
# certificates. The intermediate has OCSP (delegated signer) and delta CRLs on
# from the start: after its key changed, `openssl ocsp` with the old
# intermediate as issuer still gets answers for the old leaf (good, then revoked,
# the response verified against the old certificate), and the old key's delta CRL
# (the URL in the old leaf's freshestCRL) is signed by the old key and accepted
# by openssl verify -crl_check -use_deltas.
#
#   bash conformance/rollover.sh      (see lib.sh for the environment)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
conformance_init rollover
start_server
R="$WORK/rollover"
mkdir -p "$R"

# verify NAME EXPECT(ok|fail) CAFILE UNTRUSTED LEAF [openssl options...]
verify() {
  local name=$1 want=$2 ca=$3 untrusted=$4 leaf=$5 out; shift 5
  local args=(-CAfile "$ca")
  [[ -n $untrusted ]] && args+=(-untrusted "$untrusted")
  out=$(openssl verify "$@" "${args[@]}" "$leaf" 2>&1) || true
  if [[ $want == ok ]] && grep -q ': OK$' <<<"$out"; then
    pass "$name"
  elif [[ $want != ok ]] && ! grep -q ': OK$' <<<"$out"; then
    pass "$name" "$(tail -n 2 <<<"$out")"
  else
    fail "$name" "openssl verify $* ${args[*]} $leaf" "$out"
  fi
}

# crl_signed_by NAME CRL_PATH CERT_PEM: the CRL at CRL_PATH verifies with CERT_PEM.
crl_signed_by() {
  local name=$1 path=$2 cert=$3 file out
  file="$R/$(tr '/' '_' <<<"$path")"
  local st; st=$(plain_get "$path" "$file.der")
  if [[ $st != 200 ]]; then
    fail "$name" "GET $path -> HTTP $st" "$(head -c 300 "$file.der")"
    return 1
  fi
  openssl crl -inform DER -in "$file.der" -out "$file.pem" 2>/dev/null
  out=$(openssl crl -in "$file.pem" -CAfile "$cert" -noout 2>&1) || true
  if grep -q "verify OK" <<<"$out"; then
    pass "$name"
  else
    fail "$name" "$out"
  fi
}

leaf() { # leaf CA CN OUT
  issue_leaf_plain "$@"
}
issue_leaf_plain() {
  api POST "/cas/$1/certificates" "$(jq -nc --arg cn "$2" \
    '{type:"server", common_name:$cn, sans:[{type:"dns", value:$cn}], validity_days:30}')"
  if [[ $API_STATUS == 201 ]]; then
    jb '.certificate_pem' >"$3.pem"
    jb '.chain_pem' >"$3.chain.pem"
    LEAF_ID=$(jb '.id')
    pass "issue $2 -> 201" "serial $(jb '.serial')"
  else
    fail "issue $2 -> 201" "$(_api_failure_details)"
    return 1
  fi
}

# =================================================================================
section "a hierarchy to roll over"
# =================================================================================
buy_root "1. rollover" rsa-2048 || finish
ROOT=$NEW_ROOT_ID INT=$NEW_BUNDLED_ID
enable_generate "1. root" "$ROOT" "$R/root-1.pem" rsa-2048 || finish
enable_generate "1. intermediate" "$INT" "$R/int-1.pem" rsa-2048 || finish
api POST "/cas/$ROOT/quota/assign" "$(jq -nc --arg i "$INT" '{intermediate_id:$i, count:20}')"
expect "assign quota -> 200" 200
api PUT "/cas/$INT/ocsp" '{"enabled": true, "delegated_signer": true, "validity_hours": 2}'
expect "PUT /cas/{int}/ocsp {enabled, delegated_signer} -> 200" 200
api PUT "/cas/$INT/crl" '{"enabled": true, "delta_enabled": true}'
expect "PUT /cas/{int}/crl {delta_enabled} -> 200" 200
leaf "$INT" before.rollover.example "$R/before" || finish
BEFORE_ID=$LEAF_ID

# ocsp_says NAME ISSUER_PEM CERT_PEM EXPECTED(good|revoked): openssl ocsp against the
# URL in the certificate's AIA, the response verified with ISSUER_PEM + root 1.
ocsp_says() {
  local name=$1 issuer=$2 cert=$3 want=$4 url out
  url=$(openssl x509 -in "$cert" -noout -ocsp_uri 2>/dev/null)
  cat "$issuer" "$R/root-1.pem" "$R/root-2.pem" 2>/dev/null >"$R/ocsp-trust.pem"
  out=$(openssl ocsp -issuer "$issuer" -cert "$cert" -url "$url" -CAfile "$R/ocsp-trust.pem" \
    -no_nonce -resp_text 2>&1) || true
  if grep -q "Response verify OK" <<<"$out" && grep -qE "^$cert: $want\$" <<<"$out"; then
    pass "$name" "$(grep -E "^$cert:|Responder Id" <<<"$out" | tr '\n' ' ')"
  else
    fail "$name" "openssl ocsp -issuer $issuer -cert $cert -url $url" "$out"
  fi
}
verify "the first leaf verifies (root 1, intermediate 1)" ok "$R/root-1.pem" "$R/int-1.pem" "$R/before.pem"

# =================================================================================
section "intermediate renewed with the same key"
# =================================================================================
api POST "/cas/$INT/renew" '{"same_key": true, "validity_days": 365}'
if [[ $API_STATUS == 201 && $(jb '.generation.current') == true ]]; then
  jb '.generation.certificate_pem' >"$R/int-2.pem"
  pass "POST /cas/{int}/renew {same_key:true} -> 201, current" "serial $(jb '.generation.serial')"
else
  fail "POST /cas/{int}/renew {same_key:true} -> 201, current" "$(_api_failure_details)"
  finish
fi
if [[ "$(pubkey_of_cert "$R/int-1.pem")" == "$(pubkey_of_cert "$R/int-2.pem")" &&
  "$(cert_serial "$R/int-1.pem")" != "$(cert_serial "$R/int-2.pem")" &&
  "$(openssl x509 -in "$R/int-1.pem" -noout -subject)" == "$(openssl x509 -in "$R/int-2.pem" -noout -subject)" ]]; then
  pass "the renewed intermediate: same subject and key, new serial (openssl x509)"
else
  fail "the renewed intermediate: same subject and key, new serial (openssl x509)" \
    "$(openssl x509 -in "$R/int-2.pem" -noout -subject -serial)"
fi
verify "the old leaf verifies through the old intermediate certificate" ok "$R/root-1.pem" "$R/int-1.pem" "$R/before.pem"
verify "the old leaf verifies through the new intermediate certificate" ok "$R/root-1.pem" "$R/int-2.pem" "$R/before.pem"
leaf "$INT" after.rollover.example "$R/after" || finish
awk '/-----BEGIN CERTIFICATE-----/{n++} n==1' "$R/after.chain.pem" >"$R/after.chain1.pem"
if [[ $(cert_fp "$R/after.chain1.pem") == "$(cert_fp "$R/int-2.pem")" ]]; then
  pass "a leaf issued after the switch-over comes with the new intermediate in chain_pem"
else
  fail "a leaf issued after the switch-over comes with the new intermediate in chain_pem" "$(cat "$R/after.chain.pem")"
fi
verify "the new leaf verifies through the new intermediate certificate" ok "$R/root-1.pem" "$R/int-2.pem" "$R/after.pem"
verify "the new leaf verifies through the old intermediate certificate" ok "$R/root-1.pem" "$R/int-1.pem" "$R/after.pem"
st=$(curl_https -o "$R/cacerts.b64" -w '%{http_code}' "https://localhost:$HTTPS_PORT/.well-known/est/$INT/cacerts") || true
if [[ $st == 200 ]] && tr -d " \r\n" <"$R/cacerts.b64" | base64 -d >"$R/cacerts.p7" 2>/dev/null &&
  openssl pkcs7 -inform DER -in "$R/cacerts.p7" -print_certs -out "$R/cacerts.pem" 2>/dev/null &&
  awk '/-----BEGIN CERTIFICATE-----/{n++} {print > ("'"$R"'/cacert-" n ".pem")}' "$R/cacerts.pem" &&
  for c in "$R"/cacert-[0-9]*.pem; do cert_fp "$c"; done | grep -qx "$(cert_fp "$R/int-2.pem")"; then
  pass "EST /cacerts serves the renewed intermediate"
else
  fail "EST /cacerts serves the renewed intermediate" "HTTP $st" \
    "$(openssl pkcs7 -inform DER -in "$R/cacerts.p7" -print_certs -noout 2>&1 | head -n 6)"
fi

# =================================================================================
section "root renewed with a new key: the cross-signed certificate"
# =================================================================================
api POST "/cas/$ROOT/renew" '{"same_key": false, "validity_days": 3650}'
if [[ $API_STATUS == 201 && -n $(jb '.generation.cross_signed_pem // empty') ]]; then
  jb '.generation.certificate_pem' >"$R/root-2.pem"
  jb '.generation.cross_signed_pem' >"$R/cross.pem"
  pass "POST /cas/{root}/renew {same_key:false} -> 201 with a cross-signed certificate"
else
  fail "POST /cas/{root}/renew {same_key:false} -> 201 with a cross-signed certificate" "$(_api_failure_details)"
  finish
fi
ski() { openssl x509 -in "$1" -noout -ext subjectKeyIdentifier 2>/dev/null | tail -n1 | tr -d ' :'; }
aki() { openssl x509 -in "$1" -noout -ext authorityKeyIdentifier 2>/dev/null | grep -v Authority | tr -d ' :' | sed 's/^keyid//'; }
if [[ $(ski "$R/cross.pem") == "$(ski "$R/root-2.pem")" && $(aki "$R/cross.pem") == "$(ski "$R/root-1.pem")" &&
  $(ski "$R/root-1.pem") != "$(ski "$R/root-2.pem")" &&
  "$(openssl x509 -in "$R/cross.pem" -noout -issuer | cut -d= -f2-)" == "$(openssl x509 -in "$R/root-1.pem" -noout -subject | cut -d= -f2-)" &&
  "$(pubkey_of_cert "$R/cross.pem")" == "$(pubkey_of_cert "$R/root-2.pem")" ]]; then
  pass "cross certificate: new key (SKI $(ski "$R/cross.pem")), issued by the old root (AKI $(aki "$R/cross.pem"))"
else
  fail "cross certificate: new key, issued by the old root" "$(cert_text "$R/cross.pem")"
fi
verify "the old root verifies the cross certificate" ok "$R/root-1.pem" "" "$R/cross.pem"
if python3 -c 'import pkilint' 2>/dev/null; then
  pkilint_cert "lint_pkix_cert: cross-signed root certificate" "$R/cross.pem" || true
  pkilint_cert "lint_pkix_cert: renewed root certificate" "$R/root-2.pem" || true
else
  skip "pkilint on the cross-signed and renewed root certificates" "python3 module pkilint not found"
fi
verify "the old chain still verifies with the old root" ok "$R/root-1.pem" "$R/int-2.pem" "$R/before.pem"

api POST "/cas/$INT/renew" '{"same_key": false, "validity_days": 365}'
if [[ $API_STATUS == 201 ]]; then
  jb '.generation.certificate_pem' >"$R/int-3.pem"
  pass "POST /cas/{int}/renew {same_key:false} under the new root -> 201"
else
  fail "POST /cas/{int}/renew {same_key:false} under the new root -> 201" "$(_api_failure_details)"
  finish
fi
if cert_text "$R/int-3.pem" | grep -q "/crl/$ROOT-g2.crl"; then
  pass "the intermediate signed by the new root key names that key's CRL (/crl/{root}-g2.crl)"
else
  fail "the intermediate signed by the new root key names that key's CRL" "$(cert_text "$R/int-3.pem")"
fi
leaf "$INT" new.rollover.example "$R/new" || finish
if cert_text "$R/new.pem" | grep -q "/crl/$INT-g3.crl"; then
  pass "a leaf of the intermediate's new key names /crl/{int}-g3.crl"
else
  fail "a leaf of the intermediate's new key names /crl/{int}-g3.crl" "$(cert_text "$R/new.pem")"
fi
cat "$R/int-3.pem" "$R/cross.pem" >"$R/int-3+cross.pem"
verify "new leaf: the new root alone" ok "$R/root-2.pem" "$R/int-3.pem" "$R/new.pem"
verify "new leaf: the old root alone, through the cross certificate" ok "$R/root-1.pem" "$R/int-3+cross.pem" "$R/new.pem"
verify "new leaf: the old root without the cross certificate fails" fail "$R/root-1.pem" "$R/int-3.pem" "$R/new.pem"
verify "old leaf: the old chain with the old root" ok "$R/root-1.pem" "$R/int-1.pem" "$R/before.pem"

# =================================================================================
section "one CRL per key"
# =================================================================================
ocsp_says "OCSP: the old leaf, CertID of the old intermediate key -> good" "$R/int-1.pem" "$R/before.pem" good
ocsp_says "OCSP: the new leaf, CertID of the new intermediate key -> good" "$R/int-3.pem" "$R/new.pem" good
api POST "/certificates/$BEFORE_ID/revoke" '{"reason":"key_compromise"}'
expect "revoke the leaf of the old intermediate key -> 200" 200
ocsp_says "OCSP: the revoked old leaf, CertID of the old key -> revoked (signed by the old key)" "$R/int-1.pem" "$R/before.pem" revoked
if cert_text "$R/before.pem" | grep -A3 "Freshest CRL" | grep -q "/crl/$INT-delta.crl"; then
  pass "the old leaf's freshestCRL names the old key's delta (/crl/{int}-delta.crl)"
else
  fail "the old leaf's freshestCRL names the old key's delta" "$(cert_text "$R/before.pem")"
fi
crl_signed_by "/crl/{int}-delta.crl (the old key's delta) is signed by the old intermediate key" "/crl/$INT-delta.crl" "$R/int-1.pem"
crl_signed_by "/crl/{int}-g3-delta.crl (the new key's delta) is signed by the new intermediate key" "/crl/$INT-g3-delta.crl" "$R/int-3.pem"
crl_signed_by "/crl/{root}.crl is signed by the old root key" "/crl/$ROOT.crl" "$R/root-1.pem"
crl_signed_by "/crl/{root}-g2.crl is signed by the new root key" "/crl/$ROOT-g2.crl" "$R/root-2.pem"
crl_signed_by "/crl/{int}.crl is signed by the old intermediate key" "/crl/$INT.crl" "$R/int-1.pem"
crl_signed_by "/crl/{int}-g3.crl is signed by the new intermediate key" "/crl/$INT-g3.crl" "$R/int-3.pem"
cat "$R/_crl_$ROOT.crl.pem" "$R/_crl_$INT.crl.pem" >"$R/old-crls.pem"
cat "$R/_crl_$ROOT-g2.crl.pem" "$R/_crl_$INT-g3.crl.pem" >"$R/new-crls.pem"
out=$(openssl verify -crl_check -CAfile "$R/root-1.pem" -untrusted "$R/int-1.pem" -CRLfile "$R/old-crls.pem" "$R/before.pem" 2>&1) || true
if grep -q "certificate revoked" <<<"$out"; then
  pass "the revoked old leaf: openssl verify -crl_check with the old key's CRL says revoked"
else
  fail "the revoked old leaf: openssl verify -crl_check with the old key's CRL says revoked" "$out"
fi
cat "$R/old-crls.pem" "$R/_crl_$INT-delta.crl.pem" >"$R/old-crls+delta.pem"
out=$(openssl verify -crl_check -use_deltas -CAfile "$R/root-1.pem" -untrusted "$R/int-1.pem" -CRLfile "$R/old-crls+delta.pem" "$R/before.pem" 2>&1) || true
if grep -q "certificate revoked" <<<"$out"; then
  pass "the revoked old leaf: openssl verify -crl_check -use_deltas with the old key's base + delta says revoked"
else
  fail "the revoked old leaf: openssl verify -crl_check -use_deltas with the old key's base + delta says revoked" "$out"
fi
verify "the new chain: openssl verify -crl_check_all with the new keys' CRLs" ok \
  "$R/root-2.pem" "$R/int-3.pem" "$R/new.pem" -crl_check_all -CRLfile "$R/new-crls.pem"
for p in "/ca/$ROOT.crt:$R/root-1.pem" "/ca/$ROOT-g2.crt:$R/root-2.pem"; do
  path=${p%%:*} want=${p#*:}
  st=$(plain_get "$path" "$R/dl.der")
  if [[ $st == 200 && $(cert_fp "$R/dl.der" der) == "$(cert_fp "$want")" ]]; then
    pass "GET $path serves that key's certificate"
  else
    fail "GET $path serves that key's certificate" "HTTP $st"
  fi
done

# =================================================================================
section "every generation downloadable"
# =================================================================================
api GET "/cas/$INT/generations"
if [[ $API_STATUS == 200 && $(jb '.generations | length') == 3 ]]; then
  pass "GET /cas/{int}/generations lists 3 generations"
  jb '.generations[0].chain_pem' >"$R/g1.chain.pem"
  jb '.generations[2].chain_pem' >"$R/g3.chain.pem"
  verify "generation 1's chain (to the old root) verifies the old leaf" ok "$R/root-1.pem" "$R/g1.chain.pem" "$R/before.pem"
  verify "generation 3's chain (to the new root) verifies the new leaf" ok "$R/root-2.pem" "$R/g3.chain.pem" "$R/new.pem"
else
  fail "GET /cas/{int}/generations lists 3 generations" "$(_api_failure_details)"
fi

finish
