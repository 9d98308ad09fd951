#!/usr/bin/env bash
# The command-line client (`vellum admin`) against a live server, its results
# judged by openssl: a root with every subject field, enabled, quota assigned;
# certificates applied for (generated key, openssl-made CSR), shown, listed,
# exported to a pkcs12 file openssl reads, renewed, revoked (openssl verify
# -crl_check rejects it), deleted; a CRL switched off.
#
#   bash conformance/cli.sh      (see lib.sh for the environment)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
conformance_init cli
start_server
bootstrap_ids || true   # before the CLI makes a second hierarchy

# =================================================================================
section "CLI (vellum admin)"
# =================================================================================
cli() {
  CLI_RC=0
  CLI_OUT=$("$BIN" admin --url "https://localhost:$HTTPS_PORT" --data-dir "$DATA" "$@" 2>&1 </dev/null) || CLI_RC=$?
  { echo "\$ vellum admin $*"; echo "(exit $CLI_RC)"; printf '%s\n' "$CLI_OUT" | head -n 20; echo; } >>"$WORK/cli.log"
}
cli_check() {
  local name=$1; shift
  cli "$@"
  if ((CLI_RC == 0)); then pass "$name"; else fail "$name" "vellum admin $* -> exit $CLI_RC" "$CLI_OUT"; fi
}
check_cli() {
  local d="$WORK/cli" out
  mkdir -p "$d"
  # Every subject field (pkilint.sh lints CAs made so through the API).
  cli --json ca create-root --cn "Conformance CLI Root" --key-algorithm ec-p384 --quota 5 \
    --org "Conformance CLI" --ou Suite --country DE --state Berlin --locality Berlin
  local rid iid
  rid=$(jq -r '.id // empty' <<<"$CLI_OUT" 2>/dev/null) iid=$(jq -r '.intermediate_id // empty' <<<"$CLI_OUT" 2>/dev/null)
  if ((CLI_RC == 0)) && [[ -n $rid && -n $iid && $(jq -r .status <<<"$CLI_OUT") == pending ]]; then
    pass "vellum admin --json ca create-root --cn .. --org .. --ou .. --country DE --state .. --locality .. --key-algorithm ec-p384 --quota 5" "root $rid, intermediate $iid"
  else
    fail "vellum admin --json ca create-root --cn .. --org .. --ou .. --country DE --state .. --locality .. --key-algorithm ec-p384 --quota 5" "exit $CLI_RC" "$CLI_OUT"
    return 0
  fi
  cli_check "vellum admin ca enable ROOT" ca enable "$rid"
  cli_check "vellum admin ca enable INTERMEDIATE" ca enable "$iid"
  cli_check "vellum admin ca assign-quota ROOT --intermediate ID --count 3" ca assign-quota "$rid" --intermediate "$iid" --count 3
  cli --json ca show "$iid"
  if ((CLI_RC == 0)) && [[ $(jq -r '.quota_remaining // empty' <<<"$CLI_OUT") == 3 && $(jq -r .status <<<"$CLI_OUT") == enabled ]]; then
    pass "vellum admin --json ca show INTERMEDIATE: enabled, quota_remaining 3"
  else
    fail "vellum admin --json ca show INTERMEDIATE: enabled, quota_remaining 3" "exit $CLI_RC" "$CLI_OUT"
  fi
  cli ca show "$rid" --pem
  printf '%s\n' "$CLI_OUT" >"$d/root.pem"
  cli ca show "$iid" --pem
  printf '%s\n' "$CLI_OUT" >"$d/int.pem"
  if openssl x509 -in "$d/root.pem" -noout 2>/dev/null && openssl x509 -in "$d/int.pem" -noout 2>/dev/null; then
    pass "vellum admin ca show ID --pem prints the certificates"
    verify_chain "openssl verify -CAfile cli-root.pem cli-intermediate.pem" "$d/root.pem" "$d/int.pem"
    if [[ $(key_algorithm_of "$d/root.pem") == ec-p384 ]]; then
      pass "the CLI-made root has an ec-p384 key"
    else
      fail "the CLI-made root has an ec-p384 key" "$(key_algorithm_of "$d/root.pem")"
    fi
  else
    fail "vellum admin ca show ID --pem prints the certificates" "$(head -n 5 "$d/root.pem")" "$(head -n 5 "$d/int.pem")"
  fi
  cli ca list
  if ((CLI_RC == 0)) && grep -qF "$rid" <<<"$CLI_OUT" && grep -qF "$iid" <<<"$CLI_OUT"; then
    pass "vellum admin ca list shows both"
  else
    fail "vellum admin ca list shows both" "$CLI_OUT"
  fi
  cli ca show 00000000-0000-0000-0000-000000000000
  if ((CLI_RC != 0)); then
    pass "vellum admin ca show UNKNOWN exits non-zero" "exit $CLI_RC: $(head -n 2 <<<"$CLI_OUT")"
  else
    fail "vellum admin ca show UNKNOWN exits non-zero" "$CLI_OUT"
  fi

  # --- certificate commands (when this CLI has them) ---------------------------
  local help; help=$("$BIN" admin --help 2>&1 || true)
  if ! grep -qE '^  cert( |$)' <<<"$help"; then
    skip "CLI certificate commands" "vellum admin --help lists no cert command"
    return 0
  fi
  cli --json cert apply --ca "$iid" --cn cli.conformance.example --san dns:cli.conformance.example \
    --san ip:192.0.2.20 --days 90 --key-algorithm ec-p256 --tag env=cli \
    --org "Conformance CLI" --ou Suite --country DE --state Berlin --locality Berlin
  local cid; cid=$(jq -r '.id // empty' <<<"$CLI_OUT" 2>/dev/null)
  if ((CLI_RC == 0)) && [[ -n $cid && $(jq -r .ca_id <<<"$CLI_OUT") == "$iid" ]]; then
    pass "vellum admin --json cert apply --ca INT --cn .. --san dns:.. --san ip:.." "id $cid"
  else
    fail "vellum admin --json cert apply --ca INT --cn .. --san dns:.. --san ip:.." "exit $CLI_RC" "$CLI_OUT"
    return 0
  fi
  cli cert show "$cid" --pem
  printf '%s\n' "$CLI_OUT" >"$d/leaf.pem"
  if ((CLI_RC == 0)) && openssl x509 -in "$d/leaf.pem" -noout 2>/dev/null; then
    pass "vellum admin cert show ID --pem prints the certificate"
    verify_chain "openssl verify -CAfile cli-root.pem -untrusted cli-intermediate.pem cli-leaf.pem" \
      "$d/root.pem" "$d/leaf.pem" "$d/int.pem"
    local san; san=$(ext_text "$d/leaf.pem" "Subject Alternative Name")
    if [[ $san == "DNS:cli.conformance.example, IP Address:192.0.2.20" ]]; then
      pass "the CLI-applied certificate has the --san names"
    else
      fail "the CLI-applied certificate has the --san names" "got '$san'"
    fi
  else
    fail "vellum admin cert show ID --pem prints the certificate" "exit $CLI_RC" "$CLI_OUT"
  fi
  cli --json cert list --ca "$iid"
  if ((CLI_RC == 0)) && jq -e --arg c "$cid" '[.items[].id] | index($c) != null' <<<"$CLI_OUT" >/dev/null 2>&1; then
    pass "vellum admin --json cert list --ca INT lists it"
  else
    fail "vellum admin --json cert list --ca INT lists it" "exit $CLI_RC" "$(head -n 20 <<<"$CLI_OUT")"
  fi
  cli cert export "$cid" --format pkcs12 --password "$EXPORT_PW" -o "$d/leaf.p12"
  if ((CLI_RC == 0)) && openssl pkcs12 -in "$d/leaf.p12" -passin "pass:$EXPORT_PW" -nocerts -noenc 2>/dev/null |
    openssl pkey -pubout 2>/dev/null | cmp -s - <(pubkey_of_cert "$d/leaf.pem"); then
    pass "vellum admin cert export --format pkcs12 -o FILE: openssl reads it, key matches"
  else
    fail "vellum admin cert export --format pkcs12 -o FILE: openssl reads it, key matches" "exit $CLI_RC" "$CLI_OUT"
  fi
  if openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=cli-device \
    -keyout "$d/dev.key" -out "$d/dev.csr" >/dev/null 2>&1; then
    cli --json cert apply --ca "$iid" --type client --cn cli-device --san email:cli-device@conformance.example --csr "$d/dev.csr"
    jq -r '.certificate_pem // empty' <<<"$CLI_OUT" >"$d/dev.pem" 2>/dev/null || true
    if ((CLI_RC == 0)) && [[ -n $(pubkey_of_csr "$d/dev.csr") && $(pubkey_of_cert "$d/dev.pem") == "$(pubkey_of_csr "$d/dev.csr")" ]]; then
      pass "vellum admin cert apply --type client --csr FILE certifies the CSR's key"
    else
      fail "vellum admin cert apply --type client --csr FILE certifies the CSR's key" "exit $CLI_RC" "$CLI_OUT"
    fi
  fi
  cli --json cert renew "$cid" --force
  if ((CLI_RC == 0)) && [[ -n $(jq -r '.id // empty' <<<"$CLI_OUT" 2>/dev/null) && $(jq -r .id <<<"$CLI_OUT") != "$cid" ]]; then
    pass "vellum admin cert renew ID --force issues a new certificate"
  else
    fail "vellum admin cert renew ID --force issues a new certificate" "exit $CLI_RC" "$CLI_OUT"
  fi
  cli cert revoke "$cid" --reason keyCompromise
  if ((CLI_RC == 0)); then
    pass "vellum admin cert revoke ID --reason keyCompromise"
    cli --json ca crl "$iid"
    local want; want=$(cert_serial "$d/leaf.pem" | tr A-F a-f)
    if ((CLI_RC == 0)) && jq -e --arg s "$want" 'any(.entries[]; (.serial | ascii_downcase | ltrimstr("0")) == $s)' <<<"$CLI_OUT" >/dev/null 2>&1; then
      pass "vellum admin --json ca crl INT lists the revoked serial"
    else
      fail "vellum admin --json ca crl INT lists the revoked serial" "exit $CLI_RC" "$CLI_OUT"
    fi
    if fetch_crl_pem "$iid" "$d/crl" && cat "$d/crl.pem" >"$d/crls.pem" &&
      out=$(openssl verify -crl_check -CAfile "$d/root.pem" -untrusted "$d/int.pem" -CRLfile "$d/crls.pem" "$d/leaf.pem" 2>&1); then
      fail "openssl verify -crl_check rejects the CLI-revoked certificate" "$out"
    elif grep -q 'certificate revoked' <<<"${out-}"; then
      pass "openssl verify -crl_check rejects the CLI-revoked certificate"
    else
      fail "openssl verify -crl_check rejects the CLI-revoked certificate" "${out-could not fetch /crl/$iid.crl}"
    fi
    cli cert revoke "$cid" --reason keyCompromise
    if ((CLI_RC != 0)) && grep -qi 'already revoked' <<<"$CLI_OUT"; then
      pass "vellum admin cert revoke twice exits non-zero, saying \"already revoked\""
    else
      fail "vellum admin cert revoke twice exits non-zero, saying \"already revoked\"" "exit $CLI_RC" "$CLI_OUT"
    fi
    cli_check "vellum admin cert delete ID (revoked)" cert delete "$cid"
    cli cert show "$cid"
    if ((CLI_RC != 0)); then
      pass "vellum admin cert show DELETED exits non-zero" "$(head -n 2 <<<"$CLI_OUT")"
    else
      fail "vellum admin cert show DELETED exits non-zero" "$CLI_OUT"
    fi
  else
    fail "vellum admin cert revoke ID --reason keyCompromise" "exit $CLI_RC" "$CLI_OUT"
  fi
  cli_check "vellum admin ca crl-set INT --enabled false" ca crl-set "$iid" --enabled false
  local st; st=$(plain_get "/crl/$iid.crl" "$d/off.crl")
  if [[ $st == 404 ]]; then
    pass "after crl-set --enabled false, GET /crl/{id}.crl -> 404"
  else
    fail "after crl-set --enabled false, GET /crl/{id}.crl -> 404" "HTTP $st"
  fi
}
check_cli || true

# The doors' settings from the CLI, judged by the doors themselves: an EST
# label and client account made with `vellum admin est …` let curl enroll at
# /.well-known/est/LABEL (openssl reads the certificate), and removing the
# client stops it; an EAB key from `vellum admin acme eab` and require-eab set
# with `vellum admin acme set` show in the ACME directory's meta.
check_cli_doors() {
  local d="$WORK/cli-doors" label="cli-$RANDOM" pw
  mkdir -p "$d"
  [[ -n $BOOT_INT_ID ]] || return 0
  local iid=$BOOT_INT_ID
  cli_check "vellum admin est set INT --label L --auth basic" est set "$iid" --label "$label" --auth basic
  pw="cli-pass-$RANDOM$RANDOM"
  printf '%s\n' "$pw" >"$d/pw"
  chmod 600 "$d/pw"
  cli_check "vellum admin est client add INT --username U --password-file F --name-pattern '*.cli.test'" \
    est client add "$iid" --username cli-device --password-file "$d/pw" --name-pattern '*.cli.test'
  cli --json est client list "$iid"
  if ((CLI_RC == 0)) && jq -e '.items[] | select(.username == "cli-device")' <<<"$CLI_OUT" >/dev/null 2>&1; then
    pass "vellum admin est client list INT shows the account"
  else
    fail "vellum admin est client list INT shows the account" "exit $CLI_RC" "$CLI_OUT"
  fi
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/dev.key" 2>/dev/null
  openssl req -new -key "$d/dev.key" -subj "/CN=a.cli.test" -outform DER 2>/dev/null | openssl base64 >"$d/csr.b64"
  local url="https://localhost:$HTTPS_PORT/.well-known/est/$label/simpleenroll" st
  st=$(curl_https -o "$d/enrolled.b64" -w '%{http_code}' -u "cli-device:$pw" \
    -H 'Content-Type: application/pkcs10' --data-binary @"$d/csr.b64" "$url" 2>&1) || st="000 $st"
  if [[ $st == 200 ]] && tr -d '\r\n' <"$d/enrolled.b64" | openssl base64 -d -A |
    openssl pkcs7 -inform DER -print_certs 2>/dev/null | grep -q 'subject=.*CN *= *a.cli.test'; then
    pass "curl enrolls at /.well-known/est/LABEL with the CLI-made account; openssl reads CN=a.cli.test"
  else
    fail "curl enrolls at /.well-known/est/LABEL with the CLI-made account; openssl reads CN=a.cli.test" \
      "HTTP $st" "$(head -c 600 "$d/enrolled.b64" 2>/dev/null)"
  fi
  cli_check "vellum admin est client remove INT cli-device" est client remove "$iid" cli-device
  st=$(curl_https -o /dev/null -w '%{http_code}' -u "cli-device:$pw" \
    -H 'Content-Type: application/pkcs10' --data-binary @"$d/csr.b64" "$url" 2>&1) || true
  if [[ $st == 401 ]]; then
    pass "after vellum admin est client remove, the account is refused (401)"
  else
    fail "after vellum admin est client remove, the account is refused (401)" "HTTP $st"
  fi
  cli_check "vellum admin est set INT --no-label" est set "$iid" --no-label
  cli est set "$iid"
  if ((CLI_RC != 0)) && grep -q 'nothing to change' <<<"$CLI_OUT"; then
    pass "vellum admin est set INT without flags exits non-zero, saying there is nothing to change"
  else
    fail "vellum admin est set INT without flags exits non-zero, saying there is nothing to change" "exit $CLI_RC" "$CLI_OUT"
  fi

  cli --json acme eab "$iid"
  if ((CLI_RC == 0)) && [[ -n $(jq -r '.kid // empty' <<<"$CLI_OUT") && -n $(jq -r '.hmac_key // empty' <<<"$CLI_OUT") ]]; then
    pass "vellum admin --json acme eab INT prints a kid and its HMAC key"
  else
    fail "vellum admin --json acme eab INT prints a kid and its HMAC key" "exit $CLI_RC" "$CLI_OUT"
  fi
  cli_check "vellum admin acme set INT --require-eab true" acme set "$iid" --require-eab true
  local dir
  dir=$(curl_https "https://localhost:$HTTPS_PORT/acme/$iid/directory" 2>&1) || true
  if [[ $(jq -r '.meta.externalAccountRequired // empty' <<<"$dir" 2>/dev/null) == true ]]; then
    pass "after acme set --require-eab true, the ACME directory says externalAccountRequired"
  else
    fail "after acme set --require-eab true, the ACME directory says externalAccountRequired" "$dir"
  fi
  cli_check "vellum admin acme set INT --require-eab false" acme set "$iid" --require-eab false
  cli acme set "$iid" --challenge bogus-01
  if ((CLI_RC != 0)) && grep -qi 'challenge' <<<"$CLI_OUT"; then
    pass "vellum admin acme set --challenge bogus-01 exits non-zero naming the field"
  else
    fail "vellum admin acme set --challenge bogus-01 exits non-zero naming the field" "exit $CLI_RC" "$CLI_OUT"
  fi
  cli_check "vellum admin rate-limits set INT --acme-orders-per-account-per-hour 7" \
    rate-limits set "$iid" --acme-orders-per-account-per-hour 7
  cli --json rate-limits show "$iid"
  if ((CLI_RC == 0)) && [[ $(jq -r '.effective.acme_orders_per_account_per_hour' <<<"$CLI_OUT") == 7 ]]; then
    pass "vellum admin --json rate-limits show INT: the override is effective"
  else
    fail "vellum admin --json rate-limits show INT: the override is effective" "exit $CLI_RC" "$CLI_OUT"
  fi
  cli_check "vellum admin rate-limits set INT --acme-orders-per-account-per-hour default" \
    rate-limits set "$iid" --acme-orders-per-account-per-hour default

  # Check an installation: the server's own HTTPS listener, judged by the report.
  cli --json check-installation localhost --port "$HTTPS_PORT"
  if ((CLI_RC == 0)) && [[ $(jq -r '.name_matches and .chain_complete and .in_inventory' <<<"$CLI_OUT") == true ]]; then
    pass "vellum admin check-installation localhost --port PORT: name matches, chain complete, in the inventory"
  else
    fail "vellum admin check-installation localhost --port PORT: name matches, chain complete, in the inventory" "exit $CLI_RC" "$CLI_OUT"
  fi
  cli check-installation 10.9.8.7
  if ((CLI_RC != 0)) && grep -q 'outside the networks' <<<"$CLI_OUT"; then
    pass "vellum admin check-installation 10.9.8.7 is refused: outside the allowed networks"
  else
    fail "vellum admin check-installation 10.9.8.7 is refused: outside the allowed networks" "exit $CLI_RC" "$CLI_OUT"
  fi

  # A CSR made on the server, signed by another CA (openssl), uploaded with its id.
  cli --json csr create --cn csr.cli.test --san dns:csr.cli.test --out "$d/server-made.csr"
  local csr_id; csr_id=$(jq -r '.id // empty' <<<"$CLI_OUT" 2>/dev/null)
  if ((CLI_RC == 0)) && [[ -n $csr_id ]] && openssl req -in "$d/server-made.csr" -noout -verify >/dev/null 2>&1; then
    pass "vellum admin csr create --out FILE writes a CSR openssl verifies"
  else
    fail "vellum admin csr create --out FILE writes a CSR openssl verifies" "exit $CLI_RC" "$CLI_OUT"
  fi
  if openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc -keyout "$d/other-ca.key" \
      -out "$d/other-ca.pem" -subj "/CN=Other CA" -days 30 >/dev/null 2>&1 &&
    openssl x509 -req -in "$d/server-made.csr" -CA "$d/other-ca.pem" -CAkey "$d/other-ca.key" \
      -days 20 -out "$d/server-made.pem" >/dev/null 2>&1; then
    cli --json managed upload --name from-csr --cert "$d/server-made.pem" --csr-id "$csr_id" --chain "$d/other-ca.pem"
    if ((CLI_RC == 0)) && [[ $(jq -r .has_private_key <<<"$CLI_OUT") == true ]]; then
      pass "vellum admin managed upload --csr-id ID keeps the certificate with the CSR's key"
    else
      fail "vellum admin managed upload --csr-id ID keeps the certificate with the CSR's key" "exit $CLI_RC" "$CLI_OUT"
    fi
  else
    fail "openssl signs the CSR made by the server" "openssl x509 -req failed"
  fi
  cli_check "vellum admin csr delete ID" csr delete "$csr_id"

  # Where the URL comes from, when nothing answers there.
  local out rc=0
  out=$(VELLUM_URL="https://127.0.0.1:9" "$BIN" admin --data-dir "$DATA" ca list 2>&1 </dev/null) || rc=$?
  if ((rc != 0)) && grep -q 'VELLUM_URL' <<<"$out" && grep -q 'cannot reach' <<<"$out"; then
    pass "with VELLUM_URL pointing nowhere, the CLI says it cannot reach the server and names VELLUM_URL"
  else
    fail "with VELLUM_URL pointing nowhere, the CLI says it cannot reach the server and names VELLUM_URL" "exit $rc" "$out"
  fi
}
check_cli_doors || true

finish
