#!/usr/bin/env bash
# Exports read back with openssl: for certificates with generated ec-p256,
# rsa-2048 and ed25519 keys, the pem bundle (openssl x509 + pkey), pem without
# chain, der, pkcs12 default (AES-256) and legacy (3DES) with openssl pkcs12
# (a wrong password refused), pkcs8 encrypted (openssl pkey -passin) and not;
# and the pem export of a CSR-issued certificate (no key).
#
#   bash conformance/openssl-export.sh      (see lib.sh for the environment)
#
# keytool reads the pkcs12 and jks exports in keytool.sh; the refusals (no
# password, unknown format, key formats without a key) are checked in
# tests/it (certificates.rs, inventory_lifecycle.rs).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
conformance_init openssl-export
start_server

# =================================================================================
section "exports read with openssl"
# =================================================================================
# export_key_formats LABEL ID LEAF_PEM: pem bundle, der, pkcs12 (default and
# legacy) and pkcs8 (encrypted and not) of a certificate whose key the server
# holds, each read back with openssl (keytool reads pkcs12 and jks in keytool.sh).
export_key_formats() {
  local label=$1 id=$2 leaf=$3 d="$WORK/exports/$1" out
  mkdir -p "$d"
  local want_pub; want_pub=$(pubkey_of_cert "$leaf")

  # --- pem bundle: leaf, chain, key --------------------------------------------
  export_cert "$id" '{"format":"pem"}' "$d/bundle.pem"
  if expect_download "$label: pem bundle" "$d/bundle.pem"; then
    local problems=()
    [[ $(cert_fp "$d/bundle.pem") == "$(cert_fp "$leaf")" ]] || problems+=("openssl x509: first certificate is not the leaf")
    [[ $(count_pem "$d/bundle.pem" CERTIFICATE) == 3 ]] ||
      problems+=("expected 3 certificates (leaf, intermediate, root), found $(count_pem "$d/bundle.pem" CERTIFICATE)")
    openssl pkey -in "$d/bundle.pem" -passin pass: -noout 2>/dev/null || problems+=("openssl pkey cannot read a private key")
    [[ -n $want_pub && $(pubkey_of_key "$d/bundle.pem") == "$want_pub" ]] ||
      problems+=("openssl pkey -pubout differs from openssl x509 -pubkey: key does not match the certificate")
    if ((${#problems[@]})); then
      fail "$label: pem bundle: openssl x509 + openssl pkey read it; key matches the certificate" "${problems[@]}"
    else
      pass "$label: pem bundle: openssl x509 + openssl pkey read it; key matches the certificate"
    fi
  fi
  export_cert "$id" '{"format":"pem","include_chain":false}' "$d/leaf-only.pem"
  if expect_download "$label: pem with include_chain false" "$d/leaf-only.pem"; then
    if [[ $(count_pem "$d/leaf-only.pem" CERTIFICATE) == 1 && $(cert_fp "$d/leaf-only.pem") == "$(cert_fp "$leaf")" ]]; then
      pass "$label: pem with include_chain false has only the leaf (and key)"
    else
      fail "$label: pem with include_chain false has only the leaf (and key)" "$(grep -- '-----BEGIN' "$d/leaf-only.pem")"
    fi
  fi

  # --- der -------------------------------------------------------------------------
  export_cert "$id" '{"format":"der"}' "$d/leaf.der"
  if expect_download "$label: der" "$d/leaf.der"; then
    if cmp -s "$d/leaf.der" <(openssl x509 -in "$leaf" -outform DER); then
      pass "$label: der export is the leaf's DER encoding"
    else
      fail "$label: der export is the leaf's DER encoding" "$(head -c 100 "$d/leaf.der" | od -An -tx1 | head -n 2)"
    fi
  fi

  # --- pkcs12, default and legacy ---------------------------------------------------
  local legacy
  for legacy in false true; do
    local f="$d/store-$legacy.p12" what="pkcs12"
    [[ $legacy == true ]] && what="pkcs12 legacy"
    export_cert "$id" "$(jq -nc --arg p "$EXPORT_PW" --argjson l "$legacy" '{format:"pkcs12", password:$p, legacy:$l}')" "$f"
    expect_download "$label: $what" "$f" || continue
    if out=$(openssl pkcs12 -info -in "$f" -passin "pass:$EXPORT_PW" -noenc 2>&1); then
      local problems=() algs
      algs=$(grep -E '^(MAC|PKCS7 Encrypted data|Shrouded Keybag)' <<<"$out" | sort -u)
      grep -q -- '-----BEGIN PRIVATE KEY-----' <<<"$out" || problems+=("no private key inside")
      [[ $(grep -c -- '-----BEGIN CERTIFICATE-----' <<<"$out") == 3 ]] || problems+=("expected 3 certificates inside")
      [[ $(openssl pkcs12 -in "$f" -passin "pass:$EXPORT_PW" -nocerts -noenc 2>/dev/null | openssl pkey -pubout 2>/dev/null) == "$want_pub" ]] ||
        problems+=("the key inside does not match the certificate")
      if [[ $legacy == true ]]; then
        grep -q 'TripleDES' <<<"$algs" || problems+=("legacy should use 3DES (pbeWithSHA1And3-KeyTripleDES-CBC)")
      else
        grep -q 'AES-256' <<<"$algs" || problems+=("default should use PBES2/AES-256")
      fi
      if ((${#problems[@]})); then
        fail "$label: $what: openssl pkcs12 -info -passin -noenc reads it" "${problems[@]}" "$algs"
      else
        pass "$label: $what: openssl pkcs12 -info -passin -noenc reads it (key + 3 certificates)" "$algs"
      fi
    else
      fail "$label: $what: openssl pkcs12 -info -passin -noenc reads it" "$out"
    fi
    if [[ $legacy == false ]]; then
      if openssl pkcs12 -info -in "$f" -passin pass:wrong-password -noenc >/dev/null 2>&1; then
        fail "$label: pkcs12 with a wrong password is refused by openssl"
      else
        pass "$label: pkcs12 with a wrong password is refused by openssl"
      fi
    fi
  done

  # --- pkcs8, encrypted and not ---------------------------------------------------------
  export_cert "$id" "$(jq -nc --arg p "$EXPORT_PW" '{format:"pkcs8", password:$p}')" "$d/key-enc.pem"
  if expect_download "$label: pkcs8 encrypted" "$d/key-enc.pem"; then
    local problems=()
    grep -q -- '-----BEGIN ENCRYPTED PRIVATE KEY-----' "$d/key-enc.pem" || problems+=("not an ENCRYPTED PRIVATE KEY PEM")
    [[ -n $want_pub && $(pubkey_of_key "$d/key-enc.pem" "$EXPORT_PW") == "$want_pub" ]] ||
      problems+=("openssl pkey -passin pass:PW cannot read it, or it is not the certificate's key")
    openssl pkey -in "$d/key-enc.pem" -passin pass:wrong-password -noout >/dev/null 2>&1 &&
      problems+=("openssl pkey accepted a wrong password")
    if ((${#problems[@]})); then
      fail "$label: encrypted pkcs8: openssl pkey -passin reads it, a wrong password fails" "${problems[@]}"
    else
      pass "$label: encrypted pkcs8: openssl pkey -passin reads it, a wrong password fails"
    fi
  fi
  export_cert "$id" '{"format":"pkcs8"}' "$d/key.pem"
  if expect_download "$label: pkcs8" "$d/key.pem"; then
    if grep -q -- '-----BEGIN PRIVATE KEY-----' "$d/key.pem" && [[ $(pubkey_of_key "$d/key.pem") == "$want_pub" ]]; then
      pass "$label: unencrypted pkcs8 is the certificate's key"
    else
      fail "$label: unencrypted pkcs8 is the certificate's key" "$(head -n 1 "$d/key.pem")"
    fi
  fi
}

check_exports() {
  local d="$WORK/leaves"
  leaf_hierarchy || return 0
  issue_key_leaves "$d"
  [[ -n ${LEAF_IDS[p256]-} ]] && export_key_formats ec-p256 "${LEAF_IDS[p256]}" "$d/p256.pem"
  [[ -n ${LEAF_IDS[rsa]-} ]] && export_key_formats rsa-2048 "${LEAF_IDS[rsa]}" "$d/rsa.pem"
  [[ -n ${LEAF_IDS[ed]-} ]] && export_key_formats ed25519 "${LEAF_IDS[ed]}" "$d/ed.pem"

  # --- a certificate whose key the server never saw ----------------------------
  make_csr "$d/device1.key" "$d/device1.csr" /CN=device1 ||
    { fail "openssl req -new -newkey ec (P-256) -subj /CN=device1 makes a CSR"; return 0; }
  quietly issue_leaf "client cert from a CSR" "$L_INT_ID" "$(csr_client_body "$d/device1.csr")" "$d/csr" || return 0
  export_cert "$LEAF_ID" '{"format":"pem"}' "$WORK/exports/csr.pem"
  if [[ $API_STATUS == 200 && $(cert_fp "$WORK/exports/csr.pem") == "$(cert_fp "$d/csr.pem")" ]] &&
    ! grep -q 'PRIVATE KEY' "$WORK/exports/csr.pem"; then
    pass "pem export of the CSR-issued certificate: certificates, no key"
  else
    fail "pem export of the CSR-issued certificate: certificates, no key" "HTTP $API_STATUS" \
      "$(grep -- '-----BEGIN' "$WORK/exports/csr.pem")"
  fi
}
check_exports || true

finish
