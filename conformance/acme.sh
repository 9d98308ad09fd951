# shellcheck shell=bash
# ACME (RFC 8555) checks for conformance/run, sourced near its end: the real
# ACME clients certbot (PyPI, in /opt/vellum-certbot) and lego (Debian) obtain,
# renew and revoke certificates from the server's ACME directories, with
# http-01, tls-alpn-01 and dns-01 validation, External Account Binding and
# profiles. Every certificate obtained must verify against root.pem and lint
# clean with pkilint; the revoked ones must be on the CRL; the admin API's
# inventory (source=acme) must list exactly the certificates obtained.
#
# Uses from conformance/run: WORK, ROOT_PEM, HTTPS_PORT, HTTP_PORT, TOKEN,
# CERTS, BOOT_ROOT_ID / BOOT_INT_ID (section b), and the ports it started the
# server with: VA_HTTP_PORT (VELLUM_VA_HTTP_PORT), VA_TLS_PORT
# (VELLUM_VA_TLS_PORT) and VA_DNS_PORT (VELLUM_VA_DNS_RESOLVER=127.0.0.1:port).
#
# Validation goes to this machine only: the names used (*.vellum.test) resolve
# to 127.0.0.1 through a loopback DNS server started here (acme/dns.py), which
# also serves the dns-01 TXT records that lego's "exec" provider publishes
# through acme/dns-hook.sh.
#
# Environment (optional): VELLUM_CERTBOT (certbot executable; default
# $VELLUM_CERTBOT_VENV/bin/certbot, VELLUM_CERTBOT_VENV defaulting to
# /opt/vellum-certbot as in .ci/install-deps, else certbot on PATH),
# VELLUM_LEGO (lego; default: on PATH), VELLUM_CONFORMANCE_ACME_TIMEOUT
# (seconds one client run may take, default 90).

# =================================================================================
section "ACME (RFC 8555): certbot and lego"
# =================================================================================
ACME_HELPERS="${here:?acme.sh is sourced by conformance/run}/acme" # dns.py, dns-hook.sh
ACME_WORK="$WORK/acme"
ACME_TXT="$ACME_WORK/txt"         # dns-01 TXT records (one file per name)
ACME_ZONE=vellum.test
ACME_TIMEOUT=${VELLUM_CONFORMANCE_ACME_TIMEOUT:-90} # seconds per client run
ACME_DNS_PID=""
ACME_DIR_URL=""                   # the default directory
ACME_INT_PEM="$ACME_WORK/default-int.pem"
# Certificates the clients obtained ("label|pem") and the serials they revoked
# ("serial|reason").
ACME_OBTAINED=()
ACME_REVOKED=()
mkdir -p "$ACME_TXT"

# --- the loopback DNS server ----------------------------------------------------
acme_stop_dns() {
  [[ -n $ACME_DNS_PID ]] || return 0
  kill -TERM "$ACME_DNS_PID" 2>/dev/null || true
  wait "$ACME_DNS_PID" 2>/dev/null || true
  ACME_DNS_PID=""
}

# acme_dns_query NAME TYPE: asks the loopback DNS server; prints "rcode answers".
acme_dns_query() {
  python3 - "$VA_DNS_PORT" "$1" "$2" <<'PY'
import socket, struct, sys
port, name, qtype = int(sys.argv[1]), sys.argv[2], {"A": 1, "TXT": 16}[sys.argv[3]]
q = struct.pack(">HHHHHH", 7, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0" + struct.pack(">HH", qtype, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(q, ("127.0.0.1", port))
r = s.recv(4096)
print(r[3] & 0xF, struct.unpack(">H", r[6:8])[0])
PY
}

acme_start_dns() {
  python3 "$ACME_HELPERS/dns.py" --port "$VA_DNS_PORT" --zone "$ACME_ZONE" --txt-dir "$ACME_TXT" \
    --watch-pid $$ --lifetime 900 >"$ACME_WORK/dns.log" 2>&1 &
  ACME_DNS_PID=$!
  local out=""
  for _ in $(seq 1 50); do
    out=$(acme_dns_query "probe.$ACME_ZONE" A 2>/dev/null) && [[ $out == "0 1" ]] && break
    kill -0 "$ACME_DNS_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [[ $out == "0 1" ]]; then
    pass "acme. loopback DNS server answers on 127.0.0.1:$VA_DNS_PORT (A *.$ACME_ZONE -> 127.0.0.1)"
  else
    fail "acme. loopback DNS server answers on 127.0.0.1:$VA_DNS_PORT" "probe: '$out'" "$(tail -n 20 "$ACME_WORK/dns.log")"
    return 1
  fi
}

# --- helpers ----------------------------------------------------------------------
# acme_client OUT CMD...: runs an ACME client bounded by $ACME_TIMEOUT seconds,
# stdin closed, output in OUT; returns its exit status.
acme_client() {
  local out=$1; shift
  echo "\$ $*" >"$out"
  timeout -k 5 "$ACME_TIMEOUT" "$@" </dev/null >>"$out" 2>&1
}

# acme_client_failure RC OUT [LOGFILE]: details for a FAIL line: exit status, the
# end of the client's output and any ACME problem documents in its log.
acme_client_failure() {
  local rc=$1 out=$2 log=${3-}
  ((rc == 124)) && echo "timed out after ${ACME_TIMEOUT}s"
  echo "exit status $rc; last lines of output:"
  tail -n 25 "$out"
  if [[ -n $log && -f $log ]]; then
    echo "ACME problems in $log:"
    grep -E 'urn:ietf:params:acme:error|"detail"' "$log" | tail -n 8
  fi
}

# acme_sorted_sans "DNS:b, DNS:a": the names one per line, sorted.
acme_sorted_sans() { sort <<<"${1//, /$'\n'}"; }

# acme_pkilint LABEL PEM: pkilint_cert (lib.sh), except that a wildcard
# dNSName ("*.x") in PEM is not reported as invalid_domain_name_syntax: the
# PKIX linter checks RFC 1034 preferred name syntax, which has no wildcards
# (RFC 6125 6.4.3 and the CA/B Forum define them). Only that exact finding
# for each wildcard name of the certificate is ignored, and it is listed.
acme_pkilint() {
  local label=$1 pem=$2 w
  local PKILINT_IGNORED=$PKILINT_IGNORED
  while IFS= read -r w; do
    [[ -n $w ]] || continue
    PKILINT_IGNORED="($PKILINT_IGNORED) or (.code == \"pkix.invalid_domain_name_syntax\"
      and (\$p | endswith(\".dNSName\")) and (.message // \"\") == \"Invalid domain name syntax: \\\"$w\\\"\")"
  done < <(ext_text "$pem" "Subject Alternative Name" | grep -oE 'DNS:\*\.[a-z0-9.-]+' | cut -c5-)
  pkilint_cert "$label" "$pem"
}

# acme_check_cert LABEL CERT CHAIN INT_PEM SAN [EKU]: the certificate verifies
# against root.pem with the chain the client received, was issued by the
# intermediate INT_PEM, names exactly SAN (openssl's "DNS:x, IP Address:y", in
# any order), has EKU (openssl's wording; default "TLS Web Server
# Authentication") and lints clean. Records it as obtained.
acme_check_cert() {
  local label=$1 cert=$2 chain=$3 int=$4 san=$5 eku=${6:-TLS Web Server Authentication}
  if ! openssl x509 -in "$cert" -noout 2>/dev/null; then
    fail "$label: the client saved a PEM certificate" "$cert: $(head -c 300 "$cert" 2>&1)"
    return 1
  fi
  ACME_OBTAINED+=("$label|$cert")
  verify_chain "$label: openssl verify -CAfile root.pem -untrusted <chain received>" "$ROOT_PEM" "$cert" "$chain"
  local problems=() t got_san got_eku first_chain
  t=$(cert_text "$cert")
  first_chain="$cert.chain1.pem"
  awk '/-----BEGIN CERTIFICATE-----/{n++} n==1' "$chain" >"$first_chain"
  [[ -n $(cert_fp "$int") && $(cert_fp "$first_chain") == "$(cert_fp "$int")" ]] ||
    problems+=("chain does not start with the expected intermediate: $(openssl x509 -in "$first_chain" -noout -subject 2>&1)")
  [[ $(openssl x509 -in "$cert" -noout -issuer -nameopt RFC2253) == "issuer=$(openssl x509 -in "$int" -noout -subject -nameopt RFC2253 | sed 's/^subject=//')" ]] ||
    problems+=("issuer is not the intermediate: $(openssl x509 -in "$cert" -noout -issuer)")
  got_san=$(ext_text "$cert" "Subject Alternative Name")
  [[ $(acme_sorted_sans "$got_san") == "$(acme_sorted_sans "$san")" ]] || problems+=("subjectAltName is \"$got_san\", expected \"$san\"")
  got_eku=$(ext_text "$cert" "Extended Key Usage")
  [[ $got_eku == "$eku" ]] || problems+=("extendedKeyUsage is \"$got_eku\", expected \"$eku\"")
  grep -q 'CA:FALSE' <<<"$t" || problems+=("not CA:FALSE")
  if ((${#problems[@]})); then
    fail "$label: issuer, subjectAltName, EKU" "${problems[@]}"
  else
    pass "$label: issuer, subjectAltName, EKU" "serial $(cert_serial "$cert"), SAN $got_san, EKU $got_eku"
  fi
  acme_pkilint "$label: pkilint lint_pkix_cert" "$cert"
}

# acme_check_revoked LABEL CA_ID INT_PEM CERT REASON: the CA's CRL (fetched from
# the plain listener, re-fetched for a few seconds) lists CERT's serial with
# REASON (openssl's wording), and openssl verify -crl_check rejects CERT.
acme_check_revoked() {
  local label=$1 ca=$2 int=$3 cert=$4 reason=$5 serial text="" st
  serial=$(cert_serial "$cert")
  ACME_REVOKED+=("$serial|$reason")
  local der="$ACME_WORK/crl-$ca.der" pem="$ACME_WORK/crl-$ca.pem" listed=0
  for _ in $(seq 1 20); do
    st=$(plain_get "/crl/$ca.crl" "$der")
    if [[ $st == 200 ]] && text=$(openssl crl -inform DER -in "$der" -noout -text 2>&1) &&
      grep -qiE "Serial Number: 0*$serial\$" <<<"$text"; then
      listed=1; break
    fi
    sleep 0.5
  done
  if ((listed == 0)); then
    fail "$label: GET /crl/$ca.crl lists serial $serial" "last HTTP status $st" "$(head -n 40 <<<"$text")"
    return 1
  fi
  local entry; entry=$(grep -A4 -iE "Serial Number: 0*$serial\$" <<<"$text")
  if grep -q "$reason" <<<"$entry"; then
    pass "$label: GET /crl/$ca.crl lists serial $serial with reason $reason"
  else
    fail "$label: GET /crl/$ca.crl lists serial $serial with reason $reason" "$entry"
  fi
  local out
  openssl crl -inform DER -in "$der" -out "$pem" 2>/dev/null
  if out=$(openssl verify -crl_check -CAfile "$ROOT_PEM" -untrusted "$int" -CRLfile "$pem" "$cert" 2>&1); then
    fail "$label: openssl verify -crl_check rejects the revoked certificate" "$out"
  elif grep -q 'certificate revoked' <<<"$out"; then
    pass "$label: openssl verify -crl_check rejects the revoked certificate"
  else
    fail "$label: openssl verify -crl_check rejects the revoked certificate" "$out"
  fi
}

# acme_ca_pem ID OUT: the CA's certificate_pem from the admin API.
acme_ca_pem() {
  get_ca "$1" || return 1
  jb '.certificate_pem // empty' >"$2"
  [[ -s $2 ]]
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
  if [[ -z $BOOT_ROOT_ID ]]; then
    fail "acme. EAB: bootstrap root id (section b) known"
    return 0
  fi
  api POST /cas "$(jq -nc --arg p "$BOOT_ROOT_ID" \
    '{kind:"intermediate", parent_id:$p, common_name:"Conformance ACME EAB Intermediate", key_algorithm:"ec-p256", validity_days:1825}')"
  expect_ca "acme. EAB: buy an intermediate under the bootstrap root -> 201 pending" 201 pending || return 0
  int_id=$(jb .id)
  api POST "/cas/$int_id/enable" '{"mode":"generate"}'
  expect_ca "acme. EAB: enable it (generate) -> 200 enabled" 200 enabled "$int_pem" || return 0
  api POST "/cas/$BOOT_ROOT_ID/quota/assign" "$(jq -nc --arg i "$int_id" '{intermediate_id:$i, count:10}')"
  expect "acme. EAB: quota/assign 10 to it" 200 || return 0

  local settings
  settings=$(jq -nc --arg d "eab.$ACME_ZONE" \
    '{enabled:true, require_eab:true, allowed_domains:[$d], allow_ip:false, challenges:["http-01","dns-01"], default_validity_days:30}')
  api PUT "/cas/$int_id/acme" "$settings"
  if [[ $API_STATUS == 200 ]] && jq -e --argjson want "$settings" \
    '. as $got | $want | to_entries | all(.value == $got[.key])' <<<"$API_BODY" >/dev/null 2>&1; then
    pass "acme. EAB: PUT /cas/{id}/acme require_eab, allowed_domains, challenges, default_validity_days" \
      "$(jq -c . <<<"$API_BODY" 2>/dev/null | head -c 400)"
  else
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
  if [[ $API_STATUS == 201 && -n $kid && $hmac =~ ^[A-Za-z0-9_-]+$ ]]; then
    pass "acme. EAB: POST /cas/{id}/acme/eab -> 201 {kid, hmac_key (base64url)}" "kid $kid"
  else
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

# --- inventory ----------------------------------------------------------------------
acme_inventory() {
  local items="[]" cursor="" page
  for _ in $(seq 1 20); do
    api GET "/certificates?source=acme&limit=200${cursor:+&cursor=$cursor}"
    [[ $API_STATUS == 200 ]] || break
    page=$(jq -c '.items // []' <<<"$API_BODY" 2>/dev/null || echo '[]')
    items=$(jq -c --argjson p "$page" '. + $p' <<<"$items")
    cursor=$(jb '.next_cursor // empty')
    [[ -n $cursor ]] || break
  done
  if [[ $API_STATUS != 200 ]]; then
    fail "acme. GET /admin/v1/certificates?source=acme" "$(_api_failure_details)"
    return 0
  fi
  local got want=${#ACME_OBTAINED[@]}
  got=$(jq length <<<"$items")
  local listed; listed=$(jq -r '.[] | "\(.serial // "" | ascii_upcase | ltrimstr("0")) \(.status // "") \(.source // "") \(.ca_id // "")"' <<<"$items")
  local problems=() entry label pem serial
  for entry in "${ACME_OBTAINED[@]}"; do
    IFS='|' read -r label pem <<<"$entry"
    serial=$(cert_serial "$pem")
    grep -q "^$serial " <<<"$listed" || problems+=("not listed: serial $serial ($label)")
  done
  local wrong; wrong=$(jq -r '.[] | select(.source != "acme") | .id' <<<"$items")
  [[ -z $wrong ]] || problems+=("items with another source: $wrong")
  if [[ $got == "$want" ]] && ((${#problems[@]} == 0)); then
    pass "acme. GET /certificates?source=acme lists exactly the $want certificates the clients obtained"
  else
    fail "acme. GET /certificates?source=acme lists exactly the $want certificates the clients obtained" \
      "listed: $got" "${problems[@]}" "$listed"
  fi
  # The ACME revocations are reflected in the inventory.
  problems=()
  local reason
  for entry in "${ACME_REVOKED[@]}"; do
    IFS='|' read -r serial reason <<<"$entry"
    grep -q "^$serial revoked " <<<"$listed" || problems+=("serial $serial: $(grep "^$serial " <<<"$listed" || echo 'not listed')")
  done
  if ((${#ACME_REVOKED[@]} == 0)); then
    :
  elif ((${#problems[@]} == 0)); then
    pass "acme. inventory shows the ${#ACME_REVOKED[@]} ACME-revoked certificates as revoked"
  else
    fail "acme. inventory shows the ${#ACME_REVOKED[@]} ACME-revoked certificates as revoked" "${problems[@]}"
  fi
}

acme_main() {
  if [[ -z ${VA_HTTP_PORT:-} || -z ${VA_TLS_PORT:-} || -z ${VA_DNS_PORT:-} ]]; then
    fail "acme. the server was started with VELLUM_VA_HTTP_PORT/_TLS_PORT/_DNS_RESOLVER" \
      "VA_HTTP_PORT='${VA_HTTP_PORT:-}' VA_TLS_PORT='${VA_TLS_PORT:-}' VA_DNS_PORT='${VA_DNS_PORT:-}'"
    return 0
  fi
  note "validator: http-01 port $VA_HTTP_PORT, tls-alpn-01 port $VA_TLS_PORT, DNS 127.0.0.1:$VA_DNS_PORT"
  acme_start_dns || return 0

  # The default directory (the bootstrap intermediate).
  ACME_DIR_URL="https://localhost:$HTTPS_PORT/acme/directory"
  local dirjson
  if dirjson=$(curl_https -f "$ACME_DIR_URL" 2>&1) &&
    jq -e '(.newNonce, .newAccount, .newOrder, .revokeCert, .keyChange | startswith("https://"))
           and (.meta.profiles | has("tls-server") and has("tls-client"))' <<<"$dirjson" >/dev/null 2>&1; then
    pass "acme. GET /acme/directory: newNonce, newAccount, newOrder, revokeCert, keyChange, meta.profiles tls-server and tls-client" \
      "$(jq -c '.meta' <<<"$dirjson")"
  else
    fail "acme. GET /acme/directory: newNonce, newAccount, newOrder, revokeCert, keyChange, meta.profiles tls-server and tls-client" "$dirjson"
    return 0
  fi
  if [[ -z ${BOOT_INT_ID:-} ]]; then
    fail "acme. bootstrap intermediate id (section b) known"
    return 0
  fi
  if [[ -s $CERTS/boot-int.pem ]]; then
    cp "$CERTS/boot-int.pem" "$ACME_INT_PEM"
  else
    acme_ca_pem "$BOOT_INT_ID" "$ACME_INT_PEM" || { fail "acme. bootstrap intermediate certificate" "$(_api_failure_details)"; return 0; }
  fi
  if jq -e --arg u "https://localhost:$HTTPS_PORT/acme/$BOOT_INT_ID/new-order" '.newOrder == $u' <<<"$dirjson" >/dev/null; then
    pass "acme. /acme/directory is the bootstrap intermediate's (/acme/{id}/...)"
  else
    fail "acme. /acme/directory is the bootstrap intermediate's (/acme/{id}/...)" "$dirjson"
  fi

  acme_certbot
  acme_lego
  acme_inventory
}

_acme_prev_exit=$(trap -p EXIT)
eval "_acme_prev_exit=(${_acme_prev_exit:-})"  # (trap -- 'handler' EXIT)
# shellcheck disable=SC2154 # _acme_rc is set by the trap itself
trap '_acme_rc=$?; set +e; acme_stop_dns; (exit $_acme_rc); '"${_acme_prev_exit[2]:-}" EXIT
_acme_started=$SECONDS
acme_main || true
acme_stop_dns
trap -- "${_acme_prev_exit[2]:-}" EXIT
[[ -n ${_acme_prev_exit[2]:-} ]] || trap - EXIT
note "ACME checks took $((SECONDS - _acme_started))s"
