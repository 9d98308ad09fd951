#!/usr/bin/env bash
# The Rust EST client usg-est-client (est-enroll, cargo install usg-est-client
# --features cli) against the EST server: enroll with HTTP Basic, renew with a
# client certificate through a CA label; the certificates it got are found in
# the inventory (same SHA-256 thumbprint), verified (openssl verify) and
# linted (pkilint). SKIPs when est-enroll is missing.
#
#   bash conformance/usg-est.sh      (see lib.sh for the environment)
#
# Environment (optional): VELLUM_EST_ENROLL (est-enroll executable; default: on
# PATH or in ~/.cargo/bin).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=lib-est.sh
source "$HERE/lib-est.sh"
conformance_init usg-est
python3 -c 'import pkilint' 2>/dev/null ||
  { echo "conformance/usg-est: python3 module pkilint not found (run .ci/install-deps)" >&2; exit 2; }

# =================================================================================
section "EST (RFC 7030): usg-est-client"
# =================================================================================
est_start || finish

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
  quietly expect "EST. PUT /cas/{id}/est {label} on the default CA" 200
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


est_usg_client || true
est_lint || true

finish
