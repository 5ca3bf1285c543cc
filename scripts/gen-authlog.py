#!/usr/bin/env python3
"""Deterministic generator of a realistic RFC3164 auth.log, for benchmarks.

    scripts/gen-authlog.py -n 1000000 -o auth.log --csv auth.csv

With --csv, the same lines are also written pre-parsed with the event-table
columns, as siemparse would store them when run with `-z UTC --year 2025`
(source `stdin`), so that `sqlite3 .import` and MariaDB `LOAD DATA` load the
same rows. The first CSV column is `id` (1..N): `sqlite3 .import` into an
existing table needs one field per column; LOAD DATA discards it. NULL is an
empty field (sqlite3 .import stores it as ''; LOAD DATA maps it back to NULL).
"""

import argparse
import csv
import json
import random
import sys
from datetime import datetime, timezone

YEAR = 2025
START = datetime(YEAR, 3, 3, 0, 0, 0, tzinfo=timezone.utc).timestamp()
SPAN_S = 3 * 86400  # timestamps spread over three days, whatever N
RECEIVED_MS = int(datetime(YEAR, 3, 6, 12, 0, 0, tzinfo=timezone.utc).timestamp() * 1000)
MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
COLUMNS = ("id ts received host process pid facility severity user source_host "
           "source_port dest_host dest_port protocol message raw parsed source extra").split()

HOSTS = ["web01", "web02", "db01", "bastion", "mail01"]
STAFF = ["alice", "bob", "carol", "deploy", "backup", "root"]
GUESSES = ["admin", "test", "oracle", "ubuntu", "pi", "guest", "user", "postgres",
           "ftpuser", "git", "support", "administrator", "nagios", "hadoop", "root"]
COMMANDS = ["/usr/bin/id", "/usr/bin/systemctl restart nginx", "/usr/bin/apt-get update",
            "/usr/bin/journalctl -u sshd -n 50", "/bin/cat /var/log/syslog", "/usr/bin/tail -f /var/log/auth.log"]
STAFF_IPS = ["10.0.0.12", "10.0.0.15", "192.168.1.20", "2001:db8:10::15"]
WAN_IP = {"web01": "198.51.100.10", "web02": "198.51.100.11", "db01": "198.51.100.20",
          "bastion": "198.51.100.2", "mail01": "198.51.100.25"}


def attacker(r):
    """A skewed pool: a few loud scanners, a long tail, some IPv6."""
    if r.random() < 0.4:
        return r.choice(["203.0.113.7", "203.0.113.66", "45.155.205.233", "2001:db8:bad::7"])
    if r.random() < 0.05:
        return "2001:db8:%x::%x" % (r.randrange(1, 0xFFFF), r.randrange(1, 0xFFFF))
    return "%d.%d.%d.%d" % (r.choice([45, 61, 89, 103, 117, 141, 185, 193, 218, 222]),
                            r.randrange(256), r.randrange(256), r.randrange(1, 255))


def event(r, host):
    """(process, pid, message, fields) of one random line; fields as siemparse's
    built-in decoders extract them (config/decoders/*.toml)."""
    port = r.randrange(1024, 65536)
    ip = attacker(r)
    pid = r.randrange(1000, 65000)
    k = r.random()
    if k < 0.20:
        u = r.choice(GUESSES)
        return "sshd", pid, f"Failed password for invalid user {u} from {ip} port {port} ssh2", \
            dict(user=u, source_host=ip, source_port=port)
    if k < 0.28:
        u = r.choice(["root", "admin"])
        return "sshd", pid, f"Failed password for {u} from {ip} port {port} ssh2", \
            dict(user=u, source_host=ip, source_port=port)
    if k < 0.36:
        u = r.choice(GUESSES)
        return "sshd", pid, f"Invalid user {u} from {ip} port {port}", \
            dict(user=u, source_host=ip, source_port=port)
    if k < 0.49:
        u = r.choice(GUESSES)
        return "sshd", pid, ("pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 "
                             f"tty=ssh ruser= rhost={ip}  user={u}"), dict(user=u, source_host=ip)
    if k < 0.54:
        u = r.choice(GUESSES)
        return "sshd", pid, f"Connection closed by authenticating user {u} {ip} port {port} [preauth]", \
            dict(user=u, source_host=ip, source_port=port)
    if k < 0.58:
        return "sshd", pid, f"Received disconnect from {ip} port {port}:11: Bye Bye [preauth]", \
            dict(source_host=ip, source_port=port, extra=dict(code="11"))
    if k < 0.60:
        u, ip = r.choice(STAFF), r.choice(STAFF_IPS)
        return "sshd", pid, f"Accepted password for {u} from {ip} port {port} ssh2", \
            dict(user=u, source_host=ip, source_port=port)
    if k < 0.65:
        u, ip = r.choice(STAFF), r.choice(STAFF_IPS)
        key = "".join(r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
                      for _ in range(43))
        return "sshd", pid, f"Accepted publickey for {u} from {ip} port {port} ssh2: ED25519 SHA256:{key}", \
            dict(user=u, source_host=ip, source_port=port)
    if k < 0.69:
        u = r.choice(STAFF)
        return "sshd", pid, f"pam_unix(sshd:session): session opened for user {u}(uid={1000 + STAFF.index(u)}) by (uid=0)", \
            dict(user=u)
    if k < 0.73:
        u = r.choice(STAFF)
        return "sshd", pid, f"pam_unix(sshd:session): session closed for user {u}", dict(user=u)
    if k < 0.77:
        u, cmd, tty = r.choice(STAFF[:4]), r.choice(COMMANDS), f"pts/{r.randrange(4)}"
        return "sudo", None, f"   {u} : TTY={tty} ; PWD=/home/{u} ; USER=root ; COMMAND={cmd}", \
            dict(user=u, extra=dict(tty=tty, target_user="root", command=cmd))
    if k < 0.79:
        u = r.choice(STAFF[:4])
        return "sudo", None, f"pam_unix(sudo:session): session opened for user root(uid=0) by {u}(uid={1000 + STAFF.index(u)})", \
            dict(user="root", extra=dict(by_user=u))
    if k < 0.80:
        u, tty = r.choice(STAFF[:4]), f"pts/{r.randrange(4)}"
        return "su", pid, f"(to root) {u} on {tty}", dict(user=u, extra=dict(target_user="root", tty=tty))
    if k < 0.805:
        u = r.choice(STAFF[:4])
        return "su", pid, f"FAILED su for root by {u}", dict(user=u, extra=dict(target_user="root", result="FAILED"))
    if k < 0.84:
        return "CRON", pid, "pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)", dict(user="root")
    if k < 0.87:
        return "CRON", pid, "pam_unix(cron:session): session closed for user root", dict(user="root")
    # kernel firewall (UFW), IPv4
    ip = "%d.%d.%d.%d" % (r.choice([45, 89, 185, 193]), r.randrange(256), r.randrange(256), r.randrange(1, 255))
    proto, dpt = r.choice([("TCP", 23), ("TCP", 3389), ("TCP", 445), ("TCP", 8080), ("UDP", 161)])
    up = r.randrange(100000, 999999)
    msg = (f"[{up}.{r.randrange(1000000):06d}] [UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:12:34:56:fe:54:00:ab:cd:ef:08:00 "
           f"SRC={ip} DST={WAN_IP[host]} LEN=44 TOS=0x00 PREC=0x00 TTL=243 ID={r.randrange(65536)} "
           f"PROTO={proto} SPT={port} DPT={dpt}" + (" WINDOW=1024 RES=0x00 SYN URGP=0" if proto == "TCP" else " LEN=24"))
    return "kernel", None, msg, dict(source_host=ip, source_port=port, dest_host=WAN_IP[host],
                                     dest_port=dpt, protocol=proto.lower(),
                                     extra={"log_prefix": "[UFW BLOCK]", "in": "eth0"})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--lines", type=int, default=1_000_000)
    ap.add_argument("-o", "--output", default="-", help="auth.log to write (default: stdout)")
    ap.add_argument("--csv", help="also write the lines pre-parsed as CSV here")
    ap.add_argument("--seed", type=int, default=3)
    a = ap.parse_args()

    r = random.Random(a.seed)
    log = sys.stdout if a.output == "-" else open(a.output, "w", encoding="utf-8", newline="\n")
    out = csv.writer(open(a.csv, "w", encoding="utf-8", newline=""), lineterminator="\n") if a.csv else None
    step = SPAN_S / max(a.lines, 1)
    t = START
    for i in range(1, a.lines + 1):
        t += r.expovariate(1 / step)
        sec = int(t)
        host = r.choice(HOSTS)
        process, pid, msg, f = event(r, host)
        d = datetime.fromtimestamp(sec, timezone.utc)
        tag = f"{process}[{pid}]" if pid is not None else process
        raw = f"{MONTHS[d.month - 1]} {d.day:2d} {d:%H:%M:%S} {host} {tag}: {msg}"
        log.write(raw + "\n")
        if out:
            extra = dict(tz="+0000", year_flag=str(YEAR), **f.get("extra", {}))
            g = lambda k: f.get(k, "")
            out.writerow([i, sec * 1000, RECEIVED_MS, host, process, "" if pid is None else pid, "", "",
                          g("user"), g("source_host"), g("source_port"), g("dest_host"), g("dest_port"),
                          g("protocol"), msg.strip(), raw, 1, "stdin",
                          json.dumps(extra, separators=(",", ":"), ensure_ascii=False)])
    log.flush()


if __name__ == "__main__":
    main()
