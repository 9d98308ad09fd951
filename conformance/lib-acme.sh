# shellcheck shell=bash
# shellcheck disable=SC2034 # globals here are read by the scripts that source this file
# ACME (RFC 8555) helpers of certbot.sh and lego.sh (sourced after lib.sh):
# the server is started with its validator pointed at this machine, the names
# used (*.vellum.test) resolve to 127.0.0.1 through a loopback DNS server
# started here (acme/dns.py), which also serves the dns-01 TXT records that
# lego's "exec" provider publishes through acme/dns-hook.sh. Every certificate
# a client obtains must verify against root.pem and lint clean with pkilint;
# revoked ones must be on the CRL; the admin API's inventory (source=acme) must
# list exactly the certificates obtained.
#
# Environment (optional): VELLUM_CONFORMANCE_ACME_TIMEOUT (seconds one client
# run may take, default 90).

ACME_HELPERS="$HERE/acme" # dns.py, dns-hook.sh, ports.py
ACME_ZONE=vellum.test
ACME_TIMEOUT=${VELLUM_CONFORMANCE_ACME_TIMEOUT:-90} # seconds per client run
ACME_DNS_PID=""
ACME_DIR_URL=""  # the default directory (the bootstrap intermediate's)
ACME_WORK="" ACME_TXT="" ACME_INT_PEM=""
# Certificates the clients obtained ("label|pem") and the serials they revoked
# ("serial|reason").
ACME_OBTAINED=()
ACME_REVOKED=()

# acme_start: picks the validator's ports (http-01, tls-alpn-01, DNS), starts
# the server with VELLUM_VA_HTTP_PORT / VELLUM_VA_TLS_PORT /
# VELLUM_VA_DNS_RESOLVER pointing at them, starts the loopback DNS server, and
# reads the default ACME directory. Sets VA_HTTP_PORT, VA_TLS_PORT,
# VA_DNS_PORT, ACME_DIR_URL, ACME_INT_PEM, BOOT_ROOT_ID, BOOT_INT_ID. Returns
# non-zero (after a FAIL) when the ACME checks cannot run.
acme_start() {
  ACME_WORK="$WORK/acme" ACME_TXT="$WORK/acme/txt" ACME_INT_PEM="$WORK/acme/default-int.pem"
  mkdir -p "$ACME_TXT"
  # Below the ephemeral port range (see ports.py), so never one of the
  # server's own listeners, which are bound to port 0; reserved for this
  # script while it runs, so never one another script picked.
  read -r VA_HTTP_PORT VA_TLS_PORT VA_DNS_PORT < <(python3 "$ACME_HELPERS/ports.py" --owner $$)
  SERVER_ENV=(VELLUM_VA_HTTP_PORT="$VA_HTTP_PORT" VELLUM_VA_TLS_PORT="$VA_TLS_PORT"
    VELLUM_VA_DNS_RESOLVER="127.0.0.1:$VA_DNS_PORT")
  start_server
  note "validator: http-01 port $VA_HTTP_PORT, tls-alpn-01 port $VA_TLS_PORT, DNS 127.0.0.1:$VA_DNS_PORT"
  CLEANUPS+=(acme_stop_dns)
  quietly acme_start_dns || return 1
  bootstrap_ids || return 1
  cp "$CERTS/boot-int.pem" "$ACME_INT_PEM"
  ACME_DIR_URL="https://localhost:$HTTPS_PORT/acme/directory"
  ACME_DIRECTORY=$(curl_https -f "$ACME_DIR_URL" 2>&1) ||
    { fail "GET /acme/directory" "$ACME_DIRECTORY"; return 1; }
}

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

