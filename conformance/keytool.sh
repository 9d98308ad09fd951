#!/usr/bin/env bash
# Java's keytool reads the keystores the server exports: for certificates with
# generated ec-p256, rsa-2048 and ed25519 keys, `keytool -list` shows exactly
# one PrivateKeyEntry in the pkcs12 export and in the jks export.
#
#   bash conformance/keytool.sh      (see lib.sh for the environment)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
conformance_init keytool keytool
start_server

# =================================================================================
section "PKCS#12 and JKS exports read with keytool"
# =================================================================================
# keytool_entries NAME FILE STORETYPE: keytool -list shows exactly one
# PrivateKeyEntry.
keytool_entries() {
  local name=$1 file=$2 type=$3 out n
  out=$(keytool -list -keystore "$file" -storetype "$type" -storepass "$EXPORT_PW" 2>&1) || true
  n=$(grep -c 'PrivateKeyEntry' <<<"$out" || true)
  if [[ $n == 1 ]] && grep -q 'Your keystore contains 1 entry' <<<"$out"; then
    pass "$name" "$(grep -E 'PrivateKeyEntry' <<<"$out")"
  else
    fail "$name" "expected 1 entry, a PrivateKeyEntry; keytool -list said:" "$out"
  fi
}

# keystores LABEL ID: the pkcs12 and jks exports of certificate ID, listed.
keystores() {
  local label=$1 id=$2 d="$WORK/exports/$1"
  mkdir -p "$d"
  export_cert "$id" "$(jq -nc --arg p "$EXPORT_PW" '{format:"pkcs12", password:$p}')" "$d/store.p12"
  expect_download "$label: pkcs12" "$d/store.p12" &&
    keytool_entries "$label: keytool -list -storetype PKCS12 shows 1 PrivateKeyEntry" "$d/store.p12" PKCS12
  export_cert "$id" "$(jq -nc --arg p "$EXPORT_PW" '{format:"jks", password:$p}')" "$d/store.jks"
  expect_download "$label: jks" "$d/store.jks" &&
    keytool_entries "$label: keytool -list -storetype JKS shows 1 PrivateKeyEntry" "$d/store.jks" JKS
}

check_keystores() {
  leaf_hierarchy || return 0
  issue_key_leaves "$WORK/leaves"
  [[ -n ${LEAF_IDS[p256]-} ]] && keystores ec-p256 "${LEAF_IDS[p256]}"
  [[ -n ${LEAF_IDS[rsa]-} ]] && keystores rsa-2048 "${LEAF_IDS[rsa]}"
  [[ -n ${LEAF_IDS[ed]-} ]] && keystores ed25519 "${LEAF_IDS[ed]}"
}
check_keystores || true

finish
