#!/usr/bin/env python3
"""A small ACME (RFC 8555) client for conformance/faults.sh, where lego and certbot do not
fit: it keeps going through server errors and records every answer, and it can begin an
order on one server and finish it on another.

  client.py load   --directory URL --cafile PEM --http-port P --prefix NAME --stop FILE
                   --results FILE --acked FILE
      Orders certificates for NAME-<n>.vellum.test (http-01, answered by this process on
      127.0.0.1:P) one after another until FILE exists. Every answer of the server is a
      line "acme|START|STATUS|SECONDS|RETRY_AFTER|CONTENT_TYPE" of --results (START: Unix
      time); the serial of every certificate
      obtained (only once downloaded) is a line of --acked; the first answer of each 5xx
      status is kept in RESULTS.acme-STATUS.
  client.py begin  --directory URL --cafile PEM --name NAME --state FILE
      Creates an account and an order; writes what `finish` needs to FILE (JSON).
  client.py finish --directory URL --cafile PEM --http-port P --state FILE --acked FILE
                   [--deadline S]
      Answers the order's http-01 challenge (POSTs it only if still pending), polls (for
      at most S seconds, default 60), finalizes and downloads the certificate; appends its
      serial to --acked and prints it.
  client.py answer --directory URL --cafile PEM --http-port P --state FILE --delay S
                   --via PORT
      Starts an http-01 responder on 127.0.0.1:P that answers after S seconds, POSTs the
      order's http-01 challenge to the server listening on PORT (the URLs signed are the
      directory's, so one replica behind a balancer can be chosen), prints the status it
      answered, and keeps the responder running until killed.

Each request is bounded by a 60 s timeout. Exit status 0 on success (load: always)."""

import argparse
import base64
import hashlib
import http.server
import json
import os
import sys
import threading
import time
import urllib.parse

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.x509.oid import NameOID

TOKENS = {}


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


DELAY = 0.0


class Responder(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(DELAY)
        token = self.path.rsplit("/", 1)[-1]
        value = TOKENS.get(token)
        if value is None:
            self.send_response(404)
            self.end_headers()
            return
        body = value.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def start_responder(port):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Responder)
    threading.Thread(target=server.serve_forever, daemon=True).start()


class Failed(Exception):
    def __init__(self, status, body):
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status


class Client:
    def __init__(self, directory, cafile, results=None, key=None, kid=None):
        self.http = requests.Session()
        # REQUESTS_CA_BUNDLE and proxies from the environment would win over a session's
        # `verify`: the server's root is given with every request instead.
        self.http.trust_env = False
        self.cafile = cafile
        self.results = results
        self.directory_url = directory
        self.dir = None
        self.key = key or ec.generate_private_key(ec.SECP256R1())
        self.kid = kid
        self.nonce = None
        self.via = None  # a port: requests go to localhost:via, whatever the URL says

    def record(self, status, started, headers):
        if self.results:
            with open(self.results, "a") as f:
                f.write(
                    f"acme|{self.started_at:.6f}|{status}|{time.monotonic() - started:.3f}|"
                    f"{headers.get('Retry-After', '')}|{headers.get('Content-Type', '')}\n"
                )

    def request(self, method, url, **kw):
        started = time.monotonic()
        self.started_at = time.time()
        if self.via:
            u = urllib.parse.urlsplit(url)
            url = urllib.parse.urlunsplit(u._replace(netloc=f"localhost:{self.via}"))
        try:
            r = self.http.request(method, url, timeout=60, verify=self.cafile, **kw)
        except requests.RequestException as e:
            self.record("000", started, {})
            raise Failed(0, str(e))
        self.record(r.status_code, started, r.headers)
        if r.status_code >= 500 and self.results:
            first = f"{self.results}.acme-{r.status_code}"
            if not os.path.exists(first):
                with open(first, "w") as f:
                    f.write(r.text)
        if "Replay-Nonce" in r.headers:
            self.nonce = r.headers["Replay-Nonce"]
        return r

    def directory(self):
        if self.dir is None:
            r = self.request("GET", self.directory_url)
            if r.status_code != 200:
                raise Failed(r.status_code, r.text)
            self.dir = r.json()
        return self.dir

    def jwk(self):
        n = self.key.public_key().public_numbers()
        return {
            "crv": "P-256",
            "kty": "EC",
            "x": b64(n.x.to_bytes(32, "big")),
            "y": b64(n.y.to_bytes(32, "big")),
        }

    def thumbprint(self):
        j = json.dumps(self.jwk(), sort_keys=True, separators=(",", ":")).encode()
        return b64(hashlib.sha256(j).digest())

    def post(self, url, payload, expect=(200,)):
        for _ in range(5):
            if not self.nonce:
                r = self.request("HEAD", self.directory()["newNonce"])
                if r.status_code not in (200, 204):
                    raise Failed(r.status_code, r.text)
            protected = {"alg": "ES256", "nonce": self.nonce, "url": url}
            if self.kid:
                protected["kid"] = self.kid
            else:
                protected["jwk"] = self.jwk()
            self.nonce = None
            p64 = b64(json.dumps(protected).encode())
            body64 = "" if payload is None else b64(json.dumps(payload).encode())
            der = self.key.sign(f"{p64}.{body64}".encode(), ec.ECDSA(hashes.SHA256()))
            r_, s_ = utils.decode_dss_signature(der)
            sig = b64(r_.to_bytes(32, "big") + s_.to_bytes(32, "big"))
            r = self.request(
                "POST",
                url,
                data=json.dumps({"protected": p64, "payload": body64, "signature": sig}),
                headers={"Content-Type": "application/jose+json"},
            )
            if r.status_code == 400 and "badNonce" in r.text:
                continue
            if r.status_code not in expect:
                raise Failed(r.status_code, r.text)
            return r
        raise Failed(400, "badNonce five times")

    def account(self):
        r = self.post(
            self.directory()["newAccount"], {"termsOfServiceAgreed": True}, (200, 201)
        )
        self.kid = r.headers["Location"]

    def order(self, name):
        r = self.post(
            self.directory()["newOrder"],
            {"identifiers": [{"type": "dns", "value": name}]},
            (201,),
        )
        o = r.json()
        o["url"] = r.headers["Location"]
        return o

    def finish(self, order, name, deadline=60):
        """Answers the http-01 challenges, finalizes, downloads; returns the serial."""
        for authz_url in order["authorizations"]:
            authz = self.post(authz_url, None).json()
            if authz["status"] == "valid":
                continue
            ch = next(c for c in authz["challenges"] if c["type"] == "http-01")
            TOKENS[ch["token"]] = f"{ch['token']}.{self.thumbprint()}"
            if ch["status"] == "pending":
                self.post(ch["url"], {})
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
            .sign(key, hashes.SHA256())
        )
        end = time.monotonic() + deadline
        o = self.post(order["url"], None).json()
        while o["status"] in ("pending", "processing"):
            if time.monotonic() > end:
                raise Failed(0, f"order still {o['status']}")
            time.sleep(0.2)
            o = self.post(order["url"], None).json()
        if o["status"] == "ready":
            der = csr.public_bytes(serialization.Encoding.DER)
            o = self.post(order["finalize"], {"csr": b64(der)}).json()
            while o["status"] == "processing":
                time.sleep(0.2)
                o = self.post(order["url"], None).json()
        if o["status"] != "valid":
            raise Failed(0, f"order is {o['status']}: {json.dumps(o)[:300]}")
        pem = self.post(o["certificate"], None).content
        cert = x509.load_pem_x509_certificate(pem)
        return format(cert.serial_number, "x")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["load", "begin", "finish", "answer"])
    ap.add_argument("--directory", required=True)
    ap.add_argument("--cafile", required=True)
    ap.add_argument("--http-port", type=int)
    ap.add_argument("--prefix", default="load")
    ap.add_argument("--name")
    ap.add_argument("--stop")
    ap.add_argument("--results")
    ap.add_argument("--acked")
    ap.add_argument("--state")
    ap.add_argument("--deadline", type=float, default=60)
    ap.add_argument("--delay", type=float, default=0)
    ap.add_argument("--via", type=int)
    a = ap.parse_args()

    if a.mode == "load":
        start_responder(a.http_port)
        c = Client(a.directory, a.cafile, a.results)
        n = 0
        while not os.path.exists(a.stop):
            n += 1
            name = f"{a.prefix}-{n}.vellum.test"
            try:
                if not c.kid:
                    c.account()
                serial = c.finish(c.order(name), name)
                with open(a.acked, "a") as f:
                    f.write(serial + "\n")
            except Failed as e:
                print(f"{name}: {e}", file=sys.stderr)
                time.sleep(0.2)
        return 0

    if a.mode == "begin":
        c = Client(a.directory, a.cafile)
        c.account()
        o = c.order(a.name)
        key = c.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        with open(a.state, "w") as f:
            json.dump({"key": key, "kid": c.kid, "order": o, "name": a.name}, f)
        print(o["url"])
        return 0

    with open(a.state) as f:
        st = json.load(f)
    global DELAY
    DELAY = a.delay
    start_responder(a.http_port)
    key = serialization.load_pem_private_key(st["key"].encode(), None)
    c = Client(a.directory, a.cafile, key=key, kid=st["kid"])
    if a.mode == "answer":
        c.via = a.via
        authz = c.post(st["order"]["authorizations"][0], None).json()
        ch = next(x for x in authz["challenges"] if x["type"] == "http-01")
        TOKENS[ch["token"]] = f"{ch['token']}.{c.thumbprint()}"
        print(c.post(ch["url"], {}).json()["status"], flush=True)
        while True:
            time.sleep(3600)
    serial = c.finish(st["order"], st["name"], a.deadline)
    with open(a.acked, "a") as f:
        f.write(serial + "\n")
    print(serial)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failed as e:
        print(f"ACME: {e}", file=sys.stderr)
        sys.exit(1)
