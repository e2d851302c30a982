#!/usr/bin/env python3
"""A Python child that talks to singleton-exec with nothing but the socket module, as sd_notify(3)
describes the protocol (the same code works under systemd's Type=notify):

    singleton-exec --ready-timeout 30s --watchdog 5s -- python3 examples/notify/app.py

It says READY=1 once started, keeps a status line up to date, feeds the watchdog from its main
loop, and says STOPPING=1 on SIGTERM. Set SICK=1 in its environment to see a wedged leader step
down: it stops feeding the watchdog after a few rounds.
"""
import os
import signal
import socket
import sys
import time


def notify(message):
    """Sends one notification; silently nothing when not run under a notify socket."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket (a read-only file system)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        s.connect(address)
        s.sendall(message.encode())


def watchdog_interval():
    """Half of WATCHDOG_USEC, if the watchdog is meant for this process."""
    usec = int(os.environ.get("WATCHDOG_USEC", "0") or "0")
    if not usec or os.environ.get("WATCHDOG_PID", str(os.getpid())) != str(os.getpid()):
        return None
    return usec / 2e6


def stop(_sig, _frame):
    notify("STOPPING=1")
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
notify("STATUS=starting")
time.sleep(1)  # opening connections, loading state...
leader = os.environ.get("SINGLETON_EXEC_LEADER_ID", "?")
notify(f"READY=1\nSTATUS=serving as {leader}")

every = watchdog_interval() or 1.0
rounds = 0
while True:
    rounds += 1
    if os.environ.get("SICK") == "1" and rounds > 3:
        notify(f"STATUS=wedged after {rounds - 1} rounds")
        while True:  # alive, but its main loop no longer turns
            time.sleep(3600)
    notify(f"WATCHDOG=1\nSTATUS=serving as {leader}, round {rounds}")
    time.sleep(every)
