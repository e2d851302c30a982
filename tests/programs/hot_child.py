#!/usr/bin/env python3
"""A hot standby's child (singleton-exec --hot-standby), as docs/hot-standby.md describes one, with
nothing but Python's standard library: it runs as a standby, acts as the leader when its role file
says `leader REVISION`, and confirms each role with ROLE= on $NOTIFY_SOCKET.

Usage: hot_child.py DIR NAME [--never-demote] [--never-promote] [--start-delay SECONDS]

Acting as the leader means holding an exclusive flock on DIR/lock; it is taken (without waiting)
before ROLE=leader is sent and released before ROLE=standby is sent. Each line appended to
DIR/events.log is `EVENT NAME PID BOOT_NS DETAIL`:

    start NAME PID BOOT_NS role=ENV_ROLE file=FILE_LINE   (at its start)
    leader NAME PID BOOT_NS rev=REVISION lock=free|held   (held: another child leads: overlap)
    standby NAME PID BOOT_NS
    exit NAME PID BOOT_NS                                 (on SIGTERM)

--never-demote: once it leads it keeps the lock, never confirms `standby`, and ignores SIGTERM
(only SIGKILL ends it). --never-promote: it never sends ROLE=leader (nor takes the lock).
--start-delay: sleeps that long before it reads its role at all (a slow start-up).
"""
import fcntl
import os
import signal
import socket
import sys
import time

d, name = sys.argv[1], sys.argv[2]
never_demote = "--never-demote" in sys.argv
never_promote = "--never-promote" in sys.argv
delay = float(sys.argv[sys.argv.index("--start-delay") + 1]) if "--start-delay" in sys.argv else 0.0
role_file = os.environ["SINGLETON_EXEC_ROLE_FILE"]


def boot_ns():
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def event(what, detail=""):
    with open(os.path.join(d, "events.log"), "a") as f:
        f.write(f"{what} {name} {os.getpid()} {boot_ns()} {detail}\n")


def notify(text):
    addr = os.environ.get("NOTIFY_SOCKET", "")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.sendto(text.encode(), addr)
    finally:
        s.close()


def read_role():
    with open(role_file) as f:
        words = f.read().split()
    return (words[0], words[1] if len(words) > 1 else "") if words else ("", "")


lock = None
leading = False


def act():
    """Reads the role file and acts in that role; confirms it."""
    global lock, leading
    role, rev = read_role()
    if role == "leader" and not leading:
        if never_promote:
            return
        lock = open(os.path.join(d, "lock"), "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            state = "free"
        except BlockingIOError:
            state = "held"
        leading = True
        event("leader", f"rev={rev} lock={state}")
        notify("ROLE=leader")
    elif role == "standby" and leading:
        if never_demote:
            return
        lock.close()  # releases the flock
        lock = None
        leading = False
        event("standby")
        notify("ROLE=standby")
    elif role == "standby":
        notify("ROLE=standby")
    elif role == "leader":
        notify("ROLE=leader")


signals = {signal.SIGUSR1, signal.SIGTERM}
signal.pthread_sigmask(signal.SIG_BLOCK, signals)
with open(role_file) as f:
    first = f.read().strip()
event("start", f"role={os.environ.get('SINGLETON_EXEC_ROLE')} file={first.replace(' ', '_')}")
if delay:
    time.sleep(delay)
act()
while True:
    sig = signal.sigwaitinfo(signals).si_signo
    if sig == signal.SIGUSR1:
        act()
    elif sig == signal.SIGTERM and not never_demote:
        event("exit")
        sys.exit(0)
