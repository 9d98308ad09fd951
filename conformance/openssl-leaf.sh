#!/usr/bin/env bash
# Leaf certificates, their CRLs and their lifecycle, judged by openssl:
# server and client certificates issued through the admin API (generated
# ec-p256 / rsa-2048 / ed25519 keys, an openssl-made CSR, no CRL distribution
# point) read with openssl x509 and verified; CRLs before and after a
# revocation (openssl crl, openssl verify -crl_check / -crl_check_all);
# renewal; a deleted revoked certificate staying on the CRL; a revoked
# intermediate's leaves; and CRL distribution over plain HTTP (curl: content
# type, ETag, 304, 404 when disabled).
#
#   bash conformance/openssl-leaf.sh      (see lib.sh for the environment)
#
# The admin API's own answers (inventory queries, refusals, quota arithmetic,
# revoke/delete/renew status codes) are checked in tests/it (certificates.rs,
# inventory_lifecycle.rs); here they are setup steps that FAIL when refused.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
conformance_init openssl-leaf
start_server

LEAF_DIR="$WORK/leaves"
mkdir -p "$LEAF_DIR"
# Ids of the leaves issued below (empty when issuance failed).
LEAF_P256_ID="" LEAF_CSR_ID=""
REVOKED_LEAF_ID="" REVOKED_LEAF_SERIAL=""

# =================================================================================
section "issuing leaf certificates"
# =================================================================================
check_leaves() {
  leaf_hierarchy || return 0
  local d=$LEAF_DIR

  # --- server, generated P-256 key (the default) -----------------------------
  if issue_leaf "server cert, generated ec-p256 key" "$L_INT_ID" "$(leaf_body p256)" "$d/p256"; then
    LEAF_P256_ID=$LEAF_ID
    check_leaf "ec-p256 server" "$d/p256.pem" server \
      "DNS:www.conformance.example, DNS:api.conformance.example, IP Address:192.0.2.10" "$L_INT_ID" ec-p256
  fi

  # --- server, generated RSA-2048 key -------------------------------------------
  if issue_leaf "server cert, generated rsa-2048 key" "$L_INT_ID" "$(leaf_body rsa)" "$d/rsa"; then
    check_leaf "rsa-2048 server" "$d/rsa.pem" server "DNS:rsa.conformance.example" "$L_INT_ID" rsa-2048
  fi

  # --- client, from an openssl-made CSR (the server never sees the key) ------
  # (URI SAN: an https URL. pkilint 0.13.3 reports pkix.invalid_uri_syntax
  # ERROR for URNs and spiffe:// URIs, which RFC 5280 allows; see the report.)
  if make_csr "$d/device1.key" "$d/device1.csr" /CN=device1; then
    pass "openssl req -new -newkey ec (P-256) -subj /CN=device1 makes a CSR"
    if issue_leaf "client cert from a CSR" "$L_INT_ID" "$(csr_client_body "$d/device1.csr")" "$d/csr"; then
      LEAF_CSR_ID=$LEAF_ID
      check_leaf "CSR client" "$d/csr.pem" client \
        "email:device1@conformance.example, URI:https://devices.conformance.example/device1" "$L_INT_ID" ec-p256
      if [[ -n $(pubkey_of_csr "$d/device1.csr") && $(pubkey_of_cert "$d/csr.pem") == "$(pubkey_of_csr "$d/device1.csr")" ]]; then
        pass "CSR client: certificate public key equals the CSR's (openssl x509 -pubkey vs openssl req -pubkey)"
      else
        fail "CSR client: certificate public key equals the CSR's (openssl x509 -pubkey vs openssl req -pubkey)" \
          "cert:" "$(pubkey_of_cert "$d/csr.pem")" "csr:" "$(pubkey_of_csr "$d/device1.csr")"
      fi
      if [[ $(openssl x509 -in "$d/csr.pem" -noout -subject -nameopt RFC2253) == "subject=CN=device1" ]]; then
        pass "CSR client: subject is CN=device1"
      else
        fail "CSR client: subject is CN=device1" "$(openssl x509 -in "$d/csr.pem" -noout -subject -nameopt RFC2253)"
      fi
    fi
  else
    fail "openssl req -new -newkey ec (P-256) -subj /CN=device1 makes a CSR"
  fi

  # --- server, generated ed25519 key ------------------------------------------
  if issue_leaf "server cert, generated ed25519 key" "$L_INT_ID" "$(leaf_body ed)" "$d/ed"; then
    check_leaf "ed25519 server" "$d/ed.pem" server \
      "DNS:ed.conformance.example, IP Address:2001:DB8:0:0:0:0:0:10" "$L_INT_ID" ed25519
  fi

  # --- include_crl: false -> no CRL distribution point ------------------------
  if issue_leaf "server cert with include_crl: false" "$L_INT_ID" "$(leaf_body nocrl)" "$d/nocrl"; then
    check_leaf "include_crl:false server" "$d/nocrl.pem" server "DNS:nocrl.conformance.example" "$L_INT_ID" ec-p256 nocdp
  fi
}
check_leaves || true

# =================================================================================
section "CRLs and revocation of leaf certificates"
# =================================================================================
check_crls() {
  [[ -n $L_INT_ID ]] || { fail "CRL checks: no leaf hierarchy from section g"; return 0; }
  local d=$LEAF_DIR
  # A certificate of its own to revoke (the others are exported later).
  issue_leaf "server cert to revoke" "$L_INT_ID" \
    '{"type":"server","common_name":"revoked.conformance.example","sans":[{"type":"dns","value":"revoked.conformance.example"}],"validity_days":90}' \
    "$d/victim" || return 0
  local victim_id=$LEAF_ID victim_serial
  victim_serial=$(cert_serial "$d/victim.pem")

  # --- before revocation ---------------------------------------------------------
  if ! fetch_crl_pem "$L_INT_ID" "$d/crl0"; then
    fail "GET /crl/{intermediate}.crl returns a DER CRL" "$(head -c 300 "$d/crl0.der")"
    return 0
  fi
  local txt
  if txt=$(openssl crl -inform DER -in "$d/crl0.der" -noout -text 2>&1); then
    pass "openssl crl -inform DER -noout -text reads the intermediate's CRL" \
      "$(grep -E 'Issuer:|Last Update|Next Update|CRL Number' -A0 <<<"$txt" | sed 's/^ *//')"
  else
    fail "openssl crl -inform DER -noout -text reads the intermediate's CRL" "$txt"
  fi
  check "the intermediate's CRL is signed by the intermediate (openssl crl -CAfile)" \
    openssl crl -inform DER -in "$d/crl0.der" -CAfile "$L_INT_PEM" -noout
  local pst; pst=$(plain_get "/crl/$L_INT_ID.pem" "$d/crl0-served.pem")
  if [[ $pst == 200 ]] && cmp -s <(openssl crl -in "$d/crl0-served.pem" -outform DER 2>/dev/null) "$d/crl0.der"; then
    pass "GET /crl/{intermediate}.pem is the same CRL in PEM"
  else
    fail "GET /crl/{intermediate}.pem is the same CRL in PEM" "HTTP $pst" "$(head -c 300 "$d/crl0-served.pem")"
  fi
  local n0; n0=$(crl_number "$d/crl0.der")
  local out
  if out=$(crl_verify "$d/victim.pem" "$d/crl0.pem") && grep -q ': OK$' <<<"$out"; then
    pass "openssl verify -crl_check leaf.pem: OK before revocation"
  else
    fail "openssl verify -crl_check leaf.pem: OK before revocation" "$out"
  fi

  # --- revoke, then the CRL must show it within a second -----------------------
  local t0; t0=$(now_ms)
  api POST "/certificates/$victim_id/revoke" '{"reason":"keyCompromise"}'
  local t_api=$(($(now_ms) - t0))
  if [[ $API_STATUS != 200 || $(jb '.status // empty') != revoked ]]; then
    fail "POST /certificates/{id}/revoke keyCompromise -> 200, status revoked" "$(_api_failure_details)"
    return 0
  fi
  note "revoked through the admin API in ${t_api} ms"
  REVOKED_LEAF_ID=$victim_id REVOKED_LEAF_SERIAL=$victim_serial
  t0=$(now_ms)
  local elapsed=0 tries=0 revoked=0
  while :; do
    tries=$((tries + 1))
    if fetch_crl_pem "$L_INT_ID" "$d/crl1"; then
      out=$(crl_verify "$d/victim.pem" "$d/crl1.pem") || true
      if grep -q 'certificate revoked' <<<"$out"; then revoked=1; break; fi
    fi
    elapsed=$(($(now_ms) - t0))
    ((elapsed < 1000)) || break
    sleep 0.05
  done
  elapsed=$(($(now_ms) - t0))
  if ((revoked)); then
    pass "within 1 s the CRL makes openssl verify -crl_check fail with \"certificate revoked\"" \
      "after ${elapsed} ms, ${tries} fetch(es)" "$(grep -E 'error|revoked' <<<"$out")"
  else
    fail "within 1 s the CRL makes openssl verify -crl_check fail with \"certificate revoked\"" \
      "still not revoked after ${elapsed} ms (${tries} fetches); last openssl verify output:" "$out"
  fi
  txt=$(openssl crl -in "$d/crl1.pem" -noout -text 2>&1)
  local entry; entry=$(grep -A4 -iE "Serial Number: 0*$victim_serial\$" <<<"$txt")
  if [[ -n $entry ]] && grep -q 'Key Compromise' <<<"$entry"; then
    # shellcheck disable=SC2001 # a regex: no ${var//} equivalent
    pass "openssl crl -text lists serial $victim_serial with reason Key Compromise" "$(sed 's/^ *//' <<<"$entry")"
  else
    fail "openssl crl -text lists serial $victim_serial with reason Key Compromise" "$txt"
  fi
  local n1; n1=$(crl_number "$d/crl1.der")
  if [[ $n0 =~ ^[0-9]+$ && $n1 =~ ^[0-9]+$ ]] && ((n1 > n0)); then
    pass "CRL Number increased ($n0 -> $n1)"
  else
    fail "CRL Number increased" "before: '$n0', after: '$n1'"
  fi
  check "the new CRL is signed by the intermediate (openssl crl -CAfile)" \
    openssl crl -inform DER -in "$d/crl1.der" -CAfile "$L_INT_PEM" -noout

  # --- the whole chain with the root's CRL too (-crl_check_all) ---------------
  if fetch_crl_pem "$L_ROOT_ID" "$d/rootcrl0"; then
    check "the root's CRL is signed by the root (openssl crl -CAfile)" \
      openssl crl -inform DER -in "$d/rootcrl0.der" -CAfile "$L_ROOT_PEM" -noout
    cat "$d/crl1.pem" "$d/rootcrl0.pem" >"$d/all-crls.pem"
    if [[ -s $d/p256.pem ]]; then
      if out=$(crl_verify "$d/p256.pem" "$d/all-crls.pem" -crl_check_all) && grep -q ': OK$' <<<"$out"; then
        pass "openssl verify -crl_check_all (intermediate + root CRLs) OK for a valid leaf"
      else
        fail "openssl verify -crl_check_all (intermediate + root CRLs) OK for a valid leaf" "$out"
      fi
    fi
    out=$(crl_verify "$d/victim.pem" "$d/all-crls.pem" -crl_check_all) || true
    if grep -q 'certificate revoked' <<<"$out"; then
      pass "openssl verify -crl_check_all rejects the revoked leaf (\"certificate revoked\")"
    else
      fail "openssl verify -crl_check_all rejects the revoked leaf (\"certificate revoked\")" "$out"
    fi
  else
    fail "GET /crl/{root}.crl returns a DER CRL" "$(head -c 300 "$d/rootcrl0.der")"
  fi
}
check_crls || true

# =================================================================================
section "renewal, deletion, a revoked intermediate"
# =================================================================================
check_lifecycle() {
  [[ -n $L_INT_ID ]] || { fail "lifecycle: no leaf hierarchy"; return 0; }
  local d=$LEAF_DIR

  # --- delete the revoked certificate (it must stay on the CRL, below) ---------
  # The refusals around deletion and renewal are checked in tests/it
  # (certificates.rs, inventory_lifecycle.rs).
  if [[ -n $REVOKED_LEAF_ID ]]; then
    api DELETE "/certificates/$REVOKED_LEAF_ID"
    quietly expect "DELETE the revoked certificate -> 200" 200
  else
    fail "delete a revoked certificate: nothing was revoked in the CRL checks"
  fi

  # --- renew ------------------------------------------------------------------------------
  local renewed_id=""
  if [[ -n $LEAF_P256_ID ]]; then
    api POST "/certificates/$LEAF_P256_ID/renew" '{"force":true}'
    if [[ $API_STATUS == 201 ]]; then
      jb '.certificate_pem // empty' >"$d/renewed.pem"
      renewed_id=$(jb '.id // empty')
      local old_serial new_serial; old_serial=$(jq -r .serial "$d/p256.json"); new_serial=$(jb '.serial // empty')
      if [[ -n $new_serial && $new_serial != "$old_serial" && -n $renewed_id && $renewed_id != "$LEAF_P256_ID" &&
        $(cert_serial "$d/renewed.pem") == "$(tr a-f A-F <<<"$new_serial" | sed 's/^0*//')" ]]; then
        pass "renew with force -> 201 with a new id and serial" "serial $old_serial -> $new_serial"
      else
        fail "renew with force -> 201 with a new id and serial" "old $LEAF_P256_ID/$old_serial, new $renewed_id/$new_serial"
      fi
      local problems=()
      [[ $(ext_text "$d/renewed.pem" "Subject Alternative Name") == "$(ext_text "$d/p256.pem" "Subject Alternative Name")" ]] ||
        problems+=("subjectAltName differs")
      [[ $(openssl x509 -in "$d/renewed.pem" -noout -subject) == "$(openssl x509 -in "$d/p256.pem" -noout -subject)" ]] ||
        problems+=("subject differs")
      [[ $(jb '.renewed_from // empty') == "$LEAF_P256_ID" ]] || problems+=("renewed_from is \"$(jb '.renewed_from // empty')\"")
      if ((${#problems[@]})); then
        fail "the renewed certificate keeps subject and SANs, renewed_from = old id" "${problems[@]}"
      else
        pass "the renewed certificate keeps subject and SANs, renewed_from = old id"
      fi
      verify_chain "renewed certificate verifies" "$L_ROOT_PEM" "$d/renewed.pem" "$L_INT_PEM"
    else
      fail "renew with force -> 201 with a new id and serial" "$(_api_failure_details)"
    fi
  fi
  if [[ -n $LEAF_CSR_ID ]]; then
    api POST "/certificates/$LEAF_CSR_ID/renew" '{"force":true}'
    if [[ $API_STATUS == 201 ]]; then
      jb '.certificate_pem' >"$d/csr-renewed.pem"
      if [[ $(pubkey_of_cert "$d/csr-renewed.pem") == "$(pubkey_of_csr "$d/device1.csr")" && $(jb .serial) != "$(jq -r .serial "$d/csr.json")" ]]; then
        pass "renewing the CSR-issued certificate certifies the same public key again"
      else
        fail "renewing the CSR-issued certificate certifies the same public key again"
      fi
    else
      fail "renew the CSR-issued certificate with force -> 201" "$(_api_failure_details)"
    fi
  fi

  # --- a deleted revoked certificate stays on the CRL (RFC 5280 3.3) -----------------
  # Revoke the renewed certificate: the regenerated CRL must list both.
  if [[ -n $renewed_id && -n $REVOKED_LEAF_SERIAL ]]; then
    api POST "/certificates/$renewed_id/revoke" '{"reason":"superseded"}'
    if quietly expect "revoke the renewed certificate (superseded)" 200; then
      local want txt="" ok=0
      want=$(cert_serial "$d/renewed.pem")
      for _ in $(seq 1 20); do
        if fetch_crl_pem "$L_INT_ID" "$d/crl2"; then
          txt=$(openssl crl -in "$d/crl2.pem" -noout -text 2>&1)
          if grep -qiE "Serial Number: 0*$want\$" <<<"$txt"; then ok=1; break; fi
        fi
        sleep 0.1
      done
      if ((ok)) && grep -qiE "Serial Number: 0*$REVOKED_LEAF_SERIAL\$" <<<"$txt"; then
        pass "the regenerated CRL still lists the deleted revoked certificate (and the new one)"
      else
        fail "the regenerated CRL still lists the deleted revoked certificate (and the new one)" \
          "want $REVOKED_LEAF_SERIAL and $want in:" "$txt"
      fi
      if grep -A4 -iE "Serial Number: 0*$want\$" <<<"$txt" | grep -q 'Superseded'; then
        pass "the CRL entry carries reason Superseded"
      else
        fail "the CRL entry carries reason Superseded" "$(grep -A4 -iE "Serial Number: 0*$want\$" <<<"$txt")"
      fi
    fi
  fi

  # --- quota exhaustion on a small intermediate -----------------------------------------
  # (quota arithmetic and the 409 when it is spent: tests/it/certificates.rs)
  quietly buy_intermediate "quota" "$L_ROOT_ID" ec-p256 || return 0
  local qid=$NEW_INT_ID
  quietly enable_generate "quota intermediate" "$qid" "$CERTS/l-qint.pem" || return 0
  get_ca "$qid"
  local start; start=$(jb '.quota_remaining // 0')
  api POST "/cas/$L_ROOT_ID/quota/assign" "$(jq -nc --arg i "$qid" '{intermediate_id:$i, count:2}')"
  quietly expect "quota/assign 2 to a new intermediate" 200 || return 0
  local saved_int=$L_INT_PEM_FOR_CHAIN i n=$((start + 2)) issued=0
  L_INT_PEM_FOR_CHAIN="$CERTS/l-qint.pem"
  for i in $(seq 1 "$n"); do
    issue_leaf "quota: certificate $i of $n" "$qid" \
      "$(jq -nc --arg cn "q$i.conformance.example" '{type:"server", common_name:$cn, sans:[{type:"dns", value:$cn}], validity_days:90}')" \
      "$d/q$i" && issued=$((issued + 1))
  done
  L_INT_PEM_FOR_CHAIN=$saved_int

  # --- the root's CRL (an ARL) lists a revoked intermediate --------------------
  api POST "/cas/$qid/revoke" '{"reason":"cessationOfOperation"}'
  if quietly expect "revoke the quota intermediate (cessationOfOperation)" 200; then
    local want txt="" ok=0
    want=$(cert_serial "$CERTS/l-qint.pem")
    for _ in $(seq 1 20); do
      if fetch_crl_pem "$L_ROOT_ID" "$d/rootcrl1"; then
        txt=$(openssl crl -in "$d/rootcrl1.pem" -noout -text 2>&1)
        if grep -qiE "Serial Number: 0*$want\$" <<<"$txt"; then ok=1; break; fi
      fi
      sleep 0.1
    done
    if ((ok)); then
      pass "the root's CRL lists the revoked intermediate" "$(grep -A4 -iE "Serial Number: 0*$want\$" <<<"$txt" | sed 's/^ *//')"
      if [[ -s $d/q1.pem ]]; then
        # A leaf of the revoked intermediate fails full-chain CRL checking.
        fetch_crl_pem "$qid" "$d/qcrl" || true
        cat "$d/qcrl.pem" "$d/rootcrl1.pem" >"$d/q-crls.pem" 2>/dev/null
        local out
        out=$(openssl verify -crl_check_all -CAfile "$L_ROOT_PEM" -untrusted "$CERTS/l-qint.pem" \
          -CRLfile "$d/q-crls.pem" "$d/q1.pem" 2>&1) || true
        if grep -q 'certificate revoked' <<<"$out"; then
          pass "openssl verify -crl_check_all rejects a leaf of the revoked intermediate" "$(grep -E 'error' <<<"$out")"
        else
          fail "openssl verify -crl_check_all rejects a leaf of the revoked intermediate" "$out"
        fi
      fi
    else
      fail "the root's CRL lists the revoked intermediate" "serial $want not in:" "$txt"
    fi
  fi
}
check_lifecycle || true

# =================================================================================
section "CRL distribution over HTTP"
# =================================================================================
check_crl_http() {
  [[ -n $L_INT_ID ]] || { fail "CRL HTTP: no leaf hierarchy"; return 0; }
  local d=$LEAF_DIR path="/crl/$L_INT_ID.crl" st etag ctype
  st=$(plain_get "$path" "$d/k.der" -D "$d/k.headers")
  etag=$(grep -i '^etag:' "$d/k.headers" | head -n1 | cut -d: -f2- | tr -d '\r' | sed 's/^ *//')
  ctype=$(grep -i '^content-type:' "$d/k.headers" | head -n1 | cut -d: -f2- | tr -d '\r' | sed 's/^ *//')
  if [[ $st == 200 && $ctype == application/pkix-crl* ]]; then
    pass "GET /crl/{intermediate}.crl: 200, Content-Type application/pkix-crl"
  else
    fail "GET /crl/{intermediate}.crl: 200, Content-Type application/pkix-crl" "HTTP $st, Content-Type '$ctype'"
  fi
  if [[ -n $etag ]]; then
    pass "GET /crl/{intermediate}.crl carries an ETag" "$etag"
    st=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 -H "If-None-Match: $etag" "http://127.0.0.1:$HTTP_PORT$path" || true)
    if [[ $st == 304 ]]; then
      pass "If-None-Match with the ETag -> 304"
    else
      fail "If-None-Match with the ETag -> 304" "HTTP $st"
    fi
    st=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 -H 'If-None-Match: "not-the-etag"' "http://127.0.0.1:$HTTP_PORT$path" || true)
    if [[ $st == 200 ]]; then
      pass "If-None-Match with another ETag -> 200"
    else
      fail "If-None-Match with another ETag -> 200" "HTTP $st"
    fi
  else
    fail "GET /crl/{intermediate}.crl carries an ETag" "$(cat "$d/k.headers")"
  fi
  st=$(plain_get "/crl/not-a-ca.crl" "$d/k404")
  if [[ $st == 404 ]]; then pass "GET /crl/<unknown id>.crl -> 404"; else fail "GET /crl/<unknown id>.crl -> 404" "HTTP $st"; fi

  # --- disable the intermediate's CRL ---------------------------------------------
  api PUT "/cas/$L_INT_ID/crl" '{"enabled":false}'
  if [[ $API_STATUS != 200 || $(jb .enabled) != false ]]; then
    fail "PUT /cas/{id}/crl {\"enabled\":false} -> 200, enabled false" "$(_api_failure_details)"
    return 0
  fi
  local st_pem
  st=$(plain_get "$path" "$d/k-off.der")
  st_pem=$(plain_get "/crl/$L_INT_ID.pem" "$d/k-off.pem")
  if [[ $st == 404 && $st_pem == 404 ]]; then
    pass "with the CRL disabled, GET /crl/{id}.crl and .pem -> 404"
  else
    fail "with the CRL disabled, GET /crl/{id}.crl and .pem -> 404" "HTTP $st (.crl), $st_pem (.pem)"
  fi
  if issue_leaf "server cert while the CRL is disabled" "$L_INT_ID" \
    '{"type":"server","common_name":"crl-off.conformance.example","sans":[{"type":"dns","value":"crl-off.conformance.example"}],"validity_days":90}' \
    "$d/crl-off"; then
    check_leaf "CRL-disabled server" "$d/crl-off.pem" server "DNS:crl-off.conformance.example" "$L_INT_ID" ec-p256 nocdp
  fi
  api PUT "/cas/$L_INT_ID/crl" '{"enabled":true}'
  st=$(plain_get "$path" "$d/k-on.der")
  if [[ $API_STATUS == 200 && $st == 200 ]] && openssl crl -inform DER -in "$d/k-on.der" -CAfile "$L_INT_PEM" -noout >/dev/null 2>&1; then
    pass "re-enabling the CRL serves a signed CRL again"
  else
    fail "re-enabling the CRL serves a signed CRL again" "PUT: HTTP $API_STATUS, GET: HTTP $st"
  fi
}
check_crl_http || true

finish
