#!/usr/bin/env python3
"""Prints three free loopback ports for the ACME checks (conformance/lib-acme.sh):
the validator's http-01 port, its tls-alpn-01 port (TCP), and the loopback DNS
server's port (free for both UDP and TCP), none of them one of the ports given
as arguments (those already chosen).

    ports.py [--owner PID] [PORT...]

With --owner, each port is also reserved for PID (a file in
/tmp/vellum-conformance-ports, created exclusively) until PID is gone, so that
scripts picking ports at the same time (certbot.sh and lego.sh under
conformance/run) never get the same one.

The ports are picked now but bound only minutes later (by certbot, lego and
acme/dns.py), so they are taken from below the kernel's ephemeral port range:
there no outgoing connection of the suite (hundreds of curl calls) can grab
one meanwhile, or leave it in TIME_WAIT, which blocks a later bind."""
import random
import os
import socket
import sys

args = sys.argv[1:]
owner = None
if args[:1] == ["--owner"]:
    owner, args = int(args[1]), args[2:]
avoid = {int(a) for a in args}
RESERVED = "/tmp/vellum-conformance-ports"
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


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def reserve(port):
    """True when PORT is now reserved for owner (or no owner was given)."""
    if owner is None:
        return True
    os.makedirs(RESERVED, exist_ok=True)
    path = os.path.join(RESERVED, str(port))
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                with open(path) as f:
                    holder = int(f.read().strip() or 0)
            except (OSError, ValueError):
                holder = 0
            if holder and alive(holder):
                return False
            try:
                os.unlink(path)  # a stale reservation: its owner is gone
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(owner))
        return True
    return False


def pick(udp_too=False):
    for _ in range(500):
        port = random.randrange(low, high)
        if port not in avoid and free(port, udp_too) and reserve(port):
            avoid.add(port)
            return port
    raise SystemExit("ports.py: no free port found")


print(pick(), pick(), pick(udp_too=True))
