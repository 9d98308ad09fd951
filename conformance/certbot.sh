#!/usr/bin/env bash
# certbot (PyPI, in /opt/vellum-certbot) against the server's ACME directory:
# certonly with http-01 (standalone), renew --force-renewal, revoke
# --reason keycompromise (then on the CRL), an IP identifier (RFC 8738) and
# the tls-server / tls-client profiles; every certificate verified with
# openssl and linted with pkilint; the inventory lists exactly what certbot
# obtained. Also the default directory's shape.
#
#   bash conformance/certbot.sh      (see lib.sh and lib-acme.sh for the environment)
#
# Environment (optional): VELLUM_CERTBOT (certbot executable; default
# $VELLUM_CERTBOT_VENV/bin/certbot, VELLUM_CERTBOT_VENV defaulting to
# /opt/vellum-certbot as in .ci/install-deps, else certbot on PATH).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source-path=SCRIPTDIR source=lib-acme.sh
source "$HERE/lib-acme.sh"
conformance_init certbot
python3 -c 'import pkilint' 2>/dev/null ||
  { echo "conformance/certbot: python3 module pkilint not found (run .ci/install-deps)" >&2; exit 2; }

# =================================================================================
section "ACME (RFC 8555): certbot"
# =================================================================================
acme_start || finish

check_directory() {
  # The default directory (the bootstrap intermediate).
  local dirjson=$ACME_DIRECTORY
  if jq -e '(.newNonce, .newAccount, .newOrder, .revokeCert, .keyChange | startswith("https://"))
           and (.meta.profiles | has("tls-server") and has("tls-client"))' <<<"$dirjson" >/dev/null 2>&1; then
    pass "acme. GET /acme/directory: newNonce, newAccount, newOrder, revokeCert, keyChange, meta.profiles tls-server and tls-client" \
      "$(jq -c '.meta' <<<"$dirjson")"
  else
    fail "acme. GET /acme/directory: newNonce, newAccount, newOrder, revokeCert, keyChange, meta.profiles tls-server and tls-client" "$dirjson"
    return 0
  fi
  if jq -e --arg u "https://localhost:$HTTPS_PORT/acme/$BOOT_INT_ID/new-order" '.newOrder == $u' <<<"$dirjson" >/dev/null; then
    pass "acme. /acme/directory is the bootstrap intermediate's (/acme/{id}/...)"
  else
    fail "acme. /acme/directory is the bootstrap intermediate's (/acme/{id}/...)" "$dirjson"
  fi

}

# --- certbot ----------------------------------------------------------------------
acme_certbot() {
  local cb=${VELLUM_CERTBOT:-}
  local venv=${VELLUM_CERTBOT_VENV:-/opt/vellum-certbot}
  [[ -z $cb && -x $venv/bin/certbot ]] && cb=$venv/bin/certbot
  [[ -z $cb ]] && cb=$(command -v certbot || true)
  if [[ -z $cb ]]; then
    fail "acme. certbot is installed" "not in /opt/vellum-certbot nor on PATH (run .ci/install-deps)"
    return 0
  fi
  local ver; ver=$("$cb" --version 2>&1 | tail -n1)
  note "$ver ($cb)"
  local d="$ACME_WORK/certbot" name="certbot.$ACME_ZONE" out rc
  mkdir -p "$d"
  local common=(--non-interactive --server "$ACME_DIR_URL" --config-dir "$d/config"
    --work-dir "$d/work" --logs-dir "$d/logs")
  local standalone=(--standalone --http-01-port "$VA_HTTP_PORT" --http-01-address 127.0.0.1
    --agree-tos -m ops@example.com)
  local log="$d/logs/letsencrypt.log"
  export REQUESTS_CA_BUNDLE="$ROOT_PEM"

  # --- certonly, http-01 -----------------------------------------------------------
  out="$d/certonly.out"
  acme_client "$out" "$cb" certonly "${common[@]}" "${standalone[@]}" -d "$name" && rc=0 || rc=$?
  local live="$d/config/live/$name"
  if ((rc == 0)) && [[ -s $live/cert.pem ]]; then
    pass "acme. certbot certonly --standalone (http-01) -d $name"
    cp "$live/cert.pem" "$d/first.pem"
    acme_check_cert "acme. certbot http-01" "$d/first.pem" "$live/chain.pem" "$ACME_INT_PEM" "DNS:$name"
  else
    fail "acme. certbot certonly --standalone (http-01) -d $name" "$(acme_client_failure "$rc" "$out" "$log")"
    unset REQUESTS_CA_BUNDLE
    return 0
  fi

  # --- renew --force-renewal --------------------------------------------------------
  out="$d/renew.out"
  acme_client "$out" "$cb" renew "${common[@]}" --cert-name "$name" --force-renewal \
    --no-random-sleep-on-renew && rc=0 || rc=$?
  if ((rc == 0)) && [[ -s $live/cert.pem ]] && [[ $(cert_serial "$live/cert.pem") != "$(cert_serial "$d/first.pem")" ]]; then
    pass "acme. certbot renew --force-renewal issues a new certificate" \
      "serial $(cert_serial "$d/first.pem") -> $(cert_serial "$live/cert.pem")"
    cp "$live/cert.pem" "$d/renewed.pem"
    acme_check_cert "acme. certbot renewal" "$d/renewed.pem" "$live/chain.pem" "$ACME_INT_PEM" "DNS:$name"
  else
    fail "acme. certbot renew --force-renewal issues a new certificate" \
      "$(acme_client_failure "$rc" "$out" "$log")" "live cert serial: $(cert_serial "$live/cert.pem" 2>&1)"
  fi

  # --- revoke --reason keycompromise ------------------------------------------------
  local victim="$d/renewed.pem"
  [[ -s $victim ]] || victim="$d/first.pem"
  out="$d/revoke.out"
  acme_client "$out" "$cb" revoke "${common[@]}" --cert-path "$victim" --reason keycompromise \
    --no-delete-after-revoke && rc=0 || rc=$?
  if ((rc == 0)); then
    pass "acme. certbot revoke --reason keycompromise" "serial $(cert_serial "$victim")"
    acme_check_revoked "acme. certbot revoke" "$BOOT_INT_ID" "$ACME_INT_PEM" "$victim" "Key Compromise"
  else
    fail "acme. certbot revoke --reason keycompromise" "$(acme_client_failure "$rc" "$out" "$log")"
  fi

  local help; help=$("$cb" --help all 2>&1)

  # --- an IP address (RFC 8738), http-01 ----------------------------------------------
  if grep -q -- '--ip-address' <<<"$help"; then
    out="$d/ip.out"
    acme_client "$out" "$cb" certonly "${common[@]}" "${standalone[@]}" --ip-address 127.0.0.1 && rc=0 || rc=$?
    if ((rc == 0)) && [[ -s $d/config/live/127.0.0.1/cert.pem ]]; then
      pass "acme. certbot certonly --ip-address 127.0.0.1 (RFC 8738, http-01)"
      acme_check_cert "acme. certbot IP identifier" "$d/config/live/127.0.0.1/cert.pem" \
        "$d/config/live/127.0.0.1/chain.pem" "$ACME_INT_PEM" "IP Address:127.0.0.1"
    else
      fail "acme. certbot certonly --ip-address 127.0.0.1 (RFC 8738, http-01)" "$(acme_client_failure "$rc" "$out" "$log")"
    fi
  else
    skip "acme. certbot --ip-address 127.0.0.1" "$ver has no --ip-address option"
  fi

  # --- profiles -----------------------------------------------------------------------
  if grep -q -- '--preferred-profile' <<<"$help"; then
    local pname="certbot-profile.$ACME_ZONE"
    out="$d/profile.out"
    acme_client "$out" "$cb" certonly "${common[@]}" "${standalone[@]}" -d "$pname" \
      --preferred-profile tls-server && rc=0 || rc=$?
    if ((rc == 0)) && [[ -s $d/config/live/$pname/cert.pem ]]; then
      pass "acme. certbot certonly --preferred-profile tls-server -d $pname"
      acme_check_cert "acme. certbot profile tls-server" "$d/config/live/$pname/cert.pem" \
        "$d/config/live/$pname/chain.pem" "$ACME_INT_PEM" "DNS:$pname"
    else
      fail "acme. certbot certonly --preferred-profile tls-server -d $pname" "$(acme_client_failure "$rc" "$out" "$log")"
    fi
  else
    skip "acme. certbot --preferred-profile tls-server" "$ver has no --preferred-profile option"
  fi
  if grep -q -- '--required-profile' <<<"$help"; then
    local cname="certbot-client.$ACME_ZONE"
    out="$d/client-profile.out"
    acme_client "$out" "$cb" certonly "${common[@]}" "${standalone[@]}" -d "$cname" \
      --required-profile tls-client && rc=0 || rc=$?
    if ((rc == 0)) && [[ -s $d/config/live/$cname/cert.pem ]]; then
      pass "acme. certbot certonly --required-profile tls-client -d $cname"
      acme_check_cert "acme. certbot profile tls-client" "$d/config/live/$cname/cert.pem" \
        "$d/config/live/$cname/chain.pem" "$ACME_INT_PEM" "DNS:$cname" "TLS Web Client Authentication"
    else
      fail "acme. certbot certonly --required-profile tls-client -d $cname" "$(acme_client_failure "$rc" "$out" "$log")"
    fi
  else
    skip "acme. certbot --required-profile tls-client" "$ver has no --required-profile option"
  fi
  unset REQUESTS_CA_BUNDLE
}


check_directory || true
acme_certbot || true
acme_inventory || true

finish
