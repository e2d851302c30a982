#!/usr/bin/env python3
"""A leader's child that proves or disproves overlap.

Usage: worker.py DIR [--ignore-term] [--per-slot]. On start it registers its pid in DIR, then checks
whether any other registered worker is still alive: that would be two children at once (OVERLAP).
It appends `start ID REVISION PID BOOT_NS overlap=N` and, on SIGTERM, `stop ID REVISION PID BOOT_NS`
to DIR/events.log. Registration happens before the check, so of two workers starting together at
least one sees the other.

SIGTERM is ignored (`ignored ID REVISION PID BOOT_NS` is logged) with --ignore-term or while the
file DIR/ignore-term exists, so a test can choose per round. SIGUSR2 writes STDERR_FLOOD bytes
(70 KB) to stderr in one blocking write loop: more than a pipe holds, so the worker blocks when
nobody reads its stderr.

With --ballast-mib N it then fills N MiB of memory, a page at a time, takes an exclusive flock on
DIR/lock (waiting for it), and creates DIR/PID.ballast: a child with a real working set, which
takes tens to hundreds of milliseconds to die after a SIGKILL (the kernel frees its memory before
it closes its files, and it counts as alive until it is reaped). The start is recorded (and the
overlap checked) before the fill, so a slow start cannot hide an overlap; a start that must be
checked within milliseconds tries the lock first (`flock -n DIR/lock`, see tests/operator.rs).

With --per-slot (a child of `--slots N`), everything above but the ignore-term file happens in
DIR/slot-$SINGLETON_EXEC_SLOT instead (created if need be): registration, the overlap check (only
workers of the same slot count) and events.log. DIR/ignore-term still applies to every slot.
"""
import os
import signal
import sys
import time

base = sys.argv[1]
ignore_term = "--ignore-term" in sys.argv
if "--per-slot" in sys.argv:
    d = os.path.join(base, "slot-" + os.environ.get("SINGLETON_EXEC_SLOT", "0"))
else:
    d = base
STDERR_FLOOD = 70 * 1024
os.makedirs(d, exist_ok=True)
me = os.getpid()
ident = os.environ.get("SINGLETON_EXEC_LEADER_ID", "?")
rev = os.environ.get("SINGLETON_EXEC_REVISION", "0")


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
        return state != "Z" and b"worker.py" in cmd
    except OSError:
        return False


def on_term(_sig, _frame):
    if ignore_term or os.path.exists(os.path.join(base, "ignore-term")):
        record(f"ignored {ident} {rev} {me} {now()}")
        return
    record(f"stop {ident} {rev} {me} {now()}")
    os._exit(0)


def on_usr2(_sig, _frame):
    line = (f"worker {ident} pid {me}: stderr flood " + "x" * 100 + "\n").encode()
    data = (line * (STDERR_FLOOD // len(line) + 1))[:STDERR_FLOOD]
    while data:
        try:
            n = os.write(2, data)
        except InterruptedError:
            continue
        data = data[n:]


# Handlers first: a test may signal the worker as soon as it sees the start line.
signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGUSR2, on_usr2)
open(os.path.join(d, f"{me}.pid"), "w").close()
others = [int(n[:-4]) for n in os.listdir(d) if n.endswith(".pid") and int(n[:-4]) != me]
overlap = [p for p in others if alive_worker(p)]
record(f"start {ident} {rev} {me} {now()} overlap={len(overlap)}")
if "--ballast-mib" in sys.argv:
    mib = int(sys.argv[sys.argv.index("--ballast-mib") + 1])
    ballast = bytearray(mib << 20)
    for page in range(0, len(ballast), 4096):
        ballast[page] = 1
    import fcntl
    lock = os.open(os.path.join(d, "lock"), os.O_CREAT | os.O_RDWR)
    fcntl.flock(lock, fcntl.LOCK_EX)
    open(os.path.join(d, f"{me}.ballast"), "w").close()
while True:
    signal.pause()
