#!/usr/bin/env python3
"""Prints three free loopback ports for the ACME checks (conformance/acme.sh):
the validator's http-01 port, its tls-alpn-01 port (TCP), and the loopback DNS
server's port (free for both UDP and TCP), none of them one of the ports given
as arguments (those already chosen).

The ports are picked now but bound only minutes later (by certbot, lego and
acme/dns.py), so they are taken from below the kernel's ephemeral port range:
there no outgoing connection of the suite (hundreds of curl calls) can grab
one meanwhile, or leave it in TIME_WAIT, which blocks a later bind."""
import random
import socket
import sys

avoid = {int(a) for a in sys.argv[1:]}
try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        eph_low = int(f.read().split()[0])
except (OSError, ValueError, IndexError):
    eph_low = 32768
low, high = 10000, max(eph_low, 12000)  # [low, high): below the ephemeral range


def free(port, udp_too):
    kinds = [socket.SOCK_STREAM] + ([socket.SOCK_DGRAM] if udp_too else [])
    socks = []
    try:
        for kind in kinds:
            s = socket.socket(socket.AF_INET, kind)
            socks.append(s)
            s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()


def pick(udp_too=False):
    for _ in range(500):
        port = random.randrange(low, high)
        if port not in avoid and free(port, udp_too):
            avoid.add(port)
            return port
    raise SystemExit("ports.py: no free port found")


print(pick(), pick(), pick(udp_too=True))
