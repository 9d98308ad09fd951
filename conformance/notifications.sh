#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2317 # jq programs are single-quoted; check functions run through wait_for and CLEANUPS
# Notifications through the CLI (`vellum admin notify …`), received by independent
# implementations: a REAL SMTP server (aiosmtpd, writing a Maildir) and a webhook
# receiver in Python (http.server) that checks `Vellum-Signature: t=…,v1=hex(HMAC-
# SHA256(secret, "t.body"))` with Python's own hmac module and records each event by
# id. A webhook and an e-mail channel are added and tested; a certificate is issued
# (`vellum admin cert apply`) and revoked, and a managed certificate made by openssl is
# uploaded. Each event must arrive once, with a valid signature and `Vellum-Event-Id`
# equal to the body's id; the e-mail of managed.uploaded must be in the Maildir with a
# text and an HTML part; `notify deliveries --json` must show them delivered. Last, the
# channel's secret is changed: the receiver, still holding the old one, must count the
# next event as badly signed (and refuse it, so `channel test` fails).
#
#   bash conformance/notifications.sh      (see lib.sh for the environment)
#
# Needs python3 with aiosmtpd (.ci/install-deps). Receivers listen on 127.0.0.1, ports
# 29000–29999. Channel rules, back-off, reminders under the test clock: tests/it.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
conformance_init notifications
if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
  skip "notifications" "python3 cannot import aiosmtpd (run .ci/install-deps)"
  summary
  exit 0
fi

N="$WORK/notify"
mkdir -p "$N"
SECRET="whsec-conformance-$(openssl rand -hex 12)"
printf '%s\n' "$SECRET" >"$N/secret"
chmod 600 "$N/secret"

# --- the webhook receiver (independent of the server's code) -----------------------
cat >"$N/receiver.py" <<'PY'
"""Webhook receiver: verifies Vellum-Signature with Python's hmac, records every POST
as one JSON line {header_id, body_id, type, sig_ok, data}, answers 204 when the
signature is good and 401 when it is not. Binds a free port in 29000-29999 and writes
it to PORTFILE.   receiver.py SECRET_FILE RECORDS PORTFILE"""
import hashlib, hmac, json, random, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

secret = open(sys.argv[1], "rb").read().rstrip(b"\r\n")
records, portfile = sys.argv[2], sys.argv[3]
lock = threading.Lock()

class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        parts = dict(p.split("=", 1) for p in self.headers.get("Vellum-Signature", "").split(",") if "=" in p)
        t, v1 = parts.get("t", ""), parts.get("v1", "")
        want = hmac.new(secret, t.encode() + b"." + body, hashlib.sha256).hexdigest()
        ok = t.isdigit() and abs(time.time() - int(t)) < 300 and hmac.compare_digest(want, v1)
        try:
            event = json.loads(body)
        except ValueError:
            event = {}
        rec = {"header_id": self.headers.get("Vellum-Event-Id"),
               "header_type": self.headers.get("Vellum-Event-Type"),
               "body_id": event.get("id"), "type": event.get("type"), "sig_ok": ok,
               "data": event.get("data")}
        with lock, open(records, "a") as f:
            f.write(json.dumps(rec) + "\n")
        self.send_response(204 if ok else 401)
        self.end_headers()

    def log_message(self, *args):
        pass

for _ in range(200):
    try:
        srv = ThreadingHTTPServer(("127.0.0.1", random.randint(29000, 29999)), Hook)
        break
    except OSError:
        continue
else:
    sys.exit("no free port in 29000-29999")
with open(portfile + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
import os; os.rename(portfile + ".tmp", portfile)
srv.serve_forever()
PY

# mailcheck.py MAILDIR EVENT_ID: the message with Message-ID <EVENT_ID@vellum>: its
# subject, recipients, MIME types and whether its text and HTML parts name the certificate.
cat >"$N/mailcheck.py" <<'PY'
import mailbox, sys
box, want = mailbox.Maildir(sys.argv[1], create=False), "<%s@vellum>" % sys.argv[2]
for m in box:
    if m.get("Message-ID", "").strip() != want:
        continue
    types = [p.get_content_type() for p in m.walk()]
    text = [p.get_payload(decode=True).decode() for p in m.walk() if p.get_content_type() == "text/plain"]
    html = [p.get_payload(decode=True).decode() for p in m.walk() if p.get_content_type() == "text/html"]
    print("subject=%s" % " ".join(str(m["Subject"]).split()))
    print("to=%s" % m["To"])
    print("types=%s" % ",".join(types))
    print("text_names_it=%s" % any("uploaded.notify.example" in t for t in text))
    print("html_names_it=%s" % any("uploaded.notify.example" in h and "<" in h for h in html))
    sys.exit(0)
sys.exit(1)
PY

RECEIVER_PID="" SMTP_PID=""
stop_helpers() {
  local p
  for p in $RECEIVER_PID $SMTP_PID; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  RECEIVER_PID="" SMTP_PID=""
  return 0
}
CLEANUPS+=(stop_helpers)

# wait_for CMD...: up to 15 s until CMD succeeds.
wait_for() {
  local i
  for i in $(seq 1 75); do
    "$@" && return 0
    sleep 0.2
  done
  return 1
}
port_open() { python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$1" 2>/dev/null; }

start_helpers() {
  : >"$N/records.jsonl"
  python3 "$N/receiver.py" "$N/secret" "$N/records.jsonl" "$N/hook.port" >"$N/receiver.log" 2>&1 &
  RECEIVER_PID=$!
  wait_for test -s "$N/hook.port" || { fail "webhook receiver starts" "$(cat "$N/receiver.log")"; return 1; }
  HOOK_PORT=$(cat "$N/hook.port")
  for _ in 1 2 3 4 5; do
    SMTP_PORT=$(python3 -c '
import random, socket
for _ in range(200):
    p = random.randint(29000, 29999)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
    finally:
        s.close()')
    python3 -m aiosmtpd -n -l "127.0.0.1:$SMTP_PORT" -c aiosmtpd.handlers.Mailbox "$N/maildir" \
      >"$N/smtp.log" 2>&1 &
    SMTP_PID=$!
    if wait_for port_open "$SMTP_PORT"; then
      pass "receivers listen: webhook (Python http.server + hmac) on 127.0.0.1:$HOOK_PORT, aiosmtpd on 127.0.0.1:$SMTP_PORT"
      return 0
    fi
    kill "$SMTP_PID" 2>/dev/null; wait "$SMTP_PID" 2>/dev/null || true
    SMTP_PID=""
  done
  fail "aiosmtpd starts" "$(cat "$N/smtp.log")"
  return 1
}

SERVER_ENV=(VELLUM_NOTIFICATIONS_DELIVERY_INTERVAL_MS=200 'VELLUM_NOTIFICATIONS_NETWORKS=["127.0.0.0/8"]')
start_server
bootstrap_ids || finish
start_helpers || finish

cli() {
  CLI_RC=0
  CLI_OUT=$("$BIN" admin --url "https://localhost:$HTTPS_PORT" --data-dir "$DATA" "$@" 2>&1 </dev/null) || CLI_RC=$?
  { echo "\$ vellum admin $*"; echo "(exit $CLI_RC)"; printf '%s\n' "$CLI_OUT" | head -n 30; echo; } >>"$WORK/cli.log"
}
cli_json_ok() { ((CLI_RC == 0)) && jq -e "$1" <<<"$CLI_OUT" >/dev/null 2>&1; }

# records JQ_FILTER: the receiver's records (one JSON array) through a filter.
records() { jq -c -s "$@" "$N/records.jsonl"; }

# The checks, in order; each failure is reported and counted, and the ones later
# checks cannot do without end the run (return).
run_checks() {
  # =================================================================================
  section "channels (vellum admin notify channel …)"
  # =================================================================================
  cli --json notify channel add-webhook --name conformance-hook \
    --webhook-url "http://127.0.0.1:$HOOK_PORT/hook" --secret-file "$N/secret"
  HOOK_ID=$(jq -r '.id // empty' <<<"$CLI_OUT" 2>/dev/null || true)
  if cli_json_ok '.kind == "webhook" and .secret_set == true and .events == ["*"] and (has("secret") | not)' &&
    ! grep -qF "$SECRET" <<<"$CLI_OUT"; then
    pass "notify channel add-webhook --secret-file F: created, every event, secret set and not echoed" "id $HOOK_ID"
  else
    fail "notify channel add-webhook --secret-file F" "exit $CLI_RC" "$CLI_OUT"
    return 0
  fi
  cli --json notify channel add-email --name conformance-mail --smtp-host 127.0.0.1 --smtp-port "$SMTP_PORT" \
    --tls none --from pki@conformance.example --to ops@conformance.example --to oncall@conformance.example \
    --event managed.uploaded
  MAIL_ID=$(jq -r '.id // empty' <<<"$CLI_OUT" 2>/dev/null || true)
  if cli_json_ok '.kind == "email" and .smtp.port == '"$SMTP_PORT"' and (.to | length) == 2 and .events == ["managed.uploaded"]'; then
    pass "notify channel add-email --smtp-host --smtp-port --tls none --from --to --to --event managed.uploaded" "id $MAIL_ID"
  else
    fail "notify channel add-email …" "exit $CLI_RC" "$CLI_OUT"
    return 0
  fi
  cli notify channel list
  if ((CLI_RC == 0)) && grep -qF "$HOOK_ID" <<<"$CLI_OUT" && grep -qF "$MAIL_ID" <<<"$CLI_OUT" &&
    grep -q 'ops@conformance.example,oncall@conformance.example' <<<"$CLI_OUT" && ! grep -qF "$SECRET" <<<"$CLI_OUT"; then
    pass "notify channel list: a table of both (URL, recipients; no secret)"
  else
    fail "notify channel list: a table of both" "exit $CLI_RC" "$CLI_OUT"
  fi

  cli --json notify channel test "$HOOK_ID"
  TEST_HOOK_EVENT=$(jq -r '.event_id // empty' <<<"$CLI_OUT" 2>/dev/null || true)
  if cli_json_ok '.delivered == true and .remote_status == 204' &&
    [[ $(records --arg e "$TEST_HOOK_EVENT" '[.[] | select(.body_id == $e and .type == "test" and .sig_ok)] | length') == 1 ]]; then
    pass "notify channel test WEBHOOK: delivered (204); the receiver got the test event once, signature valid"
  else
    fail "notify channel test WEBHOOK: delivered, signature valid" "exit $CLI_RC" "$CLI_OUT" "$(cat "$N/records.jsonl")"
  fi
  cli --json notify channel test "$MAIL_ID"
  TEST_MAIL_EVENT=$(jq -r '.event_id // empty' <<<"$CLI_OUT" 2>/dev/null || true)
  if cli_json_ok '.delivered == true and .remote_status == 250'; then
    pass "notify channel test MAIL: delivered (SMTP 250)"
  else
    fail "notify channel test MAIL: delivered (SMTP 250)" "exit $CLI_RC" "$CLI_OUT" "$(cat "$N/smtp.log")"
  fi

  # =================================================================================
  section "events of issuance, revocation and upload"
  # =================================================================================
  cli --json cert apply --ca "$BOOT_INT_ID" --cn notify.conformance.example --san dns:notify.conformance.example --days 90
  CERT_ID=$(jq -r '.id // empty' <<<"$CLI_OUT" 2>/dev/null || true)
  [[ -n $CERT_ID ]] || fail "vellum admin cert apply (for certificate.issued)" "exit $CLI_RC" "$CLI_OUT" || true
  cli cert revoke "$CERT_ID" --reason superseded
  ((CLI_RC == 0)) || fail "vellum admin cert revoke (for certificate.revoked)" "exit $CLI_RC" "$CLI_OUT" || true

  # A managed certificate made by openssl (its own CA), valid 90 days: no reminder due.
  if openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc -keyout "$N/ca.key" -out "$N/ca.pem" \
      -subj "/CN=Notify Conformance CA" -days 365 \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign >/dev/null 2>&1 &&
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc -keyout "$N/leaf.key" -out "$N/leaf.csr" \
      -subj "/CN=uploaded.notify.example" >/dev/null 2>&1 &&
    printf 'subjectAltName=DNS:uploaded.notify.example\n' >"$N/leaf.ext" &&
    openssl x509 -req -in "$N/leaf.csr" -CA "$N/ca.pem" -CAkey "$N/ca.key" -set_serial "0x$(openssl rand -hex 8)" \
      -days 90 -extfile "$N/leaf.ext" -out "$N/leaf.pem" >/dev/null 2>&1; then
    cli --json managed upload --name notify-upload --cert "$N/leaf.pem" --key "$N/leaf.key" --chain "$N/ca.pem"
    MANAGED_ID=$(jq -r '.id // empty' <<<"$CLI_OUT" 2>/dev/null || true)
    [[ -n $MANAGED_ID ]] || fail "vellum admin managed upload (for managed.uploaded)" "exit $CLI_RC" "$CLI_OUT" || true
  else
    fail "openssl makes a CA and a leaf to upload" || true
    MANAGED_ID=""
  fi

  # The three events, signed and once each, at the webhook.
  arrived() {
    [[ $(records '[.[] | select(.type == "certificate.issued" or .type == "certificate.revoked" or .type == "managed.uploaded")] | length') -ge 3 ]]
  }
  if wait_for arrived; then
    sleep 1 # anything that would arrive twice has had time to
    pass "certificate.issued, certificate.revoked and managed.uploaded reach the webhook"
  else
    fail "certificate.issued, certificate.revoked and managed.uploaded reach the webhook" "$(cat "$N/records.jsonl")"
  fi
  check_event() {
    local type=$1 field=$2 id=$3
    local got
    got=$(records --arg t "$type" --arg id "$id" --arg f "$field" \
      '[.[] | select(.type == $t)] | {n: length, ok: all(.[]; .sig_ok and .header_id == .body_id and .header_type == $t and (.data[$f].id == $id))}')
    if [[ -n $id && $(jq -c . <<<"$got") == '{"n":1,"ok":true}' ]]; then
      pass "$type arrives once, signature valid (Python hmac), Vellum-Event-Id = body id, data.$field.id = $id"
    else
      fail "$type arrives once, signature valid, Vellum-Event-Id = body id, data.$field.id = $id" "$got" \
        "$(records --arg t "$type" '[.[] | select(.type == $t)]')"
    fi
  }
  check_event certificate.issued certificate "$CERT_ID"
  check_event certificate.revoked certificate "$CERT_ID"
  check_event managed.uploaded certificate "$MANAGED_ID"
  dups=$(records '[group_by(.body_id)[] | select(length > 1) | .[0].body_id]')
  bad=$(records '[.[] | select(.sig_ok | not)] | length')
  if [[ $dups == "[]" && $bad == 0 ]]; then
    pass "no event id arrived twice, no bad signature ($(records 'length') events: $(records '[.[].type] | join(", ")'))"
  else
    fail "no event id arrived twice, no bad signature" "duplicates: $dups" "bad signatures: $bad"
  fi

  # =================================================================================
  section "the delivery log (vellum admin notify deliveries)"
  # =================================================================================
  delivered_all() {
    cli --json notify deliveries --limit 100
    ((CLI_RC == 0)) || return 1
    jq -e --arg h "$HOOK_ID" --arg m "$MAIL_ID" '
      ([.items[] | select(.channel_id == $h and (.event == "certificate.issued" or .event == "certificate.revoked" or .event == "managed.uploaded") and .status == "delivered")] | length) == 3
      and ([.items[] | select(.channel_id == $m and .event == "managed.uploaded" and .status == "delivered")] | length) == 1' \
      <<<"$CLI_OUT" >/dev/null 2>&1
  }
  if wait_for delivered_all; then
    pass "notify deliveries --json: the webhook's three events and the e-mail's managed.uploaded are delivered"
  else
    fail "notify deliveries --json: all delivered" "$CLI_OUT"
  fi
  # The log's event ids are the ids the receiver saw.
  log_ids=$(jq -c --arg h "$HOOK_ID" '[.items[] | select(.channel_id == $h and .event != "test") | .event_id] | sort' <<<"$CLI_OUT" 2>/dev/null || echo '?')
  seen_ids=$(records '[.[] | select(.type != "test") | .body_id] | sort')
  if [[ $log_ids == "$seen_ids" ]]; then
    pass "the delivery log's event ids are exactly the ids the receiver recorded"
  else
    fail "the delivery log's event ids are exactly the ids the receiver recorded" "log: $log_ids" "receiver: $seen_ids"
  fi
  MAIL_DELIVERY=$(jq -r --arg m "$MAIL_ID" '[.items[] | select(.channel_id == $m and .event == "managed.uploaded")][0] | .id // empty' <<<"$CLI_OUT" 2>/dev/null || true)
  MAIL_EVENT=$(jq -r --arg m "$MAIL_ID" '[.items[] | select(.channel_id == $m and .event == "managed.uploaded")][0] | .event_id // empty' <<<"$CLI_OUT" 2>/dev/null || true)
  cli notify deliveries --channel "$HOOK_ID" --event certificate.revoked
  if ((CLI_RC == 0)) && [[ $(grep -c 'certificate.revoked' <<<"$CLI_OUT") == 1 ]] && grep -q 'delivered' <<<"$CLI_OUT" &&
    ! grep -q 'managed.uploaded' <<<"$CLI_OUT"; then
    pass "notify deliveries --channel ID --event certificate.revoked: a table of that one"
  else
    fail "notify deliveries --channel ID --event certificate.revoked: a table of that one" "exit $CLI_RC" "$CLI_OUT"
  fi
  cli --json notify delivery "$MAIL_DELIVERY"
  if cli_json_ok '.status == "delivered" and .payload.type == "managed.uploaded" and .payload.id == .event_id'; then
    pass "notify delivery ID: the event as sent (payload.id = event_id)"
  else
    fail "notify delivery ID: the event as sent" "exit $CLI_RC" "$CLI_OUT"
  fi

  # =================================================================================
  section "e-mail in the Maildir (aiosmtpd)"
  # =================================================================================
  # mail_check EVENT_ID: the message with Message-ID <EVENT_ID@vellum>: its subject, and
  # whether it is multipart/alternative with a text/plain and a text/html part.
  mail_check() {
    python3 "$N/mailcheck.py" "$N/maildir" "$1"
  }
  if [[ -n $MAIL_EVENT ]] && out=$(wait_for mail_check "$MAIL_EVENT"); then
    if grep -q '^types=multipart/alternative,text/plain,text/html$' <<<"$out" &&
      grep -q '^text_names_it=True$' <<<"$out" && grep -q '^html_names_it=True$' <<<"$out" &&
      grep -q '^subject=\[Vellum\] .*uploaded' <<<"$out" && grep -q 'oncall@conformance.example' <<<"$out"; then
      pass "the managed.uploaded e-mail is in the Maildir: multipart/alternative with text and HTML naming the certificate, to both recipients" \
        "$(grep '^subject=' <<<"$out")"
    else
      fail "the managed.uploaded e-mail: text and HTML parts naming the certificate" "$out"
    fi
  else
    fail "the managed.uploaded e-mail (Message-ID <$MAIL_EVENT@vellum>) arrives in the Maildir" \
      "$(find "$N/maildir" 2>&1 | head -n 20)" "$(tail -n 20 "$N/smtp.log")"
  fi
  if [[ -n $TEST_MAIL_EVENT ]] && mail_check "$TEST_MAIL_EVENT" >/dev/null; then
    pass "the test e-mail is in the Maildir too"
  else
    fail "the test e-mail is in the Maildir too" "event $TEST_MAIL_EVENT"
  fi
  mails=$(python3 -c 'import mailbox,sys; print(len(mailbox.Maildir(sys.argv[1], create=False)))' "$N/maildir")
  if [[ $mails == 2 ]]; then
    pass "exactly two e-mails (the test and managed.uploaded: the channel's only event)"
  else
    fail "exactly two e-mails (the test and managed.uploaded)" "got $mails"
  fi

  # =================================================================================
  section "redeliver, settings, quota"
  # =================================================================================
  cli --json notify deliveries --event certificate.issued --channel "$HOOK_ID"
  ISSUED_DELIVERY=$(jq -r '.items[0].id // empty' <<<"$CLI_OUT" 2>/dev/null || true)
  ISSUED_EVENT=$(jq -r '.items[0].event_id // empty' <<<"$CLI_OUT" 2>/dev/null || true)
  cli notify redeliver "$ISSUED_DELIVERY"
  redelivered() { [[ $(records --arg e "$ISSUED_EVENT" '[.[] | select(.body_id == $e and .sig_ok)] | length') == 2 ]]; }
  if ((CLI_RC == 0)) && wait_for redelivered; then
    pass "notify redeliver ID: the event arrives again with the same id ($ISSUED_EVENT), signed"
  else
    fail "notify redeliver ID: the event arrives again with the same id" "exit $CLI_RC" "$CLI_OUT"
  fi
  cli notify settings --reminder-days 14,3 --quota-low-percent 20
  if ((CLI_RC == 0)) && grep -q 'reminder days: *14,3' <<<"$CLI_OUT" && grep -q '20 % of assigned' <<<"$CLI_OUT"; then
    pass "notify settings --reminder-days 14,3 --quota-low-percent 20"
  else
    fail "notify settings --reminder-days 14,3 --quota-low-percent 20" "exit $CLI_RC" "$CLI_OUT"
  fi
  cli --json notify quota
  before=$(jq -r '.total // empty' <<<"$CLI_OUT" 2>/dev/null || true)
  cli --json notify quota purchase 5
  if [[ -n $before ]] && cli_json_ok ".total == $before + 5"; then
    pass "notify quota purchase 5: the total grows by 5 ($before → $((before + 5)))"
  else
    fail "notify quota purchase 5: the total grows by 5" "before: $before" "exit $CLI_RC" "$CLI_OUT"
  fi

  # =================================================================================
  section "a bad signature is caught"
  # =================================================================================
  printf '%s\n' "whsec-other-$(openssl rand -hex 12)" >"$N/other-secret"
  cli notify channel update "$HOOK_ID" --secret-file "$N/other-secret"
  ((CLI_RC == 0)) || fail "notify channel update ID --secret-file OTHER" "exit $CLI_RC" "$CLI_OUT" || true
  cli notify channel test "$HOOK_ID"
  if ((CLI_RC != 0)) && grep -q 'not delivered' <<<"$CLI_OUT" && grep -q '401' <<<"$CLI_OUT" &&
    [[ $(records '[.[] | select(.sig_ok | not)] | length') == 1 ]]; then
    pass "after the secret changed, the receiver (old secret) counts the test event as badly signed and refuses it; channel test exits non-zero (401)"
  else
    fail "the receiver with a wrong secret counts a bad signature" "exit $CLI_RC" "$CLI_OUT" "$(records '[.[] | select(.sig_ok | not)]')"
  fi

  cli notify channel delete "$MAIL_ID"
  cli --json notify channel list
  if cli_json_ok "[.items[].id] == [\"$HOOK_ID\"]"; then
    pass "notify channel delete ID: the channel is gone from the list"
  else
    fail "notify channel delete ID: the channel is gone from the list" "exit $CLI_RC" "$CLI_OUT"
  fi
}
run_checks || true

finish
