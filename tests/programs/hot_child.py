#!/usr/bin/env python3
"""A hot standby's child (singleton-exec --hot-standby), as docs/hot-standby.md describes one, with
nothing but Python's standard library: it runs as a standby, acts as the leader when its role file
says `leader REVISION`, and confirms each role with ROLE= on $NOTIFY_SOCKET.

Usage: hot_child.py DIR NAME [--never-demote] [--never-promote] [--start-delay SECONDS]
                    [--stand-down-at-first-lead] [--chaos]

Acting as the leader means holding an exclusive flock on DIR/lock; it is taken (without waiting)
before ROLE=leader is sent and released before ROLE=standby is sent. Each line appended to
DIR/events.log is `EVENT NAME PID BOOT_NS DETAIL`:

    start NAME PID BOOT_NS role=ENV_ROLE file=FILE_LINE   (at its start)
    spoke NAME PID BOOT_NS                                (its first ROLE= is sent)
    leader NAME PID BOOT_NS rev=REVISION lock=free|held   (held: another child leads: overlap)
    standby NAME PID BOOT_NS
    exit NAME PID BOOT_NS                                 (on SIGTERM)

--never-demote: once it leads it keeps the lock, never confirms `standby`, and ignores SIGTERM
(only SIGKILL ends it). --never-promote: it never sends ROLE=leader (nor takes the lock).
--start-delay: sleeps that long before it reads its role at all (a slow start-up).
--stand-down-at-first-lead: the first time it is told to lead it confirms (ROLE=leader) and at
once stands down by itself (as SIGHUP below), two datagrams back to back; later it leads as told.
SIGHUP while it leads: it stands down by itself (it cannot lead on): releases the lock, logs
`standby`, sends ROLE=standby; it leads again only when told (SIGUSR1, the file says `leader`).

--chaos (tests/chaos.rs, the hot mode), each file looked at when it matters, so that a test can
choose per round:
- it registers DIR/PID.pid holding its start time (field 22 of /proc/PID/stat), as worker.py
  does, for the chaos suite's death monitor (pids are reused: a pid and its start time);
- DIR/never-demote-NAME: when told to stand by while it leads, it logs `refused NAME PID BOOT_NS`
  and from then on acts as with --never-demote (keeps the lock, never confirms, ignores SIGTERM);
  SIGTERM while it leads is ignored too while the file exists;
- DIR/slow-demote (seconds, a float): it waits that long before it releases the lock and
  confirms a demotion (a slow hand-over of the leader's work);
- DIR/ignore-term: SIGTERM is ignored (`ignored NAME PID BOOT_NS` is logged);
- SIGUSR2 writes 70 KB to stderr (more than a pipe holds: it blocks when nobody reads);
- SIGWINCH takes a large working set (DIR/big-mib MiB, 512 if absent), touched in 4 KiB pages, so
  that its death takes 50-200 ms; then it logs `big NAME PID BOOT_NS mib=N`.
"""
import fcntl
import mmap
import os
import signal
import socket
import sys
import time

d, name = sys.argv[1], sys.argv[2]
never_demote = "--never-demote" in sys.argv
never_promote = "--never-promote" in sys.argv
stand_down_once = "--stand-down-at-first-lead" in sys.argv
chaos = "--chaos" in sys.argv
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
refusing = False
big = None
STDERR_FLOOD = 70 * 1024


def exists(f):
    return chaos and os.path.exists(os.path.join(d, f))


def never_demoting():
    """Whether it keeps the leader's work for good: --never-demote, or DIR/never-demote-NAME."""
    return never_demote or exists(f"never-demote-{name}")


def flood():
    line = (f"hot child {name} pid {os.getpid()}: stderr flood " + "x" * 100 + "\n").encode()
    data = (line * (STDERR_FLOOD // len(line) + 1))[:STDERR_FLOOD]
    while data:
        try:
            n = os.write(2, data)
        except InterruptedError:
            continue
        data = data[n:]


def take_big():
    global big
    if big is not None:
        return
    try:
        with open(os.path.join(d, "big-mib")) as f:
            mib = int(f.read().strip())
    except (OSError, ValueError):
        mib = 512
    size = mib << 20
    m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        m.madvise(mmap.MADV_NOHUGEPAGE)
    chunk = b"\x01" * (1 << 20)
    for off in range(0, size, len(chunk)):
        m[off : off + len(chunk)] = chunk
    big = m
    event("big", f"mib={mib}")


def stand_down():
    """Gives the leader's work up unasked, as a child that finds it cannot lead on would."""
    global lock, leading
    if not leading:
        return
    lock.close()
    lock = None
    leading = False
    event("standby", "unasked")
    notify("ROLE=standby")


def act():
    """Reads the role file and acts in that role; confirms it."""
    global lock, leading, refusing, stand_down_once
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
        if stand_down_once:
            stand_down_once = False
            stand_down()
    elif role == "standby" and leading:
        if refusing or never_demoting():
            if not refusing:
                event("refused")
            refusing = True
            return
        try:
            with open(os.path.join(d, "slow-demote")) as f:
                slow = float(f.read().strip()) if chaos else 0.0
        except (OSError, ValueError):
            slow = 0.0
        if slow > 0:
            time.sleep(slow)
        lock.close()  # releases the flock
        lock = None
        leading = False
        event("standby")
        notify("ROLE=standby")
    elif role == "standby":
        notify("ROLE=standby")
    elif role == "leader":
        notify("ROLE=leader")


signals = {signal.SIGUSR1, signal.SIGTERM, signal.SIGHUP}
if chaos:
    signals |= {signal.SIGUSR2, signal.SIGWINCH}
signal.pthread_sigmask(signal.SIG_BLOCK, signals)
if chaos:
    with open(f"/proc/{os.getpid()}/stat") as f:
        started = f.read().rsplit(")", 1)[1].split()[19]
    with open(os.path.join(d, f"{os.getpid()}.pid"), "w") as f:
        f.write(started)
with open(role_file) as f:
    first = f.read().strip()
event("start", f"role={os.environ.get('SINGLETON_EXEC_ROLE')} file={first.replace(' ', '_')}")
if delay:
    time.sleep(delay)
act()
event("spoke")
while True:
    sig = signal.sigwaitinfo(signals).si_signo
    if sig == signal.SIGUSR1:
        act()
    elif sig == signal.SIGHUP:
        stand_down()
    elif sig == signal.SIGUSR2:
        flood()
    elif sig == signal.SIGWINCH:
        take_big()
    elif sig == signal.SIGTERM:
        if never_demote or refusing or (leading and never_demoting()):
            continue
        if exists("ignore-term"):
            event("ignored")
            continue
        event("exit")
        sys.exit(0)
