#!/usr/bin/env bash
# strongSwan's pki (Debian strongswan-pki with the curl, openssl and pkcs7
# plugins) against the EST server: --estca (root and intermediate), --est
# with --userpass, re-enrollment with --cert/--key (a TLS client
# certificate); every certificate verified (openssl verify) and linted
# (pkilint). SKIPs when pki is missing.
#
#   bash conformance/strongswan.sh      (see lib.sh for the environment)
#
# Environment (optional): VELLUM_STRONGSWAN_PKI (pki; default: on PATH).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=lib-est.sh
source "$HERE/lib-est.sh"
conformance_init strongswan
python3 -c 'import pkilint' 2>/dev/null ||
  { echo "conformance/strongswan: python3 module pkilint not found (run .ci/install-deps)" >&2; exit 2; }

# =================================================================================
section "EST (RFC 7030): strongSwan pki"
# =================================================================================
est_start || finish

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

est_strongswan || true
est_lint || true

finish
