#!/usr/bin/env bash
# CA hierarchies judged by openssl: roots and intermediates of every key
# algorithm bought and enabled through the admin API (openssl verify, the key
# openssl reads), CA certificates made by openssl uploaded (and the invalid
# ones refused), and a revoked intermediate on its root's CRL.
#
#   bash conformance/openssl-ca.sh      (see lib.sh for the environment)
#
# The admin API's own answers (201 pending, 200 enabled, 409 for an
# intermediate of a pending root, quota arithmetic) are setup here: a refusal
# FAILs, a success is checked in tests/it/hierarchy.rs.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
conformance_init openssl-ca
start_server

# =================================================================================
section "hierarchies built through the admin API"
# =================================================================================
H_ROOT_ID="" H_INT2_ID=""
check_hierarchies() {
  # --- three levels: root (ec-p384) -> bundled intermediate + second (rsa-2048)
  quietly buy_root "three-level" ec-p384 || return 0
  H_ROOT_ID=$NEW_ROOT_ID
  local int1=$NEW_BUNDLED_ID
  enable_generate_alg "three-level root" "$H_ROOT_ID" "$CERTS/h-root.pem" ec-p384 || return 0
  verify_chain "three-level root is self-signed and valid" "$CERTS/h-root.pem" "$CERTS/h-root.pem"
  quietly enable_generate "three-level bundled intermediate" "$int1" "$CERTS/h-int1.pem" &&
    verify_chain "openssl verify -CAfile newroot.pem bundled-intermediate.pem" "$CERTS/h-root.pem" "$CERTS/h-int1.pem"
  if quietly buy_intermediate "three-level" "$H_ROOT_ID" rsa-2048 &&
    enable_generate_alg "three-level second intermediate" "$NEW_INT_ID" "$CERTS/h-int2.pem" rsa-2048; then
    H_INT2_ID=$NEW_INT_ID
    verify_chain "openssl verify -CAfile newroot.pem second-intermediate.pem" "$CERTS/h-root.pem" "$CERTS/h-int2.pem"
  fi

  # --- every key algorithm: root + bundled intermediate + explicit intermediate
  local alg
  for alg in rsa-2048 rsa-3072 rsa-4096 ec-p256 ec-p384 ed25519; do
    quietly buy_root "$alg" "$alg" || continue
    local rid=$NEW_ROOT_ID bid=$NEW_BUNDLED_ID
    enable_generate_alg "$alg root" "$rid" "$CERTS/$alg-root.pem" "$alg" || continue
    verify_chain "$alg root is self-signed and valid" "$CERTS/$alg-root.pem" "$CERTS/$alg-root.pem"
    if quietly enable_generate "$alg bundled intermediate" "$bid" "$CERTS/$alg-bint.pem"; then
      verify_chain "openssl verify $alg bundled intermediate" "$CERTS/$alg-root.pem" "$CERTS/$alg-bint.pem"
    fi
    if quietly buy_intermediate "$alg" "$rid" "$alg" &&
      enable_generate_alg "$alg intermediate" "$NEW_INT_ID" "$CERTS/$alg-int.pem" "$alg"; then
      verify_chain "openssl verify $alg intermediate" "$CERTS/$alg-root.pem" "$CERTS/$alg-int.pem"
    fi
  done
}

# enable_generate_alg LABEL ID OUT_PEM ALG: enable_generate as a setup step,
# then the check that openssl reads an ALG key in the certificate (and the API
# says key_algorithm ALG).
enable_generate_alg() {
  quietly enable_generate "$1" "$2" "$3" || return 1
  local got; got=$(key_algorithm_of "$3")
  if [[ $got == "$4" && $(jb '.key_algorithm // empty') == "$4" ]]; then
    pass "$1: certificate key is $4"
  else
    fail "$1: certificate key is $4" "certificate: $got, API key_algorithm: $(jb '.key_algorithm // empty')"
  fi
}
check_hierarchies || true

# =================================================================================
section "uploading CA certificates made by openssl"
# =================================================================================
ossl_root() {
  local prefix=$1 subj=$2 bc=${3:-critical,CA:TRUE} ku=${4:-critical,keyCertSign,cRLSign}
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$prefix.key" -out "$prefix.pem" -days 3650 -subj "$subj" \
    -addext "basicConstraints=$bc" -addext "keyUsage=$ku" \
    >/dev/null 2>&1
}
ossl_intermediate() {
  local prefix=$1 subj=$2 issuer=$3
  cat >"$prefix.ext" <<'EOF'
basicConstraints=critical,CA:TRUE,pathlen:0
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid:always
EOF
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$prefix.key" -out "$prefix.csr" -subj "$subj" >/dev/null 2>&1 &&
    openssl x509 -req -in "$prefix.csr" -CA "$issuer.pem" -CAkey "$issuer.key" \
      -set_serial "0x$(openssl rand -hex 16)" -days 1825 -extfile "$prefix.ext" \
      -out "$prefix.pem" >/dev/null 2>&1
}
upload() {
  api POST "/cas/$1/enable" "$(jq -nc --rawfile c "$2" --rawfile k "$3" \
    '{mode:"upload", certificate_pem:$c, private_key_pem:$k}')"
}

OSSL="$WORK/openssl" # keys/certs made with openssl for the upload checks
mkdir -p "$OSSL"
check_uploads() {
  local o=$OSSL
  # Material made with openssl: the root to upload, an encrypted copy of its
  # key, an unrelated key, a non-CA certificate, an intermediate signed by the
  # root, and one signed by an impostor root with the same name.
  # shellcheck disable=SC2015 # the || branch is for any step failing
  ossl_root "$o/ext-root" "/O=Conformance Upload/CN=Uploaded Root CA" &&
    openssl pkey -in "$o/ext-root.key" -aes256 -passout pass:x -out "$o/ext-root-enc.key" 2>/dev/null &&
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$o/other.key" 2>/dev/null &&
    ossl_root "$o/not-ca" "/O=Conformance Upload/CN=Not A CA" critical,CA:FALSE critical,digitalSignature &&
    ossl_intermediate "$o/ext-int" "/O=Conformance Upload/CN=Uploaded Intermediate CA" "$o/ext-root" &&
    ossl_root "$o/impostor-root" "/O=Conformance Upload/CN=Uploaded Root CA" &&
    ossl_intermediate "$o/impostor-int" "/O=Conformance Upload/CN=Uploaded Intermediate CA" "$o/impostor-root" ||
    { fail "make test CA material with openssl" "see openssl commands in ossl_root/ossl_intermediate"; return 0; }
  # The encrypted key really is encrypted (the test would be moot otherwise).
  grep -q 'BEGIN ENCRYPTED PRIVATE KEY' "$o/ext-root-enc.key" ||
    { fail "openssl produced an encrypted key"; return 0; }

  quietly buy_root "upload" ec-p256 || return 0
  local rid=$NEW_ROOT_ID iid=$NEW_BUNDLED_ID

  # --- invalid root uploads: each refused with a problem naming the rule -----
  upload "$rid" "$o/ext-root.pem" "$o/ext-root-enc.key"
  expect_problem "upload root with an encrypted private key -> 422 (\"encrypted\")" 422 encrypted -i
  upload "$rid" "$o/ext-root.pem" "$o/other.key"
  expect_problem "upload root with a key that does not match -> 422 (\"does not match\")" 422 "does not match" -i
  upload "$rid" "$o/not-ca.pem" "$o/not-ca.key"
  expect_problem "upload a non-CA certificate as root -> 422 (\"CA\")" 422 CA
  get_ca "$rid"
  if [[ $(jb '.status // empty') == pending ]]; then
    pass "root still pending after rejected uploads"
  else
    fail "root still pending after rejected uploads" "$(_api_failure_details)"
  fi

  # --- valid root upload --------------------------------------------------------
  upload "$rid" "$o/ext-root.pem" "$o/ext-root.key"
  expect_ca "upload openssl-made root -> 200 enabled" 200 enabled "$CERTS/up-root.pem" || return 0
  if [[ $(cert_fp "$CERTS/up-root.pem") == "$(cert_fp "$o/ext-root.pem")" ]]; then
    pass "returned certificate_pem is the uploaded certificate"
  else
    fail "returned certificate_pem is the uploaded certificate" \
      "uploaded: $(cert_fp "$o/ext-root.pem")" "returned: $(cert_fp "$CERTS/up-root.pem")"
  fi

  # --- intermediate uploads -----------------------------------------------------
  upload "$iid" "$o/impostor-int.pem" "$o/impostor-int.key"
  expect_problem "upload intermediate signed by a different root -> 422 (\"signed\")" 422 signed -i
  upload "$iid" "$o/ext-int.pem" "$o/ext-int.key"
  expect_ca "upload openssl-made intermediate signed by the uploaded root -> 200 enabled" \
    200 enabled "$CERTS/up-int.pem" || return 0
  if [[ $(cert_fp "$CERTS/up-int.pem") == "$(cert_fp "$o/ext-int.pem")" ]]; then
    pass "returned intermediate certificate_pem is the uploaded certificate"
  else
    fail "returned intermediate certificate_pem is the uploaded certificate"
  fi
  verify_chain "openssl verify uploaded intermediate against uploaded root" "$o/ext-root.pem" "$CERTS/up-int.pem"
}
check_uploads || true

# =================================================================================
section "a revoked intermediate on its root's CRL"
# =================================================================================
check_revoked_intermediate() {
  if [[ -z $H_INT2_ID ]]; then
    fail "revoke: no second intermediate from the three-level hierarchy to revoke"
    return 0
  fi
  api POST "/cas/$H_INT2_ID/revoke" '{"reason":"keyCompromise"}'
  quietly expect "revoke second intermediate (keyCompromise)" 200 || return 0
  check_ca_endpoint "three-level root" "$H_ROOT_ID" "$CERTS/h-root.pem"
  check_crl "three-level root" "$H_ROOT_ID" "$CERTS/h-root.pem" "$(cert_serial "$CERTS/h-int2.pem")"
}
check_revoked_intermediate || true

finish
