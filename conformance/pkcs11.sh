#!/usr/bin/env bash
# CA keys in an HSM (issue 17), with SoftHSM2 as the token: a token made with
# softhsm2-util in this script's scratch dir, the server configured with it
# ([pkcs11] through VELLUM_PKCS11_MODULE / _TOKEN_LABEL / _PIN_FILE), then
# for RSA 2048 and EC P-256: a root and an intermediate enabled with
# key_storage "pkcs11", a leaf through the admin API and one through ACME
# (lego, http-01), each verified with `openssl verify` against the root; the
# CRLs of both CAs (signed in the token) verified with `openssl crl` and used
# by `openssl verify -crl_check_all` (the revoked admin leaf refused, the lego
# leaf accepted); pkcs11-tool (OpenSC) lists the CA keys in the token as
# sensitive and never extractable, able to sign, not to decrypt or derive.
#
#   bash conformance/pkcs11.sh    (see lib.sh and lib-acme.sh for the environment)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=lib-acme.sh
source "$HERE/lib-acme.sh"
conformance_init pkcs11 softhsm2-util

MODULE=""
for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
  /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
  [[ -f $m ]] && { MODULE=$m; break; }
done
[[ -n $MODULE ]] || { echo "conformance/pkcs11: libsofthsm2.so not found (run .ci/install-deps)" >&2; exit 2; }

# =================================================================================
section "a SoftHSM2 token"
# =================================================================================
TOKEN_LABEL=vellum-conformance
PIN=24681357
export SOFTHSM2_CONF="$WORK/softhsm2.conf"
mkdir -p "$WORK/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$WORK/tokens" >"$SOFTHSM2_CONF"
if out=$(softhsm2-util --init-token --free --label "$TOKEN_LABEL" --pin "$PIN" --so-pin 13572468 2>&1); then
  pass "softhsm2-util --init-token --free --label $TOKEN_LABEL" "$(tail -n1 <<<"$out")"
else
  fail "softhsm2-util --init-token" "$out"
  finish
fi
printf '%s\n' "$PIN" >"$WORK/pin"
chmod 600 "$WORK/pin"
# Read by `vellum serve` (start_server passes the environment on); the PIN
# comes from a file, as an operator would keep it.
export VELLUM_PKCS11_MODULE="$MODULE" VELLUM_PKCS11_TOKEN_LABEL="$TOKEN_LABEL" VELLUM_PKCS11_PIN_FILE="$WORK/pin"

acme_start || finish
if grep -q "PKCS#11 token ready" "$SERVER_LOG"; then
  pass "the server logged in to the token at startup"
else
  fail "the server logged in to the token at startup" "$(grep -i pkcs11 "$SERVER_LOG" | tail -n 5)"
fi
if grep -q "$PIN" "$SERVER_LOG"; then
  fail "the PIN is not in the server log"
else
  pass "the PIN is not in the server log"
fi

LEGO=${VELLUM_LEGO:-$(command -v lego || true)}
P11TOOL=$(command -v pkcs11-tool || true)

# enable_in_token LABEL ID OUT_PEM
enable_in_token() {
  local label=$1 id=$2 out=$3
  api POST "/cas/$id/enable" '{"mode":"generate","key_storage":"pkcs11"}'
  expect_ca "$label: enable (generate, key_storage pkcs11) -> 200 enabled" 200 enabled "$out" || return 1
  if [[ $(jb '.key_storage') == pkcs11 && $(jb '.pkcs11_key.label') == "vellum-ca-$id" &&
    -n $(jb '.pkcs11_key.id // empty') ]]; then
    pass "$label: key_storage pkcs11, token object vellum-ca-$id" "CKA_ID $(jb '.pkcs11_key.id')"
  else
    fail "$label: key_storage pkcs11, token object vellum-ca-$id" "$(_api_failure_details)"
  fi
}

for ALG in rsa-2048 ec-p256; do
  # ===============================================================================
  section "$ALG: a root and an intermediate whose keys are in the token"
  # ===============================================================================
  D="$WORK/$ALG"
  mkdir -p "$D"
  buy_root "$ALG. token" "$ALG" || continue
  ROOT=$NEW_ROOT_ID INT=$NEW_BUNDLED_ID
  enable_in_token "$ALG. root" "$ROOT" "$D/root.pem" || continue
  enable_in_token "$ALG. intermediate" "$INT" "$D/int.pem" || continue
  api POST "/cas/$ROOT/quota/assign" "$(jq -nc --arg i "$INT" '{intermediate_id:$i, count:20}')"
  quietly expect "$ALG. assign quota" 200 || continue
  check "$ALG. openssl verify: the self-signed root (signed in the token)" \
    openssl verify -CAfile "$D/root.pem" "$D/root.pem"
  check "$ALG. openssl verify: the intermediate under the root (signed in the token)" \
    openssl verify -CAfile "$D/root.pem" "$D/int.pem"

  # --- admin API ---------------------------------------------------------------------
  api POST "/cas/$INT/certificates" \
    '{"type":"server","common_name":"admin.hsm.vellum.test","sans":[{"type":"dns","value":"admin.hsm.vellum.test"}],"validity_days":30}'
  if quietly expect "$ALG. admin API: issue a leaf" 201; then
    jb '.certificate_pem' >"$D/admin.pem"
    ADMIN_ID=$(jb '.id')
    check "$ALG. openssl verify: the admin leaf" \
      openssl verify -CAfile "$D/root.pem" -untrusted "$D/int.pem" "$D/admin.pem"
  fi

  # --- ACME (lego) ---------------------------------------------------------------------
  LEAF_OK=0
  if [[ -z $LEGO ]]; then
    fail "$ALG. lego is installed" "not on PATH (run .ci/install-deps)"
  else
    out="$D/lego.out"
    if acme_client "$out" env LEGO_CA_CERTIFICATES="$ROOT_PEM" "$LEGO" \
      --server "https://localhost:$HTTPS_PORT/acme/$INT/directory" --email ops@example.com --accept-tos \
      --path "$D/lego" --http --http.port "127.0.0.1:$VA_HTTP_PORT" -d "acme.hsm.vellum.test" run; then
      awk '/-----BEGIN CERTIFICATE-----/{n++} n==1' "$D/lego/certificates/acme.hsm.vellum.test.crt" >"$D/acme.pem"
      pass "$ALG. lego run (http-01) against the token-held intermediate"
      check "$ALG. openssl verify: the ACME leaf" \
        openssl verify -CAfile "$D/root.pem" -untrusted "$D/int.pem" "$D/acme.pem" && LEAF_OK=1
    else
      fail "$ALG. lego run (http-01) against the token-held intermediate" "$(acme_client_failure $? "$out")"
    fi
  fi

  # --- CRLs ----------------------------------------------------------------------------
  if [[ -n ${ADMIN_ID:-} ]]; then
    api POST "/certificates/$ADMIN_ID/revoke" '{"reason":"keyCompromise"}'
    quietly expect "$ALG. revoke the admin leaf" 200 || true
  fi
  : >"$D/crls.pem"
  for pair in "root:$ROOT:root.pem" "intermediate:$INT:int.pem"; do
    IFS=: read -r what id issuer <<<"$pair"
    if fetch_crl_pem "$id" "$D/$what.crl"; then
      check "$ALG. openssl crl -CAfile: the $what's CRL verifies (signed in the token)" \
        openssl crl -in "$D/$what.crl.pem" -noout -CAfile "$D/$issuer"
      cat "$D/$what.crl.pem" >>"$D/crls.pem"
    else
      fail "$ALG. GET /crl/{$what}.crl"
    fi
  done
  if [[ -s $D/admin.pem ]]; then
    out=$(openssl verify -crl_check_all -CAfile "$D/root.pem" -untrusted "$D/int.pem" -CRLfile "$D/crls.pem" "$D/admin.pem" 2>&1) || true
    if grep -q "certificate revoked" <<<"$out"; then
      pass "$ALG. openssl verify -crl_check_all refuses the revoked admin leaf"
    else
      fail "$ALG. openssl verify -crl_check_all refuses the revoked admin leaf" "$out"
    fi
  fi
  if ((LEAF_OK)); then
    check "$ALG. openssl verify -crl_check_all accepts the ACME leaf" \
      openssl verify -crl_check_all -CAfile "$D/root.pem" -untrusted "$D/int.pem" -CRLfile "$D/crls.pem" "$D/acme.pem"
  fi

  # --- the keys stay in the token ------------------------------------------------------
  if [[ -z $P11TOOL ]]; then
    skip "$ALG. pkcs11-tool (OpenSC) lists the keys" "pkcs11-tool not installed (apt-get install opensc)"
    continue
  fi
  for id in "$ROOT" "$INT"; do
    objs=$("$P11TOOL" --module "$MODULE" --token-label "$TOKEN_LABEL" --login --pin "$PIN" \
      --list-objects --type privkey 2>&1) || true
    block=$(awk -v l="vellum-ca-$id" '/^Private Key Object/{b=""; keep=0} {b=b"\n"$0} $0 ~ "label: *"l"$" {keep=1} keep && /Access:/ {print b; exit}' <<<"$objs")
    if grep -q "sensitive" <<<"$block" && grep -q "never extractable" <<<"$block"; then
      pass "$ALG. pkcs11-tool: vellum-ca-$id is sensitive, never extractable" "$(grep -E 'Access|Usage' <<<"$block" | tr -s ' ')"
    else
      fail "$ALG. pkcs11-tool: vellum-ca-$id is sensitive, never extractable" "$objs"
    fi
    usage=$(sed -n 's/^ *Usage: *//p' <<<"$block")
    if grep -qw sign <<<"$usage" && ! grep -qwE 'decrypt|derive' <<<"$usage"; then
      pass "$ALG. pkcs11-tool: vellum-ca-$id signs, neither decrypts nor derives" "Usage: $usage"
    else
      fail "$ALG. pkcs11-tool: vellum-ca-$id signs, neither decrypts nor derives" "$block"
    fi
  done
done

# =================================================================================
section "nothing of the keys outside the token"
# =================================================================================
# The database and data dir hold no key of a token CA: each was generated in
# the token, so none was ever sealed; the API shows where each key is.
api GET "/cas?limit=100"
n=$(jq '[.items[] | select(.key_storage == "pkcs11")] | length' <<<"$API_BODY" 2>/dev/null || echo 0)
if [[ $n == 4 ]]; then
  pass "GET /cas: four CAs with key_storage pkcs11"
else
  fail "GET /cas: four CAs with key_storage pkcs11" "found $n" "$(_api_failure_details | head -c 1500)"
fi

finish
