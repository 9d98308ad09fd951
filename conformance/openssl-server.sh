#!/usr/bin/env bash
# The server's own listeners and bootstrap hierarchy, judged by curl and
# openssl: HTTPS with the chain and host name verified (curl, openssl s_client
# TLS 1.2 and 1.3), the plain listener, the bootstrap root and intermediate
# (openssl verify, x509 extensions), their AIA/CDP URLs, the /ca and /crl
# distribution endpoints, and a graceful shutdown.
#
#   bash conformance/openssl-server.sh      (see lib.sh for the environment)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
conformance_init openssl-server
REPORT_STARTUP=1 start_server

# =================================================================================
section "listeners and TLS"
# =================================================================================
check_listeners() {
  check "GET https://localhost/healthz verifies against root.pem" \
    curl_https -f -o /dev/null "https://localhost:$HTTPS_PORT/healthz"
  # curl checks IP subjectAltNames too: the certificate must cover 127.0.0.1.
  check "GET https://127.0.0.1/healthz (IP SAN) verifies against root.pem" \
    curl -sS -f -o /dev/null --max-time 30 --cacert "$ROOT_PEM" "https://127.0.0.1:$HTTPS_PORT/healthz"
  check "GET http://127.0.0.1/healthz (plain listener)" \
    curl -sS -f -o /dev/null --max-time 30 "http://127.0.0.1:$HTTP_PORT/healthz"

  # Full handshakes with openssl, verifying chain and host name; the client
  # only trusts root.pem, so the server must send its intermediate.
  local v out rc
  for v in tls1_2 tls1_3; do
    out=$(openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername localhost \
      -CAfile "$ROOT_PEM" -verify_return_error -verify_hostname localhost \
      "-$v" -showcerts </dev/null 2>&1) && rc=0 || rc=$?
    if ((rc == 0)) && grep -q 'Verify return code: 0 (ok)' <<<"$out"; then
      pass "openssl s_client -$v handshake verifies (chain + hostname)" \
        "$(grep -E '^(New|Protocol|    Protocol|    Cipher)' <<<"$out" | head -n 3)"
    else
      fail "openssl s_client -$v handshake verifies (chain + hostname)" "exit $rc" \
        "$(grep -iE 'verify|error|alert|Protocol' <<<"$out" | head -n 15)"
    fi
  done
}
check_listeners || true

# =================================================================================
section "bootstrap hierarchy"
# =================================================================================
check_bootstrap() {
  bootstrap_ids || return 0
  verify_chain "openssl verify -CAfile root.pem intermediate.pem" "$ROOT_PEM" "$CERTS/boot-int.pem"
  verify_chain "root.pem is a valid self-signed trust anchor" "$ROOT_PEM" "$ROOT_PEM"

  # Extensions of the intermediate, as openssl shows them.
  local t; t=$(cert_text "$CERTS/boot-int.pem")
  if grep -A1 'X509v3 Basic Constraints: critical' <<<"$t" | grep -qE '^ +CA:TRUE, pathlen:0$'; then
    pass "intermediate: basicConstraints critical CA:TRUE, pathlen:0"
  else
    fail "intermediate: basicConstraints critical CA:TRUE, pathlen:0" "$(grep -A1 'Basic Constraints' <<<"$t")"
  fi
  local ku; ku=$(grep -A1 'X509v3 Key Usage: critical' <<<"$t" | tail -n1)
  if grep -q 'Certificate Sign' <<<"$ku" && grep -q 'CRL Sign' <<<"$ku"; then
    pass "intermediate: keyUsage critical Certificate Sign, CRL Sign" "keyUsage:$ku"
  else
    fail "intermediate: keyUsage critical Certificate Sign, CRL Sign" "$(grep -A1 'Key Usage' <<<"$t")"
  fi
  local cdp aia
  cdp=$(grep -A4 'X509v3 CRL Distribution Points' <<<"$t" | grep -oE 'URI:[^ ,]+' | head -n1 | cut -c5-)
  aia=$(grep -A4 'Authority Information Access' <<<"$t" | grep -oE 'CA Issuers - URI:[^ ,]+' | head -n1 | sed 's/^CA Issuers - URI://')
  # CRL and AIA URLs should be plain http (RFC 5280 4.2.1.13 / 4.2.2.1).
  if [[ $cdp == http://* ]]; then
    pass "intermediate: CRL distribution point http URL" "$cdp"
  else
    fail "intermediate: CRL distribution point http URL" "got: '${cdp}'" "$(grep -A4 'CRL Distribution' <<<"$t")"
  fi
  if [[ $aia == http://* ]]; then
    pass "intermediate: Authority Information Access CA Issuers http URL" "$aia"
  else
    fail "intermediate: Authority Information Access CA Issuers http URL" "got: '${aia}'" \
      "$(grep -A4 'Authority Information Access' <<<"$t")"
  fi

  # Follow those URLs on our plain listener (their host part may be a
  # configured public name, so only the path is used).
  if [[ -n $aia ]]; then
    local name="intermediate's AIA URL serves the root certificate (DER)"
    if fetch_plain "$name" "$(url_path "$aia")" "$CERTS/aia.crt"; then
      if [[ $(cert_fp "$CERTS/aia.crt" der) == "$(cert_fp "$ROOT_PEM")" ]]; then
        pass "$name" "$(url_path "$aia")"
      else
        fail "$name" "$(url_path "$aia") is not the DER root certificate"
      fi
    fi
  fi
  if [[ -n $cdp ]]; then
    local name="intermediate's CRL distribution point serves a CRL signed by the root"
    if fetch_plain "$name" "$(url_path "$cdp")" "$CERTS/cdp.crl"; then
      local v
      if v=$(openssl crl -inform DER -in "$CERTS/cdp.crl" -CAfile "$ROOT_PEM" -noout 2>&1) &&
        grep -q 'verify OK' <<<"$v"; then
        pass "$name" "$(url_path "$cdp")"
      else
        fail "$name" "$(url_path "$cdp")" "$v"
      fi
    fi
  fi

  # The plain-HTTP distribution endpoints, by CA id.
  check_ca_endpoint "root" "$BOOT_ROOT_ID" "$ROOT_PEM"
  check_ca_endpoint "intermediate" "$BOOT_INT_ID" "$CERTS/boot-int.pem"
  check_crl "root" "$BOOT_ROOT_ID" "$ROOT_PEM"
  check_crl "intermediate" "$BOOT_INT_ID" "$CERTS/boot-int.pem"
}
check_bootstrap || true

# =================================================================================
section "shutdown"
# =================================================================================
REPORT_SHUTDOWN=1 finish
