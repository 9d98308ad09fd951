#!/usr/bin/env bash
# pkilint (RFC 5280 PKIX profile) on what the server makes: the bootstrap root
# and intermediate and the HTTPS server certificate, roots and intermediates of
# every key algorithm, CAs and a leaf with every subject field, leaves of every
# kind (generated ec-p256 / rsa-2048 / ed25519 keys, from an openssl-made CSR,
# without CRL distribution point), each with its issuer/subject pair lint; and
# CRLs: empty, listing revoked leaves, ARLs listing a revoked intermediate.
# FATAL/ERROR/WARNING findings fail a check; NOTICE/INFO are listed.
#
#   bash conformance/pkilint.sh      (see lib.sh for the environment)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
conformance_init pkilint
python3 -c 'import pkilint' 2>/dev/null ||
  { echo "conformance/pkilint: python3 module pkilint not found (run .ci/install-deps)" >&2; exit 2; }
start_server
echo "pkilint $(python3 -c 'import importlib.metadata as m; print(m.version("pkilint"))');" \
  "FATAL/ERROR/WARNING fail a check, NOTICE/INFO are listed"

# lint_pair LABEL ISSUER_LABEL ISSUER_PEM SUBJECT_PEM: lint_pkix_cert on the
# subject, lint_pkix_signer_signee_cert_chain on the pair.
lint_pair() {
  pkilint_cert "lint_pkix_cert: $1" "$4"
  pkilint_chain "lint_pkix_signer_signee_cert_chain: $2 -> $1" "$3" "$4"
}

# crl_listing CA_ID SERIAL OUT_PREFIX: fetches the CA's CRL (OUT_PREFIX.der,
# .pem) until it lists SERIAL (a few seconds at most); FAILs otherwise.
crl_listing() {
  local ca=$1 serial=$2 out=$3 text=""
  for _ in $(seq 1 40); do
    if fetch_crl_pem "$ca" "$out"; then
      text=$(openssl crl -in "$out.pem" -noout -text 2>&1)
      grep -qiE "Serial Number: 0*$serial\$" <<<"$text" && return 0
    fi
    sleep 0.1
  done
  fail "GET /crl/$ca.crl lists serial $serial (to lint it)" "$text"
}

# fetch_crl_or_fail CA_ID OUT_PREFIX
fetch_crl_or_fail() {
  fetch_crl_pem "$1" "$2" || fail "GET /crl/$1.crl returns a DER CRL (to lint it)" "$(head -c 300 "$2.der" 2>/dev/null)"
}

# =================================================================================
section "the bootstrap hierarchy and the HTTPS server certificate"
# =================================================================================
lint_bootstrap() {
  bootstrap_ids || return 0
  pkilint_cert "lint_pkix_cert: bootstrap root" "$ROOT_PEM"
  pkilint_cert "lint_pkix_cert: bootstrap intermediate" "$CERTS/boot-int.pem"
  pkilint_chain "lint_pkix_signer_signee_cert_chain: bootstrap root -> intermediate" "$ROOT_PEM" "$CERTS/boot-int.pem"
  # The leaf the HTTPS listener presents.
  openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername localhost -showcerts </dev/null 2>/dev/null |
    awk '/-----BEGIN CERTIFICATE-----/{n++} n==1{print} /-----END CERTIFICATE-----/{if(n==1) exit}' >"$CERTS/https-leaf.pem" || true
  if openssl x509 -in "$CERTS/https-leaf.pem" -noout 2>/dev/null; then
    lint_pair "HTTPS server certificate" "bootstrap intermediate" "$CERTS/boot-int.pem" "$CERTS/https-leaf.pem"
  else
    fail "openssl s_client shows the HTTPS server certificate (to lint it)"
  fi
  if fetch_crl_or_fail "$BOOT_ROOT_ID" "$CERTS/boot-root-crl"; then
    pkilint_crl "lint_crl -t ARL -p PKIX: bootstrap root CRL" "$CERTS/boot-root-crl.der" ARL
  fi
  if fetch_crl_or_fail "$BOOT_INT_ID" "$CERTS/boot-int-crl"; then
    pkilint_crl "lint_crl -t CRL -p PKIX: bootstrap intermediate CRL" "$CERTS/boot-int-crl.der" CRL
  fi
}
lint_bootstrap || true

# =================================================================================
section "CAs of every key algorithm"
# =================================================================================
lint_cas() {
  # --- three levels: root (ec-p384) -> bundled intermediate + second (rsa-2048),
  # the second revoked: the root's CRL (an ARL) lists it.
  if quietly buy_root "three-level" ec-p384; then
    local rid=$NEW_ROOT_ID bid=$NEW_BUNDLED_ID
    if quietly enable_generate "three-level root" "$rid" "$CERTS/h-root.pem"; then
      pkilint_cert "lint_pkix_cert: three-level root (ec-p384)" "$CERTS/h-root.pem"
      quietly enable_generate "three-level bundled intermediate" "$bid" "$CERTS/h-int1.pem" &&
        lint_pair "three-level bundled intermediate" "three-level root" "$CERTS/h-root.pem" "$CERTS/h-int1.pem"
      if quietly buy_intermediate "three-level" "$rid" rsa-2048 &&
        quietly enable_generate "three-level second intermediate" "$NEW_INT_ID" "$CERTS/h-int2.pem"; then
        lint_pair "three-level second intermediate (rsa-2048)" "three-level root" "$CERTS/h-root.pem" "$CERTS/h-int2.pem"
        api POST "/cas/$NEW_INT_ID/revoke" '{"reason":"keyCompromise"}'
        if quietly expect "revoke the second intermediate (keyCompromise)" 200 &&
          crl_listing "$rid" "$(cert_serial "$CERTS/h-int2.pem")" "$CERTS/h-root-crl"; then
          pkilint_crl "lint_crl -t ARL -p PKIX: three-level root CRL listing a revoked intermediate" "$CERTS/h-root-crl.der" ARL
        fi
      fi
    fi
  fi

  # --- every key algorithm: root + bundled intermediate + explicit intermediate
  local alg
  for alg in rsa-2048 rsa-3072 rsa-4096 ec-p256 ec-p384 ed25519; do
    quietly buy_root "$alg" "$alg" || continue
    local rid=$NEW_ROOT_ID bid=$NEW_BUNDLED_ID
    quietly enable_generate "$alg root" "$rid" "$CERTS/$alg-root.pem" || continue
    pkilint_cert "lint_pkix_cert: $alg root" "$CERTS/$alg-root.pem"
    quietly enable_generate "$alg bundled intermediate" "$bid" "$CERTS/$alg-bint.pem" &&
      lint_pair "$alg bundled intermediate ($(key_algorithm_of "$CERTS/$alg-bint.pem"))" "$alg root" \
        "$CERTS/$alg-root.pem" "$CERTS/$alg-bint.pem"
    quietly buy_intermediate "$alg" "$rid" "$alg" &&
      quietly enable_generate "$alg intermediate" "$NEW_INT_ID" "$CERTS/$alg-int.pem" &&
      lint_pair "$alg intermediate" "$alg root" "$CERTS/$alg-root.pem" "$CERTS/$alg-int.pem"
  done
}
lint_cas || true

# =================================================================================
section "every subject field: CAs, a leaf, their CRLs"
# =================================================================================
lint_full_subject() {
  local d="$WORK/full" subject='organization:"Conformance Full", organizational_unit:"Suite", country:"DE", state:"Berlin", locality:"Berlin"'
  mkdir -p "$d"
  api POST /cas "$(jq -nc "{kind:\"root\", common_name:\"Conformance Full Subject Root\", key_algorithm:\"ec-p384\", quota:5, $subject}")"
  quietly expect_ca "buy a root with every subject field -> 201 pending" 201 pending || return 0
  local rid iid; rid=$(jb .id) iid=$(jb '.intermediate_id // empty')
  quietly enable_generate "full-subject root" "$rid" "$d/root.pem" || return 0
  quietly enable_generate "full-subject intermediate" "$iid" "$d/int.pem" || return 0
  pkilint_cert "lint_pkix_cert: root (full subject)" "$d/root.pem"
  pkilint_cert "lint_pkix_cert: intermediate (full subject)" "$d/int.pem"
  pkilint_chain "lint_pkix_signer_signee_cert_chain: root (full subject) -> intermediate (full subject)" "$d/root.pem" "$d/int.pem"
  api POST "/cas/$rid/quota/assign" "$(jq -nc --arg i "$iid" '{intermediate_id:$i, count:3}')"
  quietly expect "quota/assign 3 to the full-subject intermediate" 200 || return 0
  local saved_int=$L_INT_PEM_FOR_CHAIN saved_root=$L_ROOT_PEM_FOR_CHAIN
  L_INT_PEM_FOR_CHAIN=$d/int.pem L_ROOT_PEM_FOR_CHAIN=$d/root.pem
  if quietly issue_leaf "server cert with every subject field" "$iid" \
    "$(jq -nc "{type:\"server\", common_name:\"full.conformance.example\", sans:[{type:\"dns\", value:\"full.conformance.example\"}, {type:\"ip\", value:\"192.0.2.20\"}], validity_days:90, $subject}")" \
    "$d/leaf"; then
    lint_pair "server cert (full subject)" "intermediate (full subject)" "$d/int.pem" "$d/leaf.pem"
    api POST "/certificates/$LEAF_ID/revoke" '{"reason":"keyCompromise"}'
    if quietly expect "revoke the full-subject leaf" 200 && crl_listing "$iid" "$(cert_serial "$d/leaf.pem")" "$d/int-crl"; then
      pkilint_crl "lint_crl -t CRL -p PKIX: intermediate CRL (full issuer name)" "$d/int-crl.der" CRL
    fi
  fi
  L_INT_PEM_FOR_CHAIN=$saved_int L_ROOT_PEM_FOR_CHAIN=$saved_root
  fetch_crl_or_fail "$rid" "$d/root-crl" &&
    pkilint_crl "lint_crl -t ARL -p PKIX: root CRL (full issuer name)" "$d/root-crl.der" ARL
}
lint_full_subject || true

# =================================================================================
section "leaf certificates and CRLs"
# =================================================================================
lint_leaves() {
  local d="$WORK/leaves" which label
  mkdir -p "$d"
  leaf_hierarchy || return 0
  for which in p256 rsa ed nocrl; do
    case $which in
      p256) label="server cert, generated ec-p256" ;;
      rsa) label="server cert, generated rsa-2048" ;;
      ed) label="server cert, generated ed25519" ;;
      nocrl) label="server cert without CRL distribution point" ;;
    esac
    quietly issue_leaf "$label" "$L_INT_ID" "$(leaf_body "$which")" "$d/$which" &&
      lint_pair "$label" "intermediate" "$L_INT_PEM" "$d/$which.pem"
  done
  if make_csr "$d/device1.key" "$d/device1.csr" /CN=device1; then
    quietly issue_leaf "client cert from a CSR" "$L_INT_ID" "$(csr_client_body "$d/device1.csr")" "$d/csr" &&
      lint_pair "client cert from CSR" "intermediate" "$L_INT_PEM" "$d/csr.pem"
  else
    fail "openssl req -new -newkey ec (P-256) -subj /CN=device1 makes a CSR"
  fi

  # --- CRLs: empty, one entry, two entries; the root's, empty and with a CA --------
  fetch_crl_or_fail "$L_INT_ID" "$d/crl0" &&
    pkilint_crl "lint_crl -t CRL -p PKIX: intermediate CRL before revocation" "$d/crl0.der" CRL
  local reason victim n=0
  for reason in keyCompromise superseded; do
    n=$((n + 1))
    victim="$d/victim$n"
    quietly issue_leaf "server cert to revoke ($reason)" "$L_INT_ID" \
      "$(jq -nc --arg cn "revoked$n.conformance.example" '{type:"server", common_name:$cn, sans:[{type:"dns", value:$cn}], validity_days:90}')" \
      "$victim" || continue
    api POST "/certificates/$LEAF_ID/revoke" "$(jq -nc --arg r "$reason" '{reason:$r}')"
    quietly expect "revoke a leaf ($reason)" 200 || continue
    crl_listing "$L_INT_ID" "$(cert_serial "$victim.pem")" "$d/crl$n" || continue
    if ((n == 1)); then
      pkilint_crl "lint_crl -t CRL -p PKIX: intermediate CRL listing a revoked leaf" "$d/crl$n.der" CRL
    else
      pkilint_crl "lint_crl -t CRL -p PKIX: intermediate CRL with two entries" "$d/crl$n.der" CRL
    fi
  done
  fetch_crl_or_fail "$L_ROOT_ID" "$d/rootcrl0" &&
    pkilint_crl "lint_crl -t ARL -p PKIX: root CRL (no entries)" "$d/rootcrl0.der" ARL
  if quietly buy_intermediate "revoked" "$L_ROOT_ID" ec-p256 &&
    quietly enable_generate "intermediate to revoke" "$NEW_INT_ID" "$d/qint.pem"; then
    api POST "/cas/$NEW_INT_ID/revoke" '{"reason":"cessationOfOperation"}'
    quietly expect "revoke an intermediate (cessationOfOperation)" 200 &&
      crl_listing "$L_ROOT_ID" "$(cert_serial "$d/qint.pem")" "$d/rootcrl1" &&
      pkilint_crl "lint_crl -t ARL -p PKIX: root CRL listing a revoked intermediate" "$d/rootcrl1.der" ARL
  fi
}
lint_leaves || true

finish
