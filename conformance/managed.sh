#!/usr/bin/env bash
# Managed certificates and the conversion tool, fed with files openssl (and
# keytool, when installed) produce: a CA hierarchy made by openssl, RSA and EC
# leaves with their keys, a PKCS#8 key encrypted by openssl, a traditionally
# encrypted RSA key (DEK-Info), a DER certificate, a PFX and a JKS. They go
# through POST /managed and POST /tools/convert; what comes back (exports,
# conversions) must open with openssl and keytool.
#
#   bash conformance/managed.sh      (see lib.sh for the environment)
#
# Every refusal's exact field and message is checked in tests/it/managed.rs.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
conformance_init managed
start_server

PW=conf-pass-1
F="$WORK/files"
mkdir -p "$F"
HAVE_KEYTOOL=0
command -v keytool >/dev/null && HAVE_KEYTOOL=1

serial() { echo "0x$(openssl rand -hex 8)"; }

# =================================================================================
section "files made by openssl"
# =================================================================================
make_files() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc \
    -keyout "$F/root.key" -out "$F/root.pem" -subj "/CN=Conformance Root" -days 3650 \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign &&
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc \
      -keyout "$F/int.key" -out "$F/int.csr" -subj "/CN=Conformance Intermediate" &&
    printf 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n' >"$F/int.ext" &&
    openssl x509 -req -in "$F/int.csr" -CA "$F/root.pem" -CAkey "$F/root.key" -set_serial "$(serial)" \
      -days 1825 -extfile "$F/int.ext" -out "$F/int.pem" &&
    cat "$F/int.pem" "$F/root.pem" >"$F/chain.pem" || return 1
  local kind
  for kind in rsa ec; do
    local newkey=(-newkey rsa:2048)
    [[ $kind == ec ]] && newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)
    openssl req -new "${newkey[@]}" -noenc -keyout "$F/$kind.key" -out "$F/$kind.csr" \
      -subj "/CN=$kind.conformance.example" &&
      printf 'subjectAltName=DNS:%s.conformance.example\n' "$kind" >"$F/$kind.ext" &&
      openssl x509 -req -in "$F/$kind.csr" -CA "$F/int.pem" -CAkey "$F/int.key" -set_serial "$(serial)" \
        -days 90 -extfile "$F/$kind.ext" -out "$F/$kind.pem" || return 1
  done
  openssl pkcs8 -topk8 -v2 aes256 -in "$F/ec.key" -out "$F/ec-enc.key" -passout "pass:$PW" &&
    openssl rsa -traditional -aes128 -in "$F/rsa.key" -out "$F/rsa-legacy.key" -passout "pass:$PW" 2>/dev/null &&
    openssl x509 -in "$F/rsa.pem" -outform DER -out "$F/rsa.der" &&
    openssl pkcs12 -export -in "$F/rsa.pem" -inkey "$F/rsa.key" -certfile "$F/chain.pem" \
      -out "$F/rsa.pfx" -passout "pass:$PW" || return 1
  if ((HAVE_KEYTOOL)); then
    keytool -genkeypair -alias javakey -keyalg EC -groupname secp256r1 -dname CN=java.conformance.example \
      -validity 90 -storetype JKS -keystore "$F/java.jks" -storepass "$PW" -keypass "$PW" >/dev/null 2>&1 || return 1
  fi
}
if make_files >"$WORK/openssl.log" 2>&1; then
  pass "openssl makes a root, an intermediate, RSA and EC leaves, an encrypted PKCS#8 key, a DEK-Info key, a DER and a PFX"
else
  fail "openssl makes the test files" "$(tail -n 20 "$WORK/openssl.log")"
  finish
fi

# =================================================================================
section "uploads"
# =================================================================================
# upload_plain NAME CERT KEY / upload_pass NAME CERT KEY PASSPHRASE: POST /managed
# with the files' text and the openssl-made chain.
upload_plain() {
  api POST /managed "$(jq -nc --arg n "$1" --rawfile c "$2" --rawfile k "$3" --rawfile ch "$F/chain.pem" \
    '{name:$n, certificate_pem:$c, private_key_pem:$k, chain_pem:$ch}')"
}
upload_pass() {
  api POST /managed "$(jq -nc --arg n "$1" --rawfile c "$2" --rawfile k "$3" --rawfile ch "$F/chain.pem" --arg p "$4" \
    '{name:$n, certificate_pem:$c, private_key_pem:$k, chain_pem:$ch, key_passphrase:$p}')"
}

upload_plain rsa "$F/rsa.pem" "$F/rsa.key"
expect "RSA leaf + PKCS#8 key from openssl upload (201)" 201 && RSA_ID=$(jb .id)
upload_plain ec "$F/ec.pem" "$F/ec.key"
expect "EC leaf + key from openssl upload (201)" 201
if [[ $(jb .chain_pem) == "$(cat "$F/chain.pem")"* ]]; then
  pass "the stored chain is the intermediate, then the root"
else
  fail "the stored chain is the intermediate, then the root" "$(jb .chain_pem | head -n 3)"
fi

upload_plain enc "$F/ec.pem" "$F/ec-enc.key"
if [[ $API_STATUS == 422 && $(jb .field) == private_key_pem && $(jb .detail) == *"openssl pkey -in encrypted.key -out decrypted.key"* ]]; then
  pass "openssl's encrypted PKCS#8 key without passphrase: 422 naming the openssl command"
else
  fail "openssl's encrypted PKCS#8 key without passphrase: 422 naming the openssl command" "$(_api_failure_details)"
fi
upload_pass enc "$F/ec.pem" "$F/ec-enc.key" "$PW"
expect "openssl's encrypted PKCS#8 key with key_passphrase uploads (201)" 201
upload_pass legacy "$F/rsa.pem" "$F/rsa-legacy.key" "$PW"
expect "openssl's DEK-Info (AES-128-CBC) RSA key with key_passphrase uploads (201)" 201
upload_pass legacy "$F/rsa.pem" "$F/rsa-legacy.key" wrong
if [[ $API_STATUS == 422 && $(jb .field) == key_passphrase ]]; then
  pass "a wrong passphrase: 422 naming key_passphrase"
else
  fail "a wrong passphrase: 422 naming key_passphrase" "$(_api_failure_details)"
fi

for kind in der pfx; do
  base64 -w0 "$F/rsa.$kind" >"$F/rsa.$kind.b64"
  upload_plain "$kind" "$F/rsa.$kind.b64" "$F/rsa.key"
  if [[ $API_STATUS == 422 && $(jb .detail) == *"PEM is required"*"tools/convert"* ]]; then
    pass "a $kind file given as certificate_pem: 422 'PEM is required' naming the conversion call"
  else
    fail "a $kind file given as certificate_pem: 422 'PEM is required' naming the conversion call" "$(_api_failure_details)"
  fi
done

# =================================================================================
section "exports of managed certificates"
# =================================================================================
if [[ -n ${RSA_ID:-} ]]; then
  api_download POST "/managed/$RSA_ID/export" "$(jq -nc --arg p "$PW" '{format:"pkcs12", password:$p}')" "$F/export.p12"
  if expect_download "managed pkcs12 export" "$F/export.p12"; then
    if [[ $(openssl pkcs12 -in "$F/export.p12" -passin "pass:$PW" -nocerts -noenc 2>/dev/null | openssl pkey -pubout 2>/dev/null) == "$(pubkey_of_cert "$F/rsa.pem")" ]] &&
      [[ $(openssl pkcs12 -in "$F/export.p12" -passin "pass:$PW" -nokeys 2>/dev/null | grep -c -- '-----BEGIN CERTIFICATE-----') == 3 ]]; then
      pass "managed pkcs12 export: openssl pkcs12 reads the uploaded key and 3 certificates"
    else
      fail "managed pkcs12 export: openssl pkcs12 reads the uploaded key and 3 certificates"
    fi
  fi
  if ((HAVE_KEYTOOL)); then
    api_download POST "/managed/$RSA_ID/export" "$(jq -nc --arg p "$PW" '{format:"jks", password:$p}')" "$F/export.jks"
    if expect_download "managed jks export" "$F/export.jks"; then
      if out=$(keytool -list -keystore "$F/export.jks" -storetype JKS -storepass "$PW" 2>&1) && grep -q PrivateKeyEntry <<<"$out"; then
        pass "managed jks export: keytool -list shows a PrivateKeyEntry"
      else
        fail "managed jks export: keytool -list shows a PrivateKeyEntry" "$out"
      fi
    fi
  else
    skip "managed jks export read by keytool" "keytool is not installed"
  fi
fi

# =================================================================================
section "conversions"
# =================================================================================
# convert IN FROM TO OUT [PASSWORD] [NEW_PASSWORD]
convert() {
  local body
  body=$(jq -nc --rawfile i <(base64 -w0 "$1") --arg f "$2" --arg t "$3" --arg p "${5-}" --arg n "${6-}" \
    '{input:$i, from:$f, to:$t} + (if $p != "" then {password:$p} else {} end) + (if $n != "" then {new_password:$n} else {} end)')
  api_download POST /tools/convert "$body" "$4"
}

convert "$F/rsa.der" der pem "$F/der-to.pem"
if expect_download "der → pem" "$F/der-to.pem" && [[ $(cert_fp "$F/der-to.pem") == "$(cert_fp "$F/rsa.pem")" ]]; then
  pass "openssl's DER → pem: openssl x509 reads the same certificate"
elif [[ $API_STATUS == 200 ]]; then
  fail "openssl's DER → pem: openssl x509 reads the same certificate"
fi

convert "$F/rsa.pfx" pkcs12 pem "$F/pfx-to.pem" "$PW"
if expect_download "pfx → pem" "$F/pfx-to.pem"; then
  if [[ $(pubkey_of_key "$F/pfx-to.pem") == "$(pubkey_of_cert "$F/rsa.pem")" && $(cert_fp "$F/pfx-to.pem") == "$(cert_fp "$F/rsa.pem")" ]]; then
    pass "openssl's PFX → pem: leaf first, key matches (openssl x509 + pkey)"
  else
    fail "openssl's PFX → pem: leaf first, key matches (openssl x509 + pkey)" "$(grep -- '-----BEGIN' "$F/pfx-to.pem")"
  fi
fi
convert "$F/rsa.pfx" pkcs12 pem "$F/pfx-bad.pem" wrong-password
if [[ $API_STATUS == 422 && $(jb .field) == password ]]; then
  pass "PFX with a wrong password: 422 naming password"
else
  fail "PFX with a wrong password: 422 naming password" "$(_api_failure_details)"
fi

cat "$F/ec.pem" "$F/ec.key" >"$F/ec-bundle.pem"
convert "$F/ec-bundle.pem" pem pkcs12 "$F/pem-to.p12" "" "$PW"
if expect_download "pem → pkcs12" "$F/pem-to.p12"; then
  if openssl pkcs12 -in "$F/pem-to.p12" -passin "pass:$PW" -noenc -info >/dev/null 2>&1; then
    pass "pem → pkcs12: openssl pkcs12 opens it"
  else
    fail "pem → pkcs12: openssl pkcs12 opens it"
  fi
fi

convert "$F/rsa.pfx" pkcs12 jks "$F/pfx-to.jks" "$PW"
if expect_download "pfx → jks" "$F/pfx-to.jks"; then
  if ((HAVE_KEYTOOL)); then
    if out=$(keytool -list -keystore "$F/pfx-to.jks" -storetype JKS -storepass "$PW" 2>&1) && grep -q PrivateKeyEntry <<<"$out"; then
      pass "PFX → jks: keytool -list shows a PrivateKeyEntry"
    else
      fail "PFX → jks: keytool -list shows a PrivateKeyEntry" "$out"
    fi
  fi
  convert "$F/pfx-to.jks" jks pem "$F/jks-to.pem" "$PW"
  if expect_download "jks → pem" "$F/jks-to.pem" && [[ $(pubkey_of_key "$F/jks-to.pem") == "$(pubkey_of_cert "$F/rsa.pem")" ]]; then
    pass "PFX → jks → pem: the key and certificate come back (openssl pkey)"
  elif [[ $API_STATUS == 200 ]]; then
    fail "PFX → jks → pem: the key and certificate come back (openssl pkey)"
  fi
fi

if ((HAVE_KEYTOOL)); then
  convert "$F/java.jks" jks pem "$F/java.pem" "$PW"
  if expect_download "keytool's JKS → pem" "$F/java.pem"; then
    if [[ $(pubkey_of_key "$F/java.pem") == "$(pubkey_of_cert "$F/java.pem")" && -n $(pubkey_of_cert "$F/java.pem") ]]; then
      pass "keytool's JKS → pem: openssl reads the certificate and its key"
    else
      fail "keytool's JKS → pem: openssl reads the certificate and its key" "$(head -c 600 "$F/java.pem")"
    fi
  fi
else
  skip "keytool's JKS → pem" "keytool is not installed"
fi

convert "$F/ec-enc.key" pkcs8 pkcs8 "$F/reenc.key" "$PW" new-pass-2
if expect_download "encrypted pkcs8 → pkcs8 with a new password" "$F/reenc.key"; then
  if [[ $(pubkey_of_key "$F/reenc.key" new-pass-2) == "$(pubkey_of_cert "$F/ec.pem")" ]]; then
    pass "openssl's encrypted PKCS#8 → pkcs8 under a new password: openssl pkey -passin reads it"
  else
    fail "openssl's encrypted PKCS#8 → pkcs8 under a new password: openssl pkey -passin reads it"
  fi
fi

# =================================================================================
section "the CLI: vellum admin managed / convert"
# =================================================================================
cli() { "$BIN" admin --url "https://localhost:$HTTPS_PORT" --data-dir "$DATA" "$@" 2>&1 </dev/null; }
if out=$(cli --json managed upload --name cli-ec --cert "$F/ec.pem" --key "$F/ec-enc.key" \
  --key-passphrase "$PW" --chain "$F/chain.pem" --tag team=ops) && CLI_ID=$(jq -r .id <<<"$out") && [[ $CLI_ID != null ]]; then
  pass "vellum admin managed upload (encrypted key, --key-passphrase, --tag)"
  if out=$(cli managed list --tag team=ops) && grep -q "$CLI_ID" <<<"$out"; then
    pass "vellum admin managed list --tag team=ops shows it"
  else
    fail "vellum admin managed list --tag team=ops shows it" "$out"
  fi
  if cli managed export "$CLI_ID" --format pkcs12 --password "$PW" --out "$F/cli.p12" >/dev/null &&
    openssl pkcs12 -in "$F/cli.p12" -passin "pass:$PW" -noenc -info >/dev/null 2>&1; then
    pass "vellum admin managed export --format pkcs12: openssl pkcs12 opens it"
  else
    fail "vellum admin managed export --format pkcs12: openssl pkcs12 opens it"
  fi
  if cli managed delete "$CLI_ID" >/dev/null && ! cli managed show "$CLI_ID" >/dev/null; then
    pass "vellum admin managed delete: the entry is gone"
  else
    fail "vellum admin managed delete: the entry is gone"
  fi
else
  fail "vellum admin managed upload (encrypted key, --key-passphrase, --tag)" "$out"
fi
if out=$(cli managed upload --name cli-der --cert "$F/rsa.der" --key "$F/rsa.key"); then
  fail "vellum admin managed upload of a DER file is refused" "$out"
elif grep -q "PEM is required" <<<"$out"; then
  pass "vellum admin managed upload of a DER file is refused: PEM is required"
else
  fail "vellum admin managed upload of a DER file is refused: PEM is required" "$out"
fi
if cli convert --from pkcs12 --to pem --in "$F/rsa.pfx" --out "$F/cli-pfx.pem" --password "$PW" >/dev/null &&
  [[ $(pubkey_of_key "$F/cli-pfx.pem") == "$(pubkey_of_cert "$F/rsa.pem")" ]]; then
  pass "vellum admin convert --from pkcs12 --to pem: openssl reads the key"
else
  fail "vellum admin convert --from pkcs12 --to pem: openssl reads the key"
fi

finish
