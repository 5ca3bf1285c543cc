#!/usr/bin/env python3
"""Deterministic generator of Sigma rules in the style of the public Linux
rules, for the Sigma benchmark (scripts/bench-sigma.sh, issue 13).

    scripts/gen-sigma-rules.py --detections 200 --correlations 20 -o DIR

Writes DIR/det-NNN.yml (one detection each) and DIR/corr-NN.yml (a
correlation with the detection it references, multi-document). The rules
read the fields the shipped mapping (config/sigma/mapping.toml) knows and
the lines of scripts/gen-authlog.py: most never match, as with a real rule
set; some match a few lines in a thousand, a handful match more.
"""

import argparse
import os
import random
import uuid

GUESSES = ["admin", "test", "oracle", "ubuntu", "pi", "guest", "user", "postgres",
           "ftpuser", "git", "support", "administrator", "nagios", "hadoop", "root"]
STAFF = ["alice", "bob", "carol", "deploy"]
SERVICES = ["sshd", "sudo", "auth", "su", None]
# Text of attacks that the generated log never has (the rules stay quiet).
TOOLS = ["wget", "curl", "nc", "ncat", "socat", "python3", "perl", "php", "busybox", "tftp"]
PATHS = ["/tmp/", "/dev/shm/", "/var/tmp/", "/run/user/", "/etc/cron.d/", "/etc/ld.so.preload",
         "/root/.ssh/authorized_keys", "/etc/sudoers.d/", "/usr/lib/systemd/system/"]
WORDS = ["segfault at", "promiscuous mode", "audit: backlog limit exceeded", "Out of memory: Killed process",
         "module verification failed", "kernel: BUG", "possible SYN flooding", "POSSIBLE BREAK-IN ATTEMPT",
         "Did not receive identification string", "Bad protocol version identification",
         "error: maximum authentication attempts exceeded", "Unable to negotiate with",
         "reverse mapping checking getaddrinfo", "PAM service(sshd) ignoring max retries"]


def q(s):
    """A single-quoted YAML scalar."""
    return "'" + s.replace("'", "''") + "'"


def header(r, title, name=None):
    out = [f"title: {title}", f"id: {uuid.UUID(int=r.getrandbits(128), version=4)}"]
    if name:
        out.append(f"name: {name}")
    out += ["status: experimental", "author: siemstress bench", "date: 2026-12-06"]
    return out


def logsource(service):
    out = ["logsource:", "    product: linux"]
    if service:
        out.append(f"    service: {service}")
    return out


def selection(r, i):
    """A detection block: (lines, condition)."""
    k = i % 10
    n = r.randrange(1000, 9999)
    if k == 0:
        # A tool fetching into a staging directory (never in the log).
        return [
            "    selection:",
            "        CommandLine|contains|all:",
            f"            - {q(r.choice(TOOLS) + ' ')}",
            f"            - {q(r.choice(PATHS) + str(n))}",
        ], "selection"
    if k == 1:
        # A kernel/daemon message (never in the log).
        return [
            "    selection:",
            "        Message|contains:",
            f"            - {q(r.choice(WORDS) + ' ' + str(n))}",
            f"            - {q(r.choice(WORDS))}",
        ], "selection"
    if k == 2:
        # Keywords.
        return [
            "    keywords:",
            f"        - {q(r.choice(TOOLS) + ' -e /bin/' + r.choice(['sh', 'bash', 'zsh']))}",
            f"        - {q('chmod +x ' + r.choice(PATHS) + '*')}",
        ], "keywords"
    if k == 3:
        # A guessed user from an attacker network: matches a few lines in a thousand.
        return [
            "    selection:",
            f"        User: {r.choice(GUESSES)}",
            "        SourceIp|cidr:",
            f"            - {r.choice(['45.155.205.0/24', '203.0.113.0/25', '185.%d.0.0/16' % r.randrange(256)])}",
            "        Message|startswith: 'Failed password for '",
            "    filter:",
            "        SourceIp|cidr: '10.0.0.0/8'",
        ], "selection and not filter"
    if k == 4:
        # sudo to an unusual command (never in the log).
        return [
            "    selection:",
            "        ProcessName: sudo",
            "        CommandLine|endswith:",
            f"            - {q(r.choice(PATHS) + r.choice(TOOLS))}",
            f"            - {q('/usr/bin/' + r.choice(TOOLS) + str(n))}",
        ], "selection"
    if k == 5:
        # A regex over the message (rare: a uid the log has for one staff user).
        return [
            "    selection:",
            f"        Message|re: 'session opened for user \\w+\\(uid={1000 + r.randrange(8)}\\)'",
            f"        User|endswith: {q(r.choice(STAFF)[-2:])}",
        ], "selection"
    if k == 6:
        # Two selections, one of them.
        return [
            "    selection_a:",
            f"        Message|contains: {q('Invalid user ' + r.choice(GUESSES) + ' from 45.155.205')}",
            "    selection_b:",
            f"        CommandLine|contains: {q('base64 -d | ' + r.choice(['sh', 'bash']) + str(n))}",
        ], "1 of selection_*"
    if k == 7:
        # A target user and tty (never: the log's sudo targets root).
        return [
            "    selection:",
            f"        TargetUserName: {r.choice(['www-data', 'postgres', 'nobody', 'mysql'])}",
            "        Tty|startswith: 'pts/'",
        ], "selection"
    if k == 8:
        # A firewall drop to a rare port (none in the log).
        return [
            "    selection:",
            f"        DestinationPort: {r.choice([4444, 1337, 31337, 6667, 9001, 5555])}",
            "        Message|contains: 'UFW BLOCK'",
        ], "selection"
    # An accepted login of a guessed account (never: only staff log in).
    return [
        "    selection:",
        "        Message|contains|all:",
        "            - 'Accepted '",
        f"            - {q(' for ' + r.choice(GUESSES) + ' from ')}",
    ], "selection"


def detection(r, i, name=None, service=None):
    lines, cond = selection(r, i)
    svc = service if service is not None else SERVICES[i % len(SERVICES)]
    out = header(r, f"Generated detection {i}", name)
    out.append(f"description: Generated rule {i} for the Sigma benchmark")
    out += logsource(svc)
    out.append("detection:")
    out += lines
    out.append(f"    condition: {cond}")
    out.append(f"level: {r.choice(['low', 'medium', 'high'])}")
    return "\n".join(out) + "\n"


def correlation(r, j):
    """A correlation and the detection it counts."""
    name = f"gen_corr_base_{j}"
    kind = ["event_count", "value_count", "event_count", "value_sum"][j % 4]
    out = header(r, f"Generated correlation {j}")
    out += ["correlation:", f"    type: {kind}", "    rules:", f"        - {name}"]
    if kind == "value_sum":
        # UFW lines carry LEN= only in the message: sum the source ports instead.
        out += ["    group-by:", "        - DestinationPort", "    timespan: 10m",
                "    condition:", "        field: SourcePort", f"        gte: {10**9 + j}"]
    elif kind == "value_count":
        out += ["    group-by:", "        - SourceIp", f"    timespan: {r.choice([5, 10, 30])}m",
                "    condition:", "        field: User", f"        gte: {r.choice([4, 6, 8])}"]
    else:
        out += ["    group-by:", "        - SourceIp", f"    timespan: {r.choice([1, 2, 5])}m",
                "    condition:", f"        gte: {r.choice([10, 20, 40])}"]
    out.append("level: high")
    det = header(r, f"Generated correlation base {j}", name)
    det += logsource("sshd")
    det.append("detection:")
    if kind == "value_sum":
        det += ["    selection:", "        Message|contains: 'UFW BLOCK'",
                f"        DestinationPort: {[23, 3389, 445, 8080][j % 4]}"]
    else:
        det += ["    selection:", "        ProcessName: sshd",
                f"        Message|startswith: {q(['Failed password for ', 'Invalid user ', 'Connection closed by authenticating user '][j % 3])}",
                "        SourceIp|cidr:", f"            - {['45.0.0.0/8', '185.0.0.0/8', '203.0.113.0/24', '2001:db8::/32'][j % 4]}"]
    det.append("    condition: selection")
    det.append("level: low")
    return "\n".join(out) + "\n---\n" + "\n".join(det) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--detections", type=int, default=200)
    p.add_argument("--correlations", type=int, default=20)
    p.add_argument("-o", "--out", required=True)
    p.add_argument("--seed", type=int, default=13)
    a = p.parse_args()
    r = random.Random(a.seed)
    os.makedirs(a.out, exist_ok=True)
    for i in range(a.detections):
        with open(os.path.join(a.out, f"det-{i:03d}.yml"), "w") as f:
            f.write(detection(r, i))
    for j in range(a.correlations):
        with open(os.path.join(a.out, f"corr-{j:02d}.yml"), "w") as f:
            f.write(correlation(r, j))


if __name__ == "__main__":
    main()
