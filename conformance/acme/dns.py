#!/usr/bin/env python3
"""Loopback DNS server for the ACME conformance checks (standard library only).

    dns.py --port PORT --zone vellum.test --txt-dir DIR [--watch-pid PID] [--lifetime SECS]

Serves UDP and TCP on 127.0.0.1:PORT and answers like a tiny recursive resolver
for one zone:

- A     for the zone and every name under it: 127.0.0.1
- TXT   for a name N: one record per non-empty line of DIR/N (N lower case,
        no trailing dot); the ACME clients' hook (acme/dns-hook.sh) writes them
- SOA/NS for the zone apex (so zone lookups work)
- other types, or names in the zone without such records: NOERROR, no answer
- names outside the zone: REFUSED

Every record has TTL 0. Exits when PID (the suite's shell) is gone, after
SECS seconds (default 900), or on SIGTERM. One line per query goes to stdout.
"""

import argparse
import os
import signal
import socket
import socketserver
import struct
import sys
import threading
import time

T_A, T_NS, T_SOA, T_TXT, T_AAAA = 1, 2, 6, 16, 28
TYPE_NAMES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 16: "TXT", 28: "AAAA", 257: "CAA"}
RCODE_NOERROR, RCODE_FORMERR, RCODE_SERVFAIL, RCODE_REFUSED, RCODE_NOTIMP = 0, 1, 2, 5, 4


class FormErr(Exception):
    pass


def read_name(msg, off):
    """Decodes a (possibly compressed) name at off; returns (name, next_offset)."""
    labels, jumped, end, hops = [], False, off, 0
    while True:
        if off >= len(msg):
            raise FormErr("name runs past the message")
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if off + 1 >= len(msg):
                raise FormErr("truncated pointer")
            if not jumped:
                end = off + 2
            off = ((n & 0x3F) << 8) | msg[off + 1]
            jumped = True
            hops += 1
            if hops > 20:
                raise FormErr("pointer loop")
            continue
        if n & 0xC0:
            raise FormErr("bad label type")
        off += 1
        if n == 0:
            break
        labels.append(msg[off:off + n].decode("ascii", "replace"))
        off += n
    return ".".join(labels), (end if jumped else off)


def encode_name(name):
    out = b""
    for label in [l for l in name.strip(".").split(".") if l]:
        raw = label.encode("ascii")
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def rr(name, rtype, rdata):
    return encode_name(name) + struct.pack(">HHIH", rtype, 1, 0, len(rdata)) + rdata


def txt_rdata(value):
    raw = value.encode("utf-8")
    chunks = [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""]
    return b"".join(bytes([len(c)]) + c for c in chunks)


class Zone:
    def __init__(self, zone, txt_dir):
        self.zone = zone.strip(".").lower()
        self.txt_dir = txt_dir

    def in_zone(self, name):
        return name == self.zone or name.endswith("." + self.zone)

    def txt(self, name):
        path = os.path.join(self.txt_dir, name)
        try:
            with open(path, encoding="utf-8") as f:
                return [l.strip() for l in f if l.strip()]
        except OSError:
            return []

    def soa(self):
        return (encode_name("ns." + self.zone) + encode_name("hostmaster." + self.zone)
                + struct.pack(">IIIII", 1, 60, 60, 600, 0))

    def answer(self, qname, qtype):
        """(rcode, answer records, authority records)."""
        name = qname.strip(".").lower()
        if not self.in_zone(name):
            return RCODE_REFUSED, [], []
        answers = []
        if qtype in (T_A, 255) and not name.startswith("_"):
            answers.append(rr(qname, T_A, socket.inet_aton("127.0.0.1")))
        if qtype in (T_TXT, 255):
            answers += [rr(qname, T_TXT, txt_rdata(v)) for v in self.txt(name)]
        if qtype in (T_SOA, 255) and name == self.zone:
            answers.append(rr(qname, T_SOA, self.soa()))
        if qtype in (T_NS, 255) and name == self.zone:
            answers.append(rr(qname, T_NS, encode_name("ns." + self.zone)))
        authority = [] if answers else [rr(self.zone, T_SOA, self.soa())]
        return RCODE_NOERROR, answers, authority


def handle(zone, query, max_len, log):
    """The response to one query message (bytes), or None when it is not worth one."""
    if len(query) < 12:
        return None
    qid, flags, qdcount = struct.unpack(">HHH", query[:6])
    if flags & 0x8000:  # a response, not a query
        return None
    opcode = (flags >> 11) & 0xF
    rd = flags & 0x0100
    question, qname, qtype = b"", "", 0
    try:
        if opcode != 0:
            rcode, answers, authority = RCODE_NOTIMP, [], []
        elif qdcount != 1:
            raise FormErr("expected one question")
        else:
            qname, off = read_name(query, 12)
            if off + 4 > len(query):
                raise FormErr("truncated question")
            qtype, _qclass = struct.unpack(">HH", query[off:off + 4])
            question = query[12:off + 4]
            rcode, answers, authority = zone.answer(qname, qtype)
    except FormErr as e:
        rcode, answers, authority, question, qdcount = RCODE_FORMERR, [], [], b"", 0
        log(f"formerr: {e}")
    except Exception as e:  # never crash the server on one query
        rcode, answers, authority = RCODE_SERVFAIL, [], []
        log(f"servfail: {e!r}")
    log(f"{qname or '?'} {TYPE_NAMES.get(qtype, qtype)} -> rcode {rcode}, {len(answers)} answer(s)")
    # QR, opcode copied, AA, RD copied, RA.
    hflags = 0x8000 | (opcode << 11) | 0x0400 | rd | 0x0080 | rcode
    body = b"".join(answers) + b"".join(authority)
    header = struct.pack(">HHHHHH", qid, hflags, 1 if question else 0, len(answers), 0, len(authority))
    msg = header + question + body
    if len(msg) > max_len:  # UDP: truncate, the client asks again over TCP
        header = struct.pack(">HHHHHH", qid, hflags | 0x0200, 1 if question else 0, 0, 0, 0)
        msg = header + question
    return msg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--addr", default="127.0.0.1")
    ap.add_argument("--zone", required=True)
    ap.add_argument("--txt-dir", required=True)
    ap.add_argument("--watch-pid", type=int, default=0)
    ap.add_argument("--lifetime", type=float, default=900)
    args = ap.parse_args()

    zone = Zone(args.zone, args.txt_dir)
    lock = threading.Lock()

    def log(line):
        with lock:
            print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)

    class Udp(socketserver.BaseRequestHandler):
        def handle(self):
            data, sock = self.request
            resp = handle(zone, data, 512, log)
            if resp:
                sock.sendto(resp, self.client_address)

    class Tcp(socketserver.BaseRequestHandler):
        def handle(self):
            self.request.settimeout(10)
            try:
                while True:
                    hdr = self._read(2)
                    if not hdr:
                        return
                    (n,) = struct.unpack(">H", hdr)
                    data = self._read(n)
                    if data is None:
                        return
                    resp = handle(zone, data, 65535, log)
                    if resp:
                        self.request.sendall(struct.pack(">H", len(resp)) + resp)
            except OSError:
                return

        def _read(self, n):
            buf = b""
            while len(buf) < n:
                chunk = self.request.recv(n - len(buf))
                if not chunk:
                    return None
                buf += chunk
            return buf

    class UdpServer(socketserver.ThreadingMixIn, socketserver.UDPServer):
        daemon_threads = True

    class TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
        daemon_threads = True
        allow_reuse_address = True

    servers = [UdpServer((args.addr, args.port), Udp), TcpServer((args.addr, args.port), Tcp)]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    log(f"serving {zone.zone} on {args.addr}:{args.port} (udp+tcp), TXT from {args.txt_dir}")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    deadline = time.monotonic() + args.lifetime
    while not stop.is_set() and time.monotonic() < deadline:
        if args.watch_pid:
            try:
                os.kill(args.watch_pid, 0)
            except ProcessLookupError:
                log(f"process {args.watch_pid} is gone: stopping")
                break
            except PermissionError:
                pass
        stop.wait(1)
    for s in servers:
        s.shutdown()
        s.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
