#!/usr/bin/env bash
# lego (Debian) against the server's ACME directories: http-01, an IP address
# (RFC 8738, or newOrder refusing it as a dns identifier), tls-alpn-01, dns-01
# through the exec provider and the loopback DNS server (a wildcard too),
# revoke --reason 4 (then on the CRL), the tls-server profile when this lego
# has --profile, and External Account Binding on an intermediate of its own
# (refused without EAB, default_validity_days and allowed_domains honoured, a
# bound key refused for another account); every certificate verified with
# openssl and linted with pkilint; the inventory lists exactly what lego
# obtained.
#
#   bash conformance/lego.sh      (see lib.sh and lib-acme.sh for the environment)
#
# Environment (optional): VELLUM_LEGO (lego executable; default: on PATH).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=lib-acme.sh
source "$HERE/lib-acme.sh"
conformance_init lego
python3 -c 'import pkilint' 2>/dev/null ||
  { echo "conformance/lego: python3 module pkilint not found (run .ci/install-deps)" >&2; exit 2; }

# =================================================================================
section "ACME (RFC 8555): lego"
# =================================================================================
acme_start || finish

# --- lego -------------------------------------------------------------------------
LEGO=""
# lego_obtain LABEL DIR_URL PATH CERT_NAME SAN [EKU INT_PEM] -- LEGO_ARGS...: `lego
# --server DIR_URL --path PATH LEGO_ARGS run` (the domains are in LEGO_ARGS),
# then the certificate checks on PATH/certificates/CERT_NAME.crt.
lego_obtain() {
  local label=$1 url=$2 path=$3 cname=$4 san=$5 eku=${6-} int=${7:-$ACME_INT_PEM}
  shift 7
  [[ ${1-} == -- ]] && shift
  local out rc
  out="$path.$(tr -c 'a-zA-Z0-9\n' _ <<<"$label" | tail -c 40).out"
  mkdir -p "$path"
  acme_client "$out" env LEGO_CA_CERTIFICATES="$ROOT_PEM" "$LEGO" --server "$url" \
    --email ops@example.com --accept-tos --path "$path" "$@" run && rc=0 || rc=$?
  local crt="$path/certificates/$cname.crt"
  if ((rc == 0)) && [[ -s $crt ]]; then
    pass "$label"
    # lego saves the leaf followed by the issuer (the bundle) as .crt.
    awk '/-----BEGIN CERTIFICATE-----/{n++} n==1' "$crt" >"$path/$cname.leaf.pem"
    awk '/-----BEGIN CERTIFICATE-----/{n++} n>=2' "$crt" >"$path/$cname.chain.pem"
    acme_check_cert "$label" "$path/$cname.leaf.pem" "$path/$cname.chain.pem" "$int" "$san" "$eku"
    return 0
  fi
  fail "$label" "$(acme_client_failure "$rc" "$out")" "TXT hook log: $(tail -n 4 "$ACME_TXT/hook.log" 2>/dev/null)"
  return 1
}

acme_lego() {
  LEGO=${VELLUM_LEGO:-$(command -v lego || true)}
  if [[ -z $LEGO ]]; then
    fail "acme. lego is installed" "not on PATH (run .ci/install-deps)"
    return 0
  fi
  local ver; ver=$("$LEGO" --version 2>&1 | head -n1)
  local pkg; pkg=$(dpkg-query -W -f='${Version}' lego 2>/dev/null || true)
  note "$ver${pkg:+ (Debian package $pkg)} ($LEGO)"
  local d="$ACME_WORK/lego" runhelp
  runhelp=$("$LEGO" run --help 2>&1; "$LEGO" --help 2>&1)
  local p="$d/default"

  # --- http-01 ---------------------------------------------------------------------
  local http=(--http --http.port "127.0.0.1:$VA_HTTP_PORT")
  local hname="lego-http.$ACME_ZONE"
  lego_obtain "acme. lego http-01 -d $hname" "$ACME_DIR_URL" "$p" "$hname" "DNS:$hname" "" "" -- \
    --domains "$hname" "${http[@]}"
  local revoke_ok=$?

  # --- an IP address (RFC 8738) -----------------------------------------------------------
  # Newer lego sends {"type":"ip"} and should get a certificate; older ones
  # (Debian 12's 4.9.1) send {"type":"dns","value":"127.0.0.1"}, which is not a
  # domain name (RFC 8555 9.7.7, RFC 8738 3): newOrder must refuse it.
  local out="$d/ip.out" rc ipname="acme. lego -d 127.0.0.1: a certificate for IP 127.0.0.1, or newOrder refuses it as a dns identifier"
  acme_client "$out" env LEGO_CA_CERTIFICATES="$ROOT_PEM" "$LEGO" --server "$ACME_DIR_URL" \
    --email ops@example.com --accept-tos --path "$p" --domains 127.0.0.1 "${http[@]}" run && rc=0 || rc=$?
  if ((rc == 0)) && [[ -s $p/certificates/127.0.0.1.crt ]]; then
    pass "$ipname" "a certificate"
    awk '/-----BEGIN CERTIFICATE-----/{n++} n==1' "$p/certificates/127.0.0.1.crt" >"$p/127.0.0.1.leaf.pem"
    awk '/-----BEGIN CERTIFICATE-----/{n++} n>=2' "$p/certificates/127.0.0.1.crt" >"$p/127.0.0.1.chain.pem"
    acme_check_cert "acme. lego -d 127.0.0.1" "$p/127.0.0.1.leaf.pem" "$p/127.0.0.1.chain.pem" \
      "$ACME_INT_PEM" "IP Address:127.0.0.1"
  elif ((rc != 0)) && grep -qE 'new-order :: urn:ietf:params:acme:error:(rejectedIdentifier|malformed)' "$out"; then
    pass "$ipname" "$(grep -m1 -oE 'urn:ietf:params:acme:error:.*' "$out" | head -c 300)"
  else
    local why=()
    grep -q 'The server validated our request' "$out" &&
      why+=("the server accepted {\"type\":\"dns\",\"value\":\"127.0.0.1\"} at newOrder (an IP literal is not a DNS name: RFC 8555 9.7.7, RFC 8738 3) and validated it; it refused only at finalize")
    fail "$ipname" "${why[@]}" "$(acme_client_failure "$rc" "$out")"
  fi

  # --- tls-alpn-01 ---------------------------------------------------------------------
  local tname="lego-tls.$ACME_ZONE"
  lego_obtain "acme. lego tls-alpn-01 -d $tname" "$ACME_DIR_URL" "$p" "$tname" "DNS:$tname" "" "" -- \
    --domains "$tname" --tls --tls.port "127.0.0.1:$VA_TLS_PORT"

  # --- dns-01 through the exec provider and the loopback DNS server ----------------------
  local dns=(--dns exec --dns.resolvers "127.0.0.1:$VA_DNS_PORT")
  if grep -q -- '--dns.disable-cp' <<<"$runhelp"; then
    dns+=(--dns.disable-cp)
  elif grep -q -- '--dns.propagation-disable-ans' <<<"$runhelp"; then
    dns+=(--dns.propagation-disable-ans)
  fi
  export EXEC_PATH="$ACME_HELPERS/dns-hook.sh" VELLUM_ACME_TXT_DIR="$ACME_TXT"
  # The exec provider solves one name at a time, waiting EXEC_SEQUENCE_INTERVAL
  # (default 60 s) in between: 1 s is plenty for a local file.
  export EXEC_PROPAGATION_TIMEOUT=30 EXEC_POLLING_INTERVAL=1 EXEC_SEQUENCE_INTERVAL=1
  local dname="lego-dns.$ACME_ZONE"
  lego_obtain "acme. lego dns-01 (exec provider) -d $dname" "$ACME_DIR_URL" "$p" "$dname" "DNS:$dname" "" "" -- \
    --domains "$dname" "${dns[@]}"
  local wname="wild.$ACME_ZONE"
  lego_obtain "acme. lego dns-01 wildcard -d $wname -d *.$wname" "$ACME_DIR_URL" "$p" "$wname" \
    "DNS:$wname, DNS:*.$wname" "" "" -- --domains "$wname" --domains "*.$wname" "${dns[@]}"
  unset EXEC_PATH VELLUM_ACME_TXT_DIR EXEC_PROPAGATION_TIMEOUT EXEC_POLLING_INTERVAL EXEC_SEQUENCE_INTERVAL
  if [[ -n $(find "$ACME_TXT" -maxdepth 1 -name '_acme-challenge.*' -size +0 2>/dev/null) ]]; then
    note "TXT records left behind by the hook's cleanup: $(ls "$ACME_TXT")"
  fi

  # --- revoke ----------------------------------------------------------------------------
  if ((revoke_ok == 0)); then
    local out="$d/revoke.out" rc
    cp "$p/$hname.leaf.pem" "$d/revoked.pem"
    acme_client "$out" env LEGO_CA_CERTIFICATES="$ROOT_PEM" "$LEGO" --server "$ACME_DIR_URL" \
      --email ops@example.com --accept-tos --path "$p" --domains "$hname" revoke --reason 4 --keep && rc=0 || rc=$?
    if ((rc == 0)); then
      pass "acme. lego revoke --reason 4 (superseded) -d $hname" "serial $(cert_serial "$d/revoked.pem")"
      acme_check_revoked "acme. lego revoke" "$BOOT_INT_ID" "$ACME_INT_PEM" "$d/revoked.pem" "Superseded"
    else
      fail "acme. lego revoke --reason 4 (superseded) -d $hname" "$(acme_client_failure "$rc" "$out")"
    fi
  else
    fail "acme. lego revoke" "no certificate from the http-01 run to revoke"
  fi

  # --- profile -----------------------------------------------------------------------------
  if grep -q -- '--profile' <<<"$runhelp"; then
    local pname="lego-profile.$ACME_ZONE"
    lego_obtain "acme. lego --profile tls-server -d $pname" "$ACME_DIR_URL" "$p" "$pname" "DNS:$pname" "" "" -- \
      --domains "$pname" "${http[@]}" --profile tls-server
  else
    skip "acme. lego --profile tls-server" "$ver${pkg:+ (Debian $pkg)} has no --profile option (added in lego v4.23)"
  fi

  acme_eab
}


# --- External Account Binding on an intermediate of our own ------------------------------
acme_eab() {
  local int_id="" int_pem="$ACME_WORK/eab-int.pem"
  # Setup through the admin API (its answers are checked in tests/it: acme.rs,
  # inventory_lifecycle.rs); a refusal FAILs.
  api POST /cas "$(jq -nc --arg p "$BOOT_ROOT_ID" \
    '{kind:"intermediate", parent_id:$p, common_name:"Conformance ACME EAB Intermediate", key_algorithm:"ec-p256", validity_days:1825}')"
  quietly expect_ca "acme. EAB: buy an intermediate under the bootstrap root -> 201 pending" 201 pending || return 0
  int_id=$(jb .id)
  api POST "/cas/$int_id/enable" '{"mode":"generate"}'
  quietly expect_ca "acme. EAB: enable it (generate) -> 200 enabled" 200 enabled "$int_pem" || return 0
  api POST "/cas/$BOOT_ROOT_ID/quota/assign" "$(jq -nc --arg i "$int_id" '{intermediate_id:$i, count:10}')"
  quietly expect "acme. EAB: quota/assign 10 to it" 200 || return 0

  local settings
  settings=$(jq -nc --arg d "eab.$ACME_ZONE" \
    '{enabled:true, require_eab:true, allowed_domains:[$d], allow_ip:false, challenges:["http-01","dns-01"], default_validity_days:30}')
  api PUT "/cas/$int_id/acme" "$settings"
  if [[ $API_STATUS != 200 ]]; then
    fail "acme. EAB: PUT /cas/{id}/acme require_eab, allowed_domains, challenges, default_validity_days" \
      "sent $settings" "$(_api_failure_details)"
    return 0
  fi
  local url="https://localhost:$HTTPS_PORT/acme/$int_id/directory" dirjson
  dirjson=$(curl_https -f "$url" 2>&1)
  if jq -e '.meta.externalAccountRequired == true' <<<"$dirjson" >/dev/null 2>&1; then
    pass "acme. EAB: GET /acme/{id}/directory has meta.externalAccountRequired true"
  else
    fail "acme. EAB: GET /acme/{id}/directory has meta.externalAccountRequired true" "$dirjson"
  fi
  api POST "/cas/$int_id/acme/eab"
  local kid hmac
  kid=$(jb '.kid // empty') hmac=$(jb '.hmac_key // empty')
  if [[ $API_STATUS != 201 || -z $kid || -z $hmac ]]; then
    fail "acme. EAB: POST /cas/{id}/acme/eab -> 201 {kid, hmac_key (base64url)}" "$(_api_failure_details)"
    return 0
  fi

  local p="$ACME_WORK/lego/eab" name="lego.eab.$ACME_ZONE" out rc
  local http=(--http --http.port "127.0.0.1:$VA_HTTP_PORT")
  # Without EAB there is no account (RFC 8555 7.3.4). lego reads
  # meta.externalAccountRequired and stops before newAccount; were it to send
  # one, the server must refuse it with externalAccountRequired.
  out="$ACME_WORK/lego/no-eab.out"
  mkdir -p "$ACME_WORK/lego/no-eab"
  acme_client "$out" env LEGO_CA_CERTIFICATES="$ROOT_PEM" "$LEGO" --server "$url" --email ops@example.com \
    --accept-tos --path "$ACME_WORK/lego/no-eab" --domains "$name" "${http[@]}" run && rc=0 || rc=$?
  if ((rc != 0)) && grep -qE 'externalAccountRequired|requires External Account Binding' "$out"; then
    pass "acme. EAB: lego without --eab gets no account" "$(grep -m1 -oE 'urn:ietf:params:acme:error:.*|Server requires External Account Binding.*' "$out" | head -c 300)"
  else
    fail "acme. EAB: lego without --eab gets no account" "$(acme_client_failure "$rc" "$out")"
  fi

  if lego_obtain "acme. EAB: lego --eab --kid --hmac, http-01 -d $name" "$url" "$p" "$name" "DNS:$name" "" "$int_pem" -- \
    --eab --kid "$kid" --hmac "$hmac" --domains "$name" "${http[@]}"; then
    # default_validity_days 30.
    local nb na days
    nb=$(date -d "$(openssl x509 -in "$p/$name.leaf.pem" -noout -startdate | cut -d= -f2)" +%s)
    na=$(date -d "$(openssl x509 -in "$p/$name.leaf.pem" -noout -enddate | cut -d= -f2)" +%s)
    days=$(((na - nb + 43200) / 86400))
    if ((days == 30)); then
      pass "acme. EAB: certificate validity follows default_validity_days (30)"
    else
      fail "acme. EAB: certificate validity follows default_validity_days (30)" \
        "notBefore..notAfter is $((na - nb)) s (~$days days)"
    fi
    # allowed_domains: a name outside eab.vellum.test is rejected at newOrder.
    local other="outside.$ACME_ZONE"
    out="$ACME_WORK/lego/outside.out"
    acme_client "$out" env LEGO_CA_CERTIFICATES="$ROOT_PEM" "$LEGO" --server "$url" --email ops@example.com \
      --accept-tos --path "$p" --eab --kid "$kid" --hmac "$hmac" --domains "$other" "${http[@]}" run && rc=0 || rc=$?
    if ((rc != 0)) && grep -q 'rejectedIdentifier' "$out"; then
      pass "acme. EAB: a name outside allowed_domains is refused with rejectedIdentifier" \
        "$(grep -m1 -o 'urn:ietf:params:acme:error:[A-Za-z]*.*' "$out" | head -c 300)"
    else
      fail "acme. EAB: a name outside allowed_domains is refused with rejectedIdentifier" "$(acme_client_failure "$rc" "$out")"
    fi
  fi
  # Reusing an EAB key for a second account is refused (the binding is one-time).
  out="$ACME_WORK/lego/eab-reuse.out"
  mkdir -p "$ACME_WORK/lego/eab-reuse"
  acme_client "$out" env LEGO_CA_CERTIFICATES="$ROOT_PEM" "$LEGO" --server "$url" --email other@example.com \
    --accept-tos --path "$ACME_WORK/lego/eab-reuse" --eab --kid "$kid" --hmac "$hmac" --domains "$name" "${http[@]}" run && rc=0 || rc=$?
  if ((rc != 0)) && grep -qE 'urn:ietf:params:acme:error:(unauthorized|malformed|externalAccountRequired)' "$out"; then
    pass "acme. EAB: an EAB key already bound to an account is refused for another" \
      "$(grep -m1 -o 'urn:ietf:params:acme:error:[A-Za-z]*.*' "$out" | head -c 300)"
  else
    fail "acme. EAB: an EAB key already bound to an account is refused for another" "$(acme_client_failure "$rc" "$out")"
  fi
}


acme_lego || true
acme_inventory || true

finish
