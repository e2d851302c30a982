#!/usr/bin/env python3
"""The command of a run-once test (`--once NAME -- python3 once_worker.py DIR`): one run of it.

On start it tries an exclusive flock on DIR/lock without waiting: `lock=held` means another run
still held it (two runs at once: the definitive overlap check, as tests/programs/worker.py's), then
it waits for the lock so that it holds it in turn. It appends

    start ID REVISION ATTEMPT PREVIOUS PID BOOT_NS lock=free|held

to DIR/runs.log (ID, REVISION, ATTEMPT and PREVIOUS are SINGLETON_EXEC_LEADER_ID,
SINGLETON_EXEC_REVISION, SINGLETON_EXEC_ONCE_ATTEMPT and SINGLETON_EXEC_ONCE_PREVIOUS_REVISION, "-"
when unset). Then, while DIR/wait exists, it waits until DIR/go exists; then it appends
`end ID REVISION PID BOOT_NS code=N` and exits with N, the number in DIR/exit-code (0 if absent).
A SIGTERM ends it at once, after appending `term ID REVISION PID BOOT_NS`, with the number in
DIR/term-code (143 if absent: a program that exits 0 on SIGTERM writes 0 there).

With `--lock-fd N --lock-found free|held` (once_worker_start.sh) the lock was taken on fd N before
this interpreter started, and `--lock-found` says what that look found.
"""
import fcntl
import os
import signal
import sys
import time

d = sys.argv[1]
env = os.environ.get
ident = env("SINGLETON_EXEC_LEADER_ID", "-")
rev = env("SINGLETON_EXEC_REVISION", "-")
attempt = env("SINGLETON_EXEC_ONCE_ATTEMPT", "-")
previous = env("SINGLETON_EXEC_ONCE_PREVIOUS_REVISION", "-")
me = os.getpid()


def boot_ns():
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def append(line):
    with open(os.path.join(d, "runs.log"), "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def on_term(_sig, _frame):
    append(f"term {ident} {rev} {me} {boot_ns()}")
    try:
        with open(os.path.join(d, "term-code")) as f:
            os._exit(int(f.read().strip() or "143"))
    except FileNotFoundError:
        os._exit(143)


signal.signal(signal.SIGTERM, on_term)

def option(name):
    """The value after `name` on the command line, or None."""
    args = sys.argv[2:]
    return args[args.index(name) + 1] if name in args[:-1] else None


if option("--lock-fd") is not None:
    lock = int(option("--lock-fd"))
    found = option("--lock-found")
    if found == "held":
        fcntl.flock(lock, fcntl.LOCK_EX)
else:
    lock = open(os.path.join(d, "lock"), "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        found = "free"
    except OSError:
        found = "held"
        fcntl.flock(lock, fcntl.LOCK_EX)
append(f"start {ident} {rev} {attempt} {previous} {me} {boot_ns()} lock={found}")

while os.path.exists(os.path.join(d, "wait")) and not os.path.exists(os.path.join(d, "go")):
    time.sleep(0.01)

try:
    with open(os.path.join(d, "exit-code")) as f:
        code = int(f.read().strip() or "0")
except FileNotFoundError:
    code = 0
append(f"end {ident} {rev} {me} {boot_ns()} code={code}")
sys.exit(code)
