#!/usr/bin/env python3
"""A slot holder's child (`--slots N`) that proves or disproves overlap on its slot.

Usage: slot_worker.py DIR. The slot is SINGLETON_EXEC_SLOT. On start it registers its pid in
DIR/slot-SLOT/, then checks whether any other registered worker of the same slot is still alive:
that would be two children on one slot at once (OVERLAP). Children of other slots run beside it
by design and are not counted. It appends

    start ID REVISION PID BOOT_NS SLOT SLOT_COUNT LEADER_KEY LOCK_KEY overlap=N

and, on SIGTERM, `stop ID REVISION PID BOOT_NS SLOT SLOT_COUNT LEADER_KEY LOCK_KEY` to
DIR/events.log (ID = SINGLETON_EXEC_LEADER_ID, REVISION = SINGLETON_EXEC_REVISION, SLOT =
SINGLETON_EXEC_SLOT, SLOT_COUNT = SINGLETON_EXEC_SLOT_COUNT, LEADER_KEY =
SINGLETON_EXEC_LEADER_KEY, LOCK_KEY = ETCD_LOCK_KEY; BOOT_NS on CLOCK_BOOTTIME).
A variable that is not set is written as "-". Registration happens before the check, so of two
workers of one slot starting together at least one sees the other.
"""
import os
import signal
import sys
import time

d = sys.argv[1]
me = os.getpid()


def env(name):
    v = os.environ.get(name, "")
    return v if v and not any(c.isspace() for c in v) else "-"


ident = env("SINGLETON_EXEC_LEADER_ID")
rev = env("SINGLETON_EXEC_REVISION")
slot = env("SINGLETON_EXEC_SLOT")
count = env("SINGLETON_EXEC_SLOT_COUNT")
key = env("SINGLETON_EXEC_LEADER_KEY")
lock_key = env("ETCD_LOCK_KEY")
slot_dir = os.path.join(d, f"slot-{slot}")
os.makedirs(slot_dir, exist_ok=True)


def now():
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def record(line):
    with open(os.path.join(d, "events.log"), "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def alive_worker(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
        return state != "Z" and b"slot_worker.py" in cmd
    except OSError:
        return False


def on_term(_sig, _frame):
    record(f"stop {ident} {rev} {me} {now()} {slot} {count} {key} {lock_key}")
    os._exit(0)


# The handler first: a test may signal the worker as soon as it sees the start line.
signal.signal(signal.SIGTERM, on_term)
open(os.path.join(slot_dir, f"{me}.pid"), "w").close()
others = [
    int(n[:-4]) for n in os.listdir(slot_dir) if n.endswith(".pid") and int(n[:-4]) != me
]
overlap = [p for p in others if alive_worker(p)]
record(f"start {ident} {rev} {me} {now()} {slot} {count} {key} {lock_key} overlap={len(overlap)}")
while True:
    signal.pause()
