#!/usr/bin/env bash
# EST (RFC 7030, RFC 8951) by hand with curl, every answer read with openssl:
# cacerts, csrattrs (openssl asn1parse), simpleenroll with HTTP Basic (a
# wrapped base64 CSR, a chunked body), simplereenroll with a TLS client
# certificate (same key, new key, changed subject refused), serverkeygen
# (multipart: PKCS#8 key + certs-only), the refusals (401, 400, 403, 404, 501,
# 503 on spent quota), a revoked client certificate refused, the inventory's
# requesters; every certificate verified (openssl verify) and linted (pkilint).
#
#   bash conformance/est-openssl.sh      (see lib.sh for the environment)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=lib-est.sh
source "$HERE/lib-est.sh"
conformance_init est-openssl
python3 -c 'import pkilint' 2>/dev/null ||
  { echo "conformance/est-openssl: python3 module pkilint not found (run .ci/install-deps)" >&2; exit 2; }

# =================================================================================
section "EST (RFC 7030): curl + openssl"
# =================================================================================
est_start || finish

est_cacerts_csrattrs() {
  local d=$EST_WORK
  est_call GET cacerts "$d/cacerts.b64"
  if [[ $EST_STATUS == 200 && $EST_CTYPE == application/pkcs7-mime* ]] &&
    grep -qi '^content-transfer-encoding: base64' "$d/cacerts.b64.hdr" && est_one_line "$d/cacerts.b64"; then
    pass "EST. GET cacerts (no auth): 200 application/pkcs7-mime, one base64 line + CRLF"
  else
    fail "EST. GET cacerts (no auth): 200 application/pkcs7-mime, one base64 line + CRLF" "$(est_details "$d/cacerts.b64")" "$(cat "$d/cacerts.b64.hdr")"
  fi
  local out
  if out=$(est_certs "$d/cacerts.b64" "$d/cacerts.pem") && [[ $(count_pem "$d/cacerts.pem" CERTIFICATE) == 2 ]]; then
    pass "EST. cacerts | openssl base64 -d -A | openssl pkcs7 -print_certs: intermediate + root" "$out"
  else
    fail "EST. cacerts | openssl base64 -d -A | openssl pkcs7 -print_certs: intermediate + root" "$out"
  fi
  # Split: the root is the self-issued one; it must be root.pem.
  awk -v dir="$d" '/-----BEGIN CERTIFICATE-----/{n++} n{print > (dir "/cacert-" n ".pem")}' "$d/cacerts.pem"
  local c root_ok=0
  for c in "$d"/cacert-*.pem; do
    if is_self_issued "$c"; then
      [[ $(cert_fp "$c") == "$(cert_fp "$ROOT_PEM")" ]] && root_ok=1
    else
      cp "$c" "$EST_INT_PEM"
    fi
  done
  if ((root_ok)) && [[ -s $EST_INT_PEM ]]; then
    pass "EST. cacerts holds root.pem and the default intermediate"
  else
    fail "EST. cacerts holds root.pem and the default intermediate" "$(cat "$d/cacerts.pem")"
  fi

  est_call GET csrattrs "$d/csrattrs.b64"
  local parsed
  parsed=$(tr -d '\r\n' <"$d/csrattrs.b64" | openssl base64 -d -A | openssl asn1parse -inform DER 2>&1)
  if [[ $EST_STATUS == 200 && $EST_CTYPE == application/csrattrs* ]] && est_one_line "$d/csrattrs.b64" &&
    grep -q ecdsa-with-SHA256 <<<"$parsed" && grep -q id-ecPublicKey <<<"$parsed" &&
    grep -q prime256v1 <<<"$parsed" && grep -q 'Extension Request' <<<"$parsed" &&
    grep -q 'Subject Alternative Name' <<<"$parsed"; then
    pass "EST. GET csrattrs | openssl asn1parse: P-256 key, ecdsa-with-SHA256, extensionRequest subjectAltName" "$parsed"
  else
    fail "EST. GET csrattrs | openssl asn1parse: P-256 key, ecdsa-with-SHA256, extensionRequest subjectAltName" \
      "$(est_details "$d/csrattrs.b64")" "$parsed"
  fi

  est_call POST fullcmc "$d/fullcmc.txt" --data-binary 'x'
  if [[ $EST_STATUS == 501 && $EST_CTYPE == text/plain* ]] && grep -q 'not supported' "$d/fullcmc.txt"; then
    pass "EST. POST fullcmc -> 501 text/plain \"not supported\""
  else
    fail "EST. POST fullcmc -> 501 text/plain \"not supported\"" "$(est_details "$d/fullcmc.txt")"
  fi
  est_call GET no-such-label/cacerts "$d/nolabel.txt"
  if [[ $EST_STATUS == 404 && $EST_CTYPE == text/plain* ]] && grep -q 'no EST service is labelled' "$d/nolabel.txt"; then
    pass "EST. unknown label -> 404 text/plain" "$(cat "$d/nolabel.txt")"
  else
    fail "EST. unknown label -> 404 text/plain" "$(est_details "$d/nolabel.txt")"
  fi
}


est_enroll_by_hand() {
  local d=$EST_WORK out
  est_b64_csr "$d/dev1.key" "$d/dev1.csr.b64" "/CN=dev1.devices.vellum.test/O=Vellum Conformance"
  est_call POST simpleenroll "$d/dev1.b64" -u "$EST_USER:$EST_PASS" \
    -H 'Content-Type: application/pkcs10' -H 'Content-Transfer-Encoding: base64' --data-binary "@$d/dev1.csr.b64"
  if [[ $EST_STATUS == 200 && $EST_CTYPE == 'application/pkcs7-mime; smime-type=certs-only' ]] &&
    est_one_line "$d/dev1.b64" && out=$(est_certs "$d/dev1.b64" "$d/dev1.pem") &&
    [[ $(count_pem "$d/dev1.pem" CERTIFICATE) == 1 ]]; then
    pass "EST. curl -u user:pass simpleenroll (wrapped base64 CSR): 200, certs-only with the certificate only"
    est_verify_and_keep "simpleenroll (curl, HTTP Basic)" "$d/dev1.pem"
    if [[ "$(pubkey_of_cert "$d/dev1.pem")" == "$(pubkey_of_key "$d/dev1.key")" ]]; then
      pass "EST. the issued certificate certifies the CSR's key"
    else
      fail "EST. the issued certificate certifies the CSR's key"
    fi
  else
    fail "EST. curl -u user:pass simpleenroll (wrapped base64 CSR): 200, certs-only with the certificate only" \
      "$(est_details "$d/dev1.b64")" "${out-}"
  fi

  # Chunked request body (curl sends Transfer-Encoding: chunked when told to).
  est_b64_csr "$d/dev2.key" "$d/dev2.csr.b64" "/CN=dev2.devices.vellum.test"
  est_call POST simpleenroll "$d/dev2.b64" --http1.1 -u "$EST_USER:$EST_PASS" \
    -H 'Content-Type: application/pkcs10' -H 'Transfer-Encoding: chunked' --data-binary "@$d/dev2.csr.b64"
  if [[ $EST_STATUS == 200 ]] && grep -q '^HTTP/1.1 200' "$d/dev2.b64.hdr" && est_certs "$d/dev2.b64" "$d/dev2.pem" >/dev/null; then
    pass "EST. simpleenroll over HTTP/1.1 with a chunked body: \"HTTP/1.1 200\""
  else
    fail "EST. simpleenroll over HTTP/1.1 with a chunked body: \"HTTP/1.1 200\"" "$(est_details "$d/dev2.b64")" "$(cat "$d/dev2.b64.hdr")"
  fi

  # simplereenroll with the certificate being renewed: same key, then a new key.
  if [[ -s $d/dev1.pem ]]; then
    est_b64_csr "$d/dev1.key" "$d/dev1-renew.csr.b64" "/CN=dev1.devices.vellum.test/O=Vellum Conformance" reuse
    est_call POST simplereenroll "$d/dev1-renew.b64" --cert "$d/dev1.pem" --key "$d/dev1.key" \
      -H 'Content-Type: application/pkcs10' --data-binary "@$d/dev1-renew.csr.b64"
    if [[ $EST_STATUS == 200 ]] && est_certs "$d/dev1-renew.b64" "$d/dev1-renew.pem" >/dev/null &&
      [[ "$(pubkey_of_cert "$d/dev1-renew.pem")" == "$(pubkey_of_cert "$d/dev1.pem")" &&
        $(cert_serial "$d/dev1-renew.pem") != "$(cert_serial "$d/dev1.pem")" ]]; then
      pass "EST. curl --cert/--key simplereenroll, same key: renewed (new serial, same key)"
      est_verify_and_keep "simplereenroll renew (curl, client certificate)" "$d/dev1-renew.pem"
    else
      fail "EST. curl --cert/--key simplereenroll, same key: renewed (new serial, same key)" "$(est_details "$d/dev1-renew.b64")"
    fi
    est_b64_csr "$d/dev1-new.key" "$d/dev1-rekey.csr.b64" "/CN=dev1.devices.vellum.test/O=Vellum Conformance"
    est_call POST simplereenroll "$d/dev1-rekey.b64" --cert "$d/dev1.pem" --key "$d/dev1.key" \
      --data-binary "@$d/dev1-rekey.csr.b64"
    if [[ $EST_STATUS == 200 ]] && est_certs "$d/dev1-rekey.b64" "$d/dev1-rekey.pem" >/dev/null &&
      [[ "$(pubkey_of_cert "$d/dev1-rekey.pem")" == "$(pubkey_of_key "$d/dev1-new.key")" ]]; then
      pass "EST. simplereenroll with a new key: rekeyed"
      est_verify_and_keep "simplereenroll rekey (curl, client certificate)" "$d/dev1-rekey.pem"
    else
      fail "EST. simplereenroll with a new key: rekeyed" "$(est_details "$d/dev1-rekey.b64")"
    fi
    est_b64_csr "$d/dev1.key" "$d/dev1-other.csr.b64" "/CN=other.devices.vellum.test" reuse
    est_call POST simplereenroll "$d/dev1-other.txt" --cert "$d/dev1.pem" --key "$d/dev1.key" \
      --data-binary "@$d/dev1-other.csr.b64"
    if [[ $EST_STATUS == 400 && $EST_CTYPE == text/plain* ]] && grep -q 'subject' "$d/dev1-other.txt"; then
      pass "EST. simplereenroll with a changed subject -> 400 naming the difference" "$(cat "$d/dev1-other.txt")"
    else
      fail "EST. simplereenroll with a changed subject -> 400 naming the difference" "$(est_details "$d/dev1-other.txt")"
    fi
  fi

  # serverkeygen: multipart/mixed, the PKCS#8 key first, then the certificate.
  est_b64_csr "$d/skg-throwaway.key" "$d/skg.csr.b64" "/CN=keyless.devices.vellum.test"
  est_call POST serverkeygen "$d/skg.multipart" -u "$EST_USER:$EST_PASS" --data-binary "@$d/skg.csr.b64"
  local boundary
  boundary=$(sed -n 's/.*boundary=\([^;[:space:]]*\).*/\1/p' <<<"$EST_CTYPE")
  if [[ $EST_STATUS == 200 && $EST_CTYPE == multipart/mixed* && -n $boundary ]]; then
    # Part n's body: after the blank line that ends its headers, up to the next boundary.
    awk -v b="--$boundary" -v dir="$d" '
      { sub(/\r$/, "") }
      index($0, b) == 1 { part++; body = 0; next }
      part && !body && $0 == "" { body = 1; next }
      part && !body { print > (dir "/skg-part" part ".hdr"); next }
      part && body { print > (dir "/skg-part" part ".b64") }' "$d/skg.multipart"
    if grep -qi 'application/pkcs8' "$d/skg-part1.hdr" 2>/dev/null &&
      grep -qi 'smime-type=certs-only' "$d/skg-part2.hdr" 2>/dev/null &&
      openssl base64 -d -A -in "$d/skg-part1.b64" -out "$d/skg.key.der" &&
      openssl pkey -inform DER -in "$d/skg.key.der" -out "$d/skg.key" 2>/dev/null &&
      est_certs "$d/skg-part2.b64" "$d/skg.pem" >/dev/null &&
      [[ "$(pubkey_of_cert "$d/skg.pem")" == "$(pubkey_of_key "$d/skg.key")" ]]; then
      pass "EST. serverkeygen: application/pkcs8 key then certs-only; the key matches the certificate"
      est_verify_and_keep "serverkeygen (curl)" "$d/skg.pem"
    else
      fail "EST. serverkeygen: application/pkcs8 key then certs-only; the key matches the certificate" \
        "$(head -c 1500 "$d/skg.multipart")"
    fi
  else
    fail "EST. serverkeygen: multipart/mixed answer" "$(est_details "$d/skg.multipart")"
  fi
}


est_refusals() {
  local d=$EST_WORK
  est_b64_csr "$d/r.key" "$d/r.csr.b64" "/CN=r.devices.vellum.test"
  est_call POST simpleenroll "$d/r-none.txt" --data-binary "@$d/r.csr.b64"
  if [[ $EST_STATUS == 401 ]] && grep -qi '^www-authenticate: Basic realm=' "$d/r-none.txt.hdr"; then
    pass "EST. simpleenroll without credentials -> 401 WWW-Authenticate: Basic" "$(cat "$d/r-none.txt")"
  else
    fail "EST. simpleenroll without credentials -> 401 WWW-Authenticate: Basic" "$(est_details "$d/r-none.txt")"
  fi
  est_call POST simpleenroll "$d/r-wrong.txt" -u "$EST_USER:not-the-password" --data-binary "@$d/r.csr.b64"
  if [[ $EST_STATUS == 401 ]] && grep -qi '^www-authenticate: Basic' "$d/r-wrong.txt.hdr"; then
    pass "EST. simpleenroll with a wrong password -> 401" "$(cat "$d/r-wrong.txt")"
  else
    fail "EST. simpleenroll with a wrong password -> 401" "$(est_details "$d/r-wrong.txt")"
  fi
  est_call POST simpleenroll "$d/r-b64.txt" -u "$EST_USER:$EST_PASS" --data-binary 'MIIB*this is not base64*'
  if [[ $EST_STATUS == 400 && $EST_CTYPE == text/plain* ]] && grep -q 'base64' "$d/r-b64.txt"; then
    pass "EST. malformed base64 -> 400 text/plain naming the rule" "$(cat "$d/r-b64.txt")"
  else
    fail "EST. malformed base64 -> 400 text/plain naming the rule" "$(est_details "$d/r-b64.txt")"
  fi
  # A CSR whose signature does not verify: flip a byte of the signature.
  openssl req -new -key "$d/r.key" -subj "/CN=r.devices.vellum.test" -outform DER -out "$d/bad.der" 2>/dev/null
  python3 - "$d/bad.der" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[-5] ^= 0x55
open(p, "wb").write(bytes(b))
PY
  openssl base64 -in "$d/bad.der" -out "$d/bad.b64"
  est_call POST simpleenroll "$d/r-sig.txt" -u "$EST_USER:$EST_PASS" --data-binary "@$d/bad.b64"
  if [[ $EST_STATUS == 400 ]] && grep -q '^csr: ' "$d/r-sig.txt"; then
    pass "EST. CSR with a bad signature -> 400" "$(cat "$d/r-sig.txt")"
  else
    fail "EST. CSR with a bad signature -> 400" "$(est_details "$d/r-sig.txt")"
  fi
  est_b64_csr "$d/r.key" "$d/r-out.csr.b64" "/CN=elsewhere.example.com" reuse
  est_call POST simpleenroll "$d/r-names.txt" -u "$EST_USER:$EST_PASS" --data-binary "@$d/r-out.csr.b64"
  if [[ $EST_STATUS == 403 ]] && grep -q 'elsewhere.example.com' "$d/r-names.txt"; then
    pass "EST. a name outside the account's patterns -> 403" "$(cat "$d/r-names.txt")"
  else
    fail "EST. a name outside the account's patterns -> 403" "$(est_details "$d/r-names.txt")"
  fi

  # Quota: a CA with one unit enrolls once, then answers 503 naming itself.
  api POST /cas '{"kind":"root","common_name":"EST Conformance Root","quota":10}'
  local rid iid
  rid=$(jb '.id // empty'); iid=$(jb '.intermediate_id // empty')
  api POST "/cas/$rid/enable" '{"mode":"generate"}'
  api POST "/cas/$iid/enable" '{"mode":"generate"}'
  api POST "/cas/$rid/quota/assign" "$(jq -nc --arg i "$iid" '{intermediate_id:$i, count:1}')"
  api PUT "/cas/$iid/est" '{"label":"conformance-small"}'
  quietly expect "EST. PUT /cas/{id}/est {label} on a one-unit intermediate" 200
  api POST "/cas/$iid/est/clients" "$(jq -nc --arg p "$EST_PASS" '{username:"small", password:$p}')"
  est_call POST conformance-small/simpleenroll "$d/q1.b64" -u "small:$EST_PASS" --data-binary "@$d/r.csr.b64"
  est_call POST conformance-small/simpleenroll "$d/q2.txt" -u "small:$EST_PASS" --data-binary "@$d/r.csr.b64"
  if [[ $EST_STATUS == 503 ]] && grep -q "$iid" "$d/q2.txt" && grep -q quota "$d/q2.txt"; then
    pass "EST. quota exhausted -> 503 naming the CA" "$(cat "$d/q2.txt")"
  else
    fail "EST. quota exhausted -> 503 naming the CA" "$(est_details "$d/q2.txt")"
  fi
  if est_certs "$d/q1.b64" "$d/q1.pem" >/dev/null; then
    curl -sS -o "$d/q-int.pem" "http://127.0.0.1:$HTTP_PORT/ca/$iid.pem"
    curl -sS -o "$d/q-root.pem" "http://127.0.0.1:$HTTP_PORT/ca/$rid.pem"
    verify_chain "EST. openssl verify: labelled CA enrollment (its own root)" "$d/q-root.pem" "$d/q1.pem" "$d/q-int.pem"
    EST_OBTAINED+=("simpleenroll through a label|$d/q1.pem")
  else
    fail "EST. the one-unit CA enrolled once" "$(head -c 300 "$d/q1.b64")"
  fi
}


est_inventory_and_revocation() {
  local d=$EST_WORK
  api GET "/certificates?source=est&limit=1000"
  local n basic cert
  n=$(jb '.items | length'); basic=$(jb '[.items[] | select(.requester == "est:basic:device")] | length')
  cert=$(jb '[.items[] | select(.requester // "" | startswith("est:cert:"))] | length')
  if [[ $API_STATUS == 200 && ${n:-0} -ge 5 && ${basic:-0} -ge 3 && ${cert:-0} -ge 2 ]]; then
    pass "EST. inventory: source=est, requesters est:basic:device and est:cert:<serial>" "$n certificates"
  else
    fail "EST. inventory: source=est, requesters est:basic:device and est:cert:<serial>" "$(_api_failure_details)"
  fi
  [[ -s $d/dev1.pem ]] || return 0
  local serial id
  serial=$(openssl x509 -in "$d/dev1.pem" -noout -serial | cut -d= -f2 | tr A-F a-f | sed 's/^0*//')
  id=$(jq -r --arg s "$serial" '.items[] | select((.serial | ltrimstr("0")) == $s) | .id' <<<"$API_BODY" | head -n1)
  api POST "/certificates/$id/revoke" '{"reason":"keyCompromise"}'
  quietly expect "EST. revoke the enrolled certificate through the admin API" 200
  est_b64_csr "$d/dev1.key" "$d/dev1-again.csr.b64" "/CN=dev1.devices.vellum.test/O=Vellum Conformance" reuse
  est_call POST simplereenroll "$d/revoked.txt" --cert "$d/dev1.pem" --key "$d/dev1.key" \
    --data-binary "@$d/dev1-again.csr.b64"
  if [[ $EST_STATUS == 403 ]] && grep -q 'revoked' "$d/revoked.txt"; then
    pass "EST. simplereenroll with a revoked client certificate -> 403" "$(cat "$d/revoked.txt")"
  else
    fail "EST. simplereenroll with a revoked client certificate -> 403" "$(est_details "$d/revoked.txt")"
  fi
}


est_cacerts_csrattrs || true
est_enroll_by_hand || true
est_refusals || true
est_inventory_and_revocation || true
est_lint || true

finish
