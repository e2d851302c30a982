#!/usr/bin/env python3
"""A leader's child that proves or disproves overlap.

Usage: worker.py DIR [--ignore-term] [--per-slot]. On start it registers its pid in DIR, then checks
whether any other registered worker is still alive: that would be two children at once (OVERLAP).
It appends

    start ID REVISION PID BOOT_NS overlap=N lock=free|held key=LEADER_KEY lease=LEASE_HEX

and, on SIGTERM, `stop ID REVISION PID BOOT_NS` to DIR/events.log (LEADER_KEY and LEASE_HEX are
SINGLETON_EXEC_LEADER_KEY and SINGLETON_EXEC_LEASE_ID, "-" if not set). Registration happens before
the check, so of two workers starting together at least one sees the other.

A worker counts as alive until it is a zombie or gone, including while the kernel tears it down: a
killed process with a large working set takes tens to hundreds of milliseconds to free its memory
before it closes its files, and all that time /proc/PID/cmdline is already empty. So a worker's pid
file holds its start time (field 22 of /proc/PID/stat), which tells it from a later process that
reuses the pid without looking at its command line. Each worker also holds an exclusive flock on
DIR/lock from its start to its death (the kernel drops it when it closes the dying process's files,
as it would a real program's lock): `lock=held` means the previous worker still held it when this
one started, a second proof of overlap that needs no /proc at all. A worker that finds it held
records so and then waits for it, so that it holds it in turn. With `--lock-fd N --lock-found
held|free --looked-at WALL_NS` (worker_start.sh) the lock was taken on fd N before this interpreter
started, `--lock-found` says what that look found, and the start line ends with `looked=BOOT_NS`,
the boot-clock instant just before that look (from the wall-clock one given): this child already
ran then, tens of milliseconds before BOOT_NS.

SIGUSR1 makes the worker take a large working set and touch every page of it (DIR/big-mib holds
the size in MiB, 512 if absent), in 4 KiB pages (no transparent huge pages), so that its death
takes 50-200 ms as a real program's does; then it appends `big ID REVISION PID BOOT_NS mib=N`, the
sign that it is ready. A second SIGUSR1 changes nothing.

SIGTERM is ignored (`ignored ID REVISION PID BOOT_NS` is logged) with --ignore-term or while the
file DIR/ignore-term exists, so a test can choose per round. SIGUSR2 writes STDERR_FLOOD bytes
(70 KB) to stderr in one blocking write loop: more than a pipe holds, so the worker blocks when
nobody reads its stderr.

With --ballast-mib N, once started (and its lock held), it fills N MiB of memory, a page at a
time, and creates DIR/PID.ballast: a child with a real working set from its start, which takes
tens to hundreds of milliseconds to die after a SIGKILL. A start that must be checked within
milliseconds tries the lock first (`flock -n DIR/lock` in a shell before this interpreter, see
tests/operator.rs).

With --per-slot (a child of `--slots N`), everything above but the ignore-term and big-mib files
happens in DIR/slot-$SINGLETON_EXEC_SLOT instead (created if need be): registration, the overlap
check (only workers of the same slot count), the lock and events.log. DIR/ignore-term and
DIR/big-mib still apply to every slot.
"""
import fcntl
import mmap
import os
import signal
import sys
import time

base = sys.argv[1]
ignore_term = "--ignore-term" in sys.argv


def option(name):
    """The value after `name` on the command line, or None."""
    args = sys.argv[2:]
    return args[args.index(name) + 1] if name in args[:-1] else None


if "--per-slot" in sys.argv:
    d = os.path.join(base, "slot-" + os.environ.get("SINGLETON_EXEC_SLOT", "0"))
else:
    d = base
STDERR_FLOOD = 70 * 1024
os.makedirs(d, exist_ok=True)
me = os.getpid()
ident = os.environ.get("SINGLETON_EXEC_LEADER_ID", "?")
rev = os.environ.get("SINGLETON_EXEC_REVISION", "0")
DEFAULT_BIG_MIB = 512
PAGE = 4096
# The working set SIGUSR1 takes, kept for the worker's whole life.
big = None


def env(name):
    v = os.environ.get(name, "")
    return v if v and not any(c.isspace() for c in v) else "-"


def now():
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def record(line):
    with open(os.path.join(d, "events.log"), "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def stat_fields(pid):
    """Fields of /proc/PID/stat after the command name: [0] state ... [19] start time."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def alive_worker(pid, started):
    """Whether registered worker `pid` (pid file contents `started`) is alive: not yet a zombie.
    A pid file written by another program (empty) falls back to the command line, which a dying
    process no longer has."""
    try:
        fields = stat_fields(pid)
        if fields[0] == "Z":
            return False
        if started:
            return fields[19] == started
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"worker.py" in f.read()
    except (OSError, IndexError):
        return False


def registered(name):
    try:
        with open(os.path.join(d, name)) as f:
            return f.read().strip()
    except OSError:
        return ""


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


def on_usr1(_sig, _frame):
    global big
    if big is not None:
        return
    try:
        with open(os.path.join(base, "big-mib")) as f:
            mib = int(f.read().strip())
    except (OSError, ValueError):
        mib = DEFAULT_BIG_MIB
    size = mib << 20
    m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        # Huge pages would be freed 512 times faster: the slow death is the point.
        m.madvise(mmap.MADV_NOHUGEPAGE)
    chunk = b"\x01" * (1 << 20)
    for off in range(0, size, len(chunk)):
        m[off : off + len(chunk)] = chunk
    big = m
    record(f"big {ident} {rev} {me} {now()} mib={mib}")


# Handlers first: a test may signal the worker as soon as it sees the start line.
signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGUSR2, on_usr2)
signal.signal(signal.SIGUSR1, on_usr1)
with open(os.path.join(d, f"{me}.pid"), "w") as f:
    f.write(stat_fields(me)[19])
others = [int(n[:-4]) for n in os.listdir(d) if n.endswith(".pid") and int(n[:-4]) != me]
overlap = [p for p in others if alive_worker(p, registered(f"{p}.pid"))]
if option("--lock-fd") is not None:
    lock = int(option("--lock-fd"))
    held = option("--lock-found") == "held"
else:
    lock = os.open(os.path.join(d, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held = False
    except BlockingIOError:
        held = True
key = env("SINGLETON_EXEC_LEADER_KEY")
lease = env("SINGLETON_EXEC_LEASE_ID")
looked = ""
if (option("--looked-at") or "").isdigit():
    # Boot clock = wall clock + their offset now (the wall clock does not jump in a few ms).
    looked = f" looked={int(option('--looked-at')) + now() - time.time_ns()}"
record(
    f"start {ident} {rev} {me} {now()} overlap={len(overlap)} "
    f"lock={'held' if held else 'free'} key={key} lease={lease}{looked}"
)
if held:
    # Signals are still handled while this waits (SIGTERM ends the worker).
    fcntl.flock(lock, fcntl.LOCK_EX)
if option("--ballast-mib") is not None:
    ballast = bytearray(int(option("--ballast-mib")) << 20)
    for page in range(0, len(ballast), PAGE):
        ballast[page] = 1
    open(os.path.join(d, f"{me}.ballast"), "w").close()
while True:
    signal.pause()
