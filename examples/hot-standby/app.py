#!/usr/bin/env python3
"""A hot standby's child in Python, for singleton-exec --hot-standby, with nothing but the standard
library:

    singleton-exec --hot-standby -- python3 examples/hot-standby/app.py

It runs on every replica, warms up once, and acts as the leader only while its role file
($SINGLETON_EXEC_ROLE_FILE: "leader REVISION" or "standby") says so. SIGUSR1 (--role-signal)
follows every change of the file; each role is confirmed with ROLE=leader or ROLE=standby on
$NOTIFY_SOCKET, as sd_notify(3) sends it. The rules (docs/hot-standby.md): the signal is blocked
(or handled) before the first ROLE=; ROLE=standby goes out only once the leader's work has
stopped; each ROLE= names the role acted in when it is sent.
"""
import os
import signal
import socket
import sys


def notify(message):
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket (a read-only file system)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        s.connect(address)
        s.sendall(message.encode())


def read_role():
    with open(os.environ["SINGLETON_EXEC_ROLE_FILE"]) as f:
        words = f.read().split()
    return words[0], (words[1] if len(words) > 1 else None)


class App:
    def __init__(self):
        self.leading = False

    def lead(self, revision):
        print(f"leading (fencing revision {revision})", flush=True)  # start the leader's work

    def stand_by(self):
        print("standing by", flush=True)  # stop the leader's work, completely

    def apply(self):
        role, revision = read_role()
        if role == "leader" and not self.leading:
            self.lead(revision)
            self.leading = True
        elif role == "standby" and self.leading:
            self.stand_by()
            self.leading = False
        notify("ROLE=leader" if self.leading else "ROLE=standby")


# Blocked first, and taken with sigwait: no handler runs in the middle of the work, and no signal
# is lost between two looks at the file.
signals = {signal.SIGUSR1, signal.SIGTERM, signal.SIGINT}
signal.pthread_sigmask(signal.SIG_BLOCK, signals)
print(f"started as {os.environ.get('SINGLETON_EXEC_ROLE')}", flush=True)  # warm up here
app = App()
app.apply()
while True:
    sig = signal.sigwait(signals)
    if sig == signal.SIGUSR1:
        app.apply()
    else:
        if app.leading:
            app.stand_by()
        sys.exit(0)
