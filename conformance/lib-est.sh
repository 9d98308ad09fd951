# shellcheck shell=bash
# EST (RFC 7030, RFC 8951) helpers of est-openssl.sh, strongswan.sh and
# usg-est.sh (sourced after lib.sh): requests by hand with curl, base64/PKCS#7
# answers read with openssl, the default EST CA (the bootstrap intermediate)
# with an HTTP Basic account, and the lint of every certificate obtained.

EST_BASE=""                         # https://localhost:$HTTPS_PORT/.well-known/est
EST_WORK=""
EST_USER=device
EST_PASS="conformance-$RANDOM-$RANDOM"
EST_NAMES='*.devices.vellum.test'
EST_INT_ID=""                       # the default EST CA (bootstrap intermediate)
EST_INT_PEM=""                      # its certificate
EST_OBTAINED=()                     # "label|pem" of every certificate obtained

# est_call METHOD OP_PATH OUT [CURL_ARGS...]: a request to $EST_BASE/OP_PATH;
# the body goes to OUT, the headers to OUT.hdr. Sets EST_STATUS and EST_CTYPE.
est_call() {
  local method=$1 path=$2 out=$3 meta; shift 3
  : >"$out"
  if meta=$(curl_https -X "$method" -o "$out" -D "$out.hdr" -w '%{http_code}\n%{content_type}' \
    "$@" "$EST_BASE/$path" 2>"$out.err"); then
    EST_STATUS=${meta%%$'\n'*}
    EST_CTYPE=${meta#*$'\n'}
  else
    EST_STATUS=000
    EST_CTYPE=
    cat "$out.err" >>"$out"
  fi
}

est_details() { printf '%s\n' "HTTP $EST_STATUS ${EST_CTYPE:-}" "$(head -c 1000 "$1" 2>/dev/null)"; }

# est_one_line FILE: the body is base64 on one line ending in CRLF.
est_one_line() {
  [[ $(wc -l <"$1") -eq 1 ]] && [[ $(tail -c 2 "$1" | od -An -c | tr -d ' ') == '\r\n' ]]
}

# est_certs FILE OUT_PEM: the certificates of a certs-only base64 answer, as PEM.
est_certs() {
  local out
  out=$(tr -d '\r\n' <"$1" | openssl base64 -d -A | openssl pkcs7 -inform DER -print_certs 2>&1) || {
    echo "$out"
    return 1
  }
  sed -n '/-----BEGIN/,/-----END/p' <<<"$out" >"$2"
  grep -E '^(subject|issuer)=' <<<"$out" || true
}

# est_b64_csr KEY_OUT CSR_B64_OUT SUBJECT [REUSE_KEY]: an EC P-256 CSR as
# base64 DER, wrapped at 64 columns (RFC 8951: servers must tolerate it).
est_b64_csr() {
  local key=$1 out=$2 subj=$3 reuse=${4-}
  if [[ -z $reuse ]]; then
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$key" 2>/dev/null || return 1
  fi
  openssl req -new -key "$key" -subj "$subj" -outform DER 2>/dev/null | openssl base64 >"$out"
}

# est_verify_and_keep LABEL PEM: openssl verify against root.pem (the
# intermediate untrusted), and remember the certificate for pkilint.
est_verify_and_keep() {
  verify_chain "EST. openssl verify: $1" "$ROOT_PEM" "$2" "$EST_INT_PEM"
  EST_OBTAINED+=("$1|$2")
}


# est_start: the server, and on it an HTTP Basic account (EST_USER/EST_PASS,
# names EST_NAMES) on the default EST CA, the bootstrap intermediate
# (EST_INT_ID, its certificate EST_INT_PEM). Setup: the admin API's answers
# are checked in tests/it/est.rs; a refusal FAILs and returns non-zero.
est_start() {
  start_server
  EST_WORK="$WORK/est" EST_INT_PEM="$WORK/est/int.pem"
  EST_BASE="https://localhost:$HTTPS_PORT/.well-known/est"
  mkdir -p "$EST_WORK"
  bootstrap_ids || return 1
  EST_INT_ID=$BOOT_INT_ID
  cp "$CERTS/boot-int.pem" "$EST_INT_PEM"
  api POST "/cas/$EST_INT_ID/est/clients" \
    "$(jq -nc --arg u "$EST_USER" --arg p "$EST_PASS" --arg n "$EST_NAMES" '{username:$u, password:$p, name_patterns:[$n]}')"
  quietly expect "EST. POST /cas/{id}/est/clients creates an HTTP Basic account (201)" 201
}

est_lint() {
  local entry label pem
  if ((${#EST_OBTAINED[@]} == 0)); then
    fail "EST. certificates to lint" "no certificate was obtained over EST"
    return 0
  fi
  for entry in "${EST_OBTAINED[@]}"; do
    IFS='|' read -r label pem <<<"$entry"
    pkilint_cert "EST. lint_pkix_cert: $label" "$pem"
  done
}

