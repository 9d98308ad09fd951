# shellcheck shell=bash
# EST (RFC 7030, RFC 8951) checks for conformance/run, sourced near its end:
#
#   - curl + openssl by hand: cacerts, csrattrs, simpleenroll (HTTP Basic),
#     simplereenroll (TLS client certificate), serverkeygen, and the refusals
#     (401/400/403/404/501/503), each answer parsed with openssl;
#   - strongSwan's pki --estca / --est (Debian strongswan-pki with the curl,
#     openssl and pkcs7 plugins): CA certificates, enrollment with --userpass,
#     re-enrollment with --cert/--key;
#   - the Rust EST client usg-est-client (est-enroll, cargo install
#     usg-est-client --features cli): enroll with HTTP Basic, renew with a
#     client certificate through a CA label;
#   - every certificate obtained verifies against root.pem (openssl verify) and
#     lints clean (pkilint: FATAL/ERROR/WARNING fail).
#
# Uses from conformance/run: WORK, ROOT_PEM, HTTPS_PORT, HTTP_PORT, TOKEN,
# BOOT_ROOT_ID / BOOT_INT_ID (section b) and the helpers of lib.sh.
# Environment (optional): VELLUM_EST_ENROLL (est-enroll executable; default: on
# PATH or in ~/.cargo/bin), VELLUM_STRONGSWAN_PKI (pki; default: on PATH).

# =================================================================================
section "EST (RFC 7030): curl + openssl, strongSwan pki, usg-est-client"
# =================================================================================
EST_WORK="$WORK/est"
EST_BASE="https://localhost:$HTTPS_PORT/.well-known/est"
EST_USER=device
EST_PASS="conformance-$RANDOM-$RANDOM"
EST_NAMES='*.devices.vellum.test'
EST_INT_ID=""                       # the default EST CA (bootstrap intermediate)
EST_INT_PEM="$EST_WORK/int.pem"     # its certificate, from cacerts
EST_OBTAINED=()                     # "label|pem" of every certificate obtained

# est_call METHOD OP_PATH OUT [CURL_ARGS...]: a request to $EST_BASE/OP_PATH;
# the body goes to OUT, the headers to OUT.hdr. Sets EST_STATUS and EST_CTYPE.
est_call() {
  local method=$1 path=$2 out=$3 meta; shift 3
  : >"$out"
  if meta=$(curl_https -X "$method" -o "$out" -D "$out.hdr" -w '%{http_code}\n%{content_type}' \
    "$@" "$EST_BASE/$path" 2>"$out.err"); then
    EST_STATUS=${meta%%$'\n'*}
    EST_CTYPE=${meta#*$'\n'}
  else
    EST_STATUS=000
    EST_CTYPE=
    cat "$out.err" >>"$out"
  fi
}

est_details() { printf '%s\n' "HTTP $EST_STATUS ${EST_CTYPE:-}" "$(head -c 1000 "$1" 2>/dev/null)"; }

# est_one_line FILE: the body is base64 on one line ending in CRLF.
est_one_line() {
  [[ $(wc -l <"$1") -eq 1 ]] && [[ $(tail -c 2 "$1" | od -An -c | tr -d ' ') == '\r\n' ]]
}

# est_certs FILE OUT_PEM: the certificates of a certs-only base64 answer, as PEM.
est_certs() {
  local out
  out=$(tr -d '\r\n' <"$1" | openssl base64 -d -A | openssl pkcs7 -inform DER -print_certs 2>&1) || {
    echo "$out"
    return 1
  }
  sed -n '/-----BEGIN/,/-----END/p' <<<"$out" >"$2"
  grep -E '^(subject|issuer)=' <<<"$out" || true
}

# est_b64_csr KEY_OUT CSR_B64_OUT SUBJECT [REUSE_KEY]: an EC P-256 CSR as
# base64 DER, wrapped at 64 columns (RFC 8951: servers must tolerate it).
est_b64_csr() {
  local key=$1 out=$2 subj=$3 reuse=${4-}
  if [[ -z $reuse ]]; then
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$key" 2>/dev/null || return 1
  fi
  openssl req -new -key "$key" -subj "$subj" -outform DER 2>/dev/null | openssl base64 >"$out"
}

# est_verify_and_keep LABEL PEM: openssl verify against root.pem (the
# intermediate untrusted), and remember the certificate for pkilint.
est_verify_and_keep() {
  verify_chain "EST. openssl verify: $1" "$ROOT_PEM" "$2" "$EST_INT_PEM"
  EST_OBTAINED+=("$1|$2")
}

est_setup() {
  mkdir -p "$EST_WORK"
  EST_INT_ID=$BOOT_INT_ID
  if [[ -z $EST_INT_ID || $EST_INT_ID == null ]]; then
    api GET "/cas?kind=intermediate&status=enabled&limit=1"
    EST_INT_ID=$(jb '.items[0].id // empty')
  fi
  # Quota for what follows (other sections spent some of the bootstrap's).
  if [[ -n ${BOOT_ROOT_ID-} && $BOOT_ROOT_ID != null ]]; then
    api POST "/cas/$BOOT_ROOT_ID/quota/assign" "$(jq -nc --arg i "$EST_INT_ID" '{intermediate_id:$i, count:40}')"
    expect "EST. assign 40 quota to the default EST CA" 200
  fi
  api GET "/cas/$EST_INT_ID/est"
  if [[ $API_STATUS == 200 && $(jb .enabled) == true && $(jb .certificate_type) == client &&
    $(jb '.auth | join(",")') == basic,client_cert && $(jb .default_validity_days) == 365 ]]; then
    pass "EST. GET /cas/{id}/est: defaults (enabled, basic+client_cert, 365 days, client)"
  else
    fail "EST. GET /cas/{id}/est: defaults (enabled, basic+client_cert, 365 days, client)" "$(_api_failure_details)"
  fi
  api POST "/cas/$EST_INT_ID/est/clients" \
    "$(jq -nc --arg u "$EST_USER" --arg p "$EST_PASS" --arg n "$EST_NAMES" '{username:$u, password:$p, name_patterns:[$n]}')"
  expect "EST. POST /cas/{id}/est/clients creates an HTTP Basic account (201)" 201
  api GET "/cas/$EST_INT_ID/est/clients"
  if [[ $API_STATUS == 200 && $(jb '[.items[].username] | index("device") != null') == true ]] &&
    ! grep -qF "$EST_PASS" <<<"$API_BODY"; then
    pass "EST. GET /cas/{id}/est/clients lists it (no password)"
  else
    fail "EST. GET /cas/{id}/est/clients lists it (no password)" "$(_api_failure_details)"
  fi
}

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
  expect "EST. PUT /cas/{id}/est {label} on a one-unit intermediate" 200
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
  expect "EST. revoke the enrolled certificate through the admin API" 200
  est_b64_csr "$d/dev1.key" "$d/dev1-again.csr.b64" "/CN=dev1.devices.vellum.test/O=Vellum Conformance" reuse
  est_call POST simplereenroll "$d/revoked.txt" --cert "$d/dev1.pem" --key "$d/dev1.key" \
    --data-binary "@$d/dev1-again.csr.b64"
  if [[ $EST_STATUS == 403 ]] && grep -q 'revoked' "$d/revoked.txt"; then
    pass "EST. simplereenroll with a revoked client certificate -> 403" "$(cat "$d/revoked.txt")"
  else
    fail "EST. simplereenroll with a revoked client certificate -> 403" "$(est_details "$d/revoked.txt")"
  fi
}

est_strongswan() {
  local d=$EST_WORK/strongswan pki=${VELLUM_STRONGSWAN_PKI:-pki} out
  mkdir -p "$d"
  if ! command -v "$pki" >/dev/null || ! "$pki" --help 2>&1 | grep -q -- '--est '; then
    skip "EST. strongSwan pki --estca/--est" "pki not installed (apt-get install strongswan-pki libstrongswan-extra-plugins libstrongswan-standard-plugins)"
    return 0
  fi
  # strongSwan appends /.well-known/est/<operation> to --url itself.
  local url="https://localhost:$HTTPS_PORT"
  if out=$(cd "$d" && "$pki" --estca --url "$url" --cacert "$ROOT_PEM" --caout ca --outform pem 2>&1) &&
    [[ -s $d/ca.pem && -s $d/ca-1.pem ]] && [[ $(cert_fp "$d/ca.pem") == "$(cert_fp "$ROOT_PEM")" ]] &&
    [[ $(cert_fp "$d/ca-1.pem") == "$(cert_fp "$EST_INT_PEM")" ]]; then
    pass "EST. strongSwan pki --estca: root (ca.pem) and intermediate (ca-1.pem)" "$(grep -E 'cert is trusted|written' <<<"$out")"
  else
    fail "EST. strongSwan pki --estca: root (ca.pem) and intermediate (ca-1.pem)" "$(grep -v -i tpm <<<"$out" | tail -n 15)"
  fi
  "$pki" --gen --type ecdsa --size 256 >"$d/ss.key" 2>/dev/null
  "$pki" --req --type ecdsa --in "$d/ss.key" --dn "CN=ss.devices.vellum.test" --outform der >"$d/ss.req" 2>/dev/null
  if out=$("$pki" --est --url "$url" --cacert "$ROOT_PEM" --cacert "$EST_INT_PEM" --in "$d/ss.req" \
    --userpass "$EST_USER:$EST_PASS" --outform pem 2>&1 >"$d/ss.pem") && openssl x509 -in "$d/ss.pem" -noout 2>/dev/null; then
    pass "EST. strongSwan pki --est --userpass: enrolled" "$(grep -E '^Issued' <<<"$out")"
    est_verify_and_keep "strongSwan pki --est" "$d/ss.pem"
  else
    fail "EST. strongSwan pki --est --userpass: enrolled" "$(grep -v -i tpm <<<"$out" | tail -n 15)"
    return 0
  fi
  "$pki" --gen --type ecdsa --size 256 >"$d/ss2.key" 2>/dev/null
  "$pki" --req --type ecdsa --in "$d/ss2.key" --dn "CN=ss.devices.vellum.test" --outform der >"$d/ss2.req" 2>/dev/null
  if out=$("$pki" --est --url "$url" --cacert "$ROOT_PEM" --cacert "$EST_INT_PEM" --in "$d/ss2.req" \
    --cert "$d/ss.pem" --key "$d/ss.key" --outform pem 2>&1 >"$d/ss2.pem") && openssl x509 -in "$d/ss2.pem" -noout 2>/dev/null &&
    grep -q 'sending TLS client certificate' <<<"$out" &&
    [[ $(cert_serial "$d/ss2.pem") != "$(cert_serial "$d/ss.pem")" ]]; then
    pass "EST. strongSwan pki --est --cert/--key: re-enrolled with the TLS client certificate" "$(grep -E '^Issued|client certificate' <<<"$out")"
    est_verify_and_keep "strongSwan pki --est re-enrollment" "$d/ss2.pem"
  else
    fail "EST. strongSwan pki --est --cert/--key: re-enrolled with the TLS client certificate" "$(grep -v -i tpm <<<"$out" | tail -n 15)"
  fi
}

# est_inventory_pem CN OUT: the newest inventory certificate with common name CN.
est_inventory_pem() {
  api GET "/certificates?source=est&q=$1&limit=1000"
  jq -r --arg cn "$1" '[.items[] | select(.common_name == $cn)] | last | .certificate_pem // empty' <<<"$API_BODY" >"$2"
  [[ -s $2 ]]
}

est_usg_client() {
  local d=$EST_WORK/usg out bin=${VELLUM_EST_ENROLL:-}
  mkdir -p "$d"
  if [[ -z $bin ]]; then
    bin=$(command -v est-enroll || true)
    [[ -z $bin && -x $HOME/.cargo/bin/est-enroll ]] && bin=$HOME/.cargo/bin/est-enroll
  fi
  if [[ -z $bin ]]; then
    skip "EST. usg-est-client (est-enroll)" "not installed: cargo install usg-est-client --features cli (see .ci/install-deps)"
    return 0
  fi
  local cn=usg.devices.vellum.test
  cat >"$d/enroll.toml" <<EOF
[server]
url = "https://localhost:$HTTPS_PORT"
timeout_seconds = 30

[trust]
mode = "explicit"
ca_bundle_path = "$ROOT_PEM"

[authentication]
method = "http_basic"
username = "$EST_USER"
password_source = "env:EST_PASSWORD"

[certificate]
common_name = "$cn"

[certificate.key]
algorithm = "ecdsa-p256"
provider = "software"
EOF
  if out=$(cd "$d" && EST_PASSWORD=$EST_PASS timeout 60 "$bin" -c "$d/enroll.toml" enroll --force 2>&1) &&
    grep -q 'Certificate issued successfully' <<<"$out" && grep -q 'Retrieved 2 CA certificate' <<<"$out"; then
    pass "EST. usg-est-client est-enroll enroll (cacerts + simpleenroll, HTTP Basic)" "$(grep -E 'Retrieved|issued|Thumbprint' <<<"$out")"
    # est-enroll prints the SHA-256 thumbprint but keeps no file: take the certificate
    # from the inventory and compare.
    local thumb
    thumb=$(sed -n 's/.*Thumbprint: *//p' <<<"$out" | tr -d ':[:space:]' | tr a-f A-F)
    if est_inventory_pem "$cn" "$d/usg.pem" && [[ $(cert_fp "$d/usg.pem" | tr -d ':') == "$thumb" ]]; then
      pass "EST. est-enroll's certificate is in the inventory (same SHA-256 thumbprint)"
      est_verify_and_keep "usg-est-client enroll" "$d/usg.pem"
    else
      fail "EST. est-enroll's certificate is in the inventory (same SHA-256 thumbprint)" "thumbprint $thumb" "$(_api_failure_details)"
    fi
  else
    fail "EST. usg-est-client est-enroll enroll (cacerts + simpleenroll, HTTP Basic)" "$out"
  fi

  # Renewal: est-enroll re-enrolls with a client certificate (CN only, a new key)
  # through a CA label; the certificate to renew comes from curl.
  api PUT "/cas/$EST_INT_ID/est" '{"label":"conformance-default"}'
  expect "EST. PUT /cas/{id}/est {label} on the default CA" 200
  local rcn=usg-renew.devices.vellum.test
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/renew.key" 2>/dev/null
  openssl req -new -key "$d/renew.key" -subj "/CN=$rcn" -out "$d/renew.csr" 2>/dev/null
  est_call POST conformance-default/simpleenroll "$d/renew-old.b64" -u "$EST_USER:$EST_PASS" --data-binary "@$d/renew.csr"
  if [[ $EST_STATUS != 200 ]] || ! est_certs "$d/renew-old.b64" "$d/renew-old.pem" >/dev/null; then
    fail "EST. enroll a PEM CSR through the label (for est-enroll renew)" "$(est_details "$d/renew-old.b64")"
    return 0
  fi
  pass "EST. simpleenroll through a CA label with a PEM CSR body (tolerated)"
  cat >"$d/renew.toml" <<EOF
[server]
url = "https://localhost:$HTTPS_PORT"
ca_label = "conformance-default"
timeout_seconds = 30

[trust]
mode = "explicit"
ca_bundle_path = "$ROOT_PEM"

[authentication]
method = "client_cert"
cert_path = "$d/renew-old.pem"
key_path = "$d/renew.key"

[certificate]
common_name = "$rcn"

[certificate.key]
algorithm = "ecdsa-p256"
provider = "software"
EOF
  if out=$(cd "$d" && timeout 60 "$bin" -c "$d/renew.toml" renew --force 2>&1) &&
    grep -q 'Certificate renewed successfully' <<<"$out"; then
    pass "EST. usg-est-client est-enroll renew (simplereenroll, client certificate, CA label)" "$(grep -E 'renewed|Thumbprint' <<<"$out")"
    local thumb old_serial
    thumb=$(sed -n 's/.*Thumbprint: *//p' <<<"$out" | tr -d ':[:space:]' | tr a-f A-F)
    # Without leading zeros on both sides: openssl prints whole bytes ("03AE…"), the
    # requester names the serial as the inventory does (lower-case hex of the bytes).
    old_serial=$(openssl x509 -in "$d/renew-old.pem" -noout -serial | cut -d= -f2 | tr A-F a-f | sed 's/^0*//')
    api GET "/certificates?source=est&q=$rcn&limit=1000"
    jq -r '[.items[]] | last | .certificate_pem // empty' <<<"$API_BODY" >"$d/renewed.pem"
    if [[ -s $d/renewed.pem && $(cert_fp "$d/renewed.pem" | tr -d ':') == "$thumb" ]] &&
      [[ $(jq -r '[.items[]] | last | .requester | ltrimstr("est:cert:") | ltrimstr("0")' <<<"$API_BODY") == "$old_serial" ]]; then
      pass "EST. the renewed certificate is in the inventory, requested by est:cert:<old serial>"
      est_verify_and_keep "usg-est-client renew" "$d/renewed.pem"
    else
      fail "EST. the renewed certificate is in the inventory, requested by est:cert:<old serial>" "thumbprint $thumb" "$(_api_failure_details)"
    fi
  else
    fail "EST. usg-est-client est-enroll renew (simplereenroll, client certificate, CA label)" "$out"
  fi
}

est_lint() {
  local entry label pem
  if ((${#EST_OBTAINED[@]} == 0)); then
    fail "EST. certificates to lint" "no certificate was obtained over EST"
    return 0
  fi
  for entry in "${EST_OBTAINED[@]}"; do
    IFS='|' read -r label pem <<<"$entry"
    pkilint_cert "EST. lint_pkix_cert: $label" "$pem"
  done
}

est_setup || true
est_cacerts_csrattrs || true
est_enroll_by_hand || true
est_refusals || true
est_inventory_and_revocation || true
est_strongswan || true
est_usg_client || true
est_lint || true
