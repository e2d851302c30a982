#!/usr/bin/env python3
"""A leader's child that talks to singleton-exec through $NOTIFY_SOCKET with nothing but the socket
module (no sd_notify library), as sd_notify(3) describes the protocol.

Usage: notify_child.py DIR [--no-ready] [--ready-when-file] [--status TEXT] [--ignore-term]

It appends to DIR/events.log, in worker.py's format (tests/support/worker.rs reads it):

    start ID REVISION PID BOOT_NS lock=free|held socket=NOTIFY_SOCKET
    ready ID REVISION PID BOOT_NS          (after sending READY=1)
    stop ID REVISION PID BOOT_NS           (on SIGTERM, after STOPPING=1)
    flood ID REVISION PID BOOT_NS sent=N dropped=N    (every second while flooding)

Each child holds an exclusive flock on DIR/lock for its life: `lock=held` means the previous child
still held it when this one started (two children at once).

What it sends, decided per leader (ID is SINGLETON_EXEC_LEADER_ID) by files in DIR:
* READY=1 with STATUS=TEXT at once, unless --no-ready; with --ready-when-file only once
  DIR/ready-ID exists;
* WATCHDOG=1 every quarter of $WATCHDOG_USEC (when set), until DIR/wedged-ID exists;
* WATCHDOG=trigger once DIR/trigger-ID exists;
* STOPPING=1 once DIR/stopping-ID exists, and from then on no more WATCHDOG=1 (a shutdown of its
  own that hangs; it never exits);
* STATUS= with the content of DIR/status-ID whenever it changes;
* once DIR/flood exists: FLOOD datagrams a second (the number in the file), in turns
  WATCHDOG=1, garbage, 64 KiB, a NUL byte, an empty one, READY=1 STATUS=flood N; each send
  waits (up to a second) for room in the socket's queue, as sd_notify's do, so what is sent
  is what the reader had to read;
* on SIGTERM: STOPPING=1, then EXTEND_TIMEOUT_USEC=N if DIR/extend holds N, then it exits
  (or, with --ignore-term or DIR/ignore-term, goes on).
"""
import fcntl
import os
import signal
import socket
import sys
import time

d = sys.argv[1]
args = sys.argv[2:]
me = os.getpid()
ident = os.environ.get("SINGLETON_EXEC_LEADER_ID", "?")
rev = os.environ.get("SINGLETON_EXEC_REVISION", "0")
where = os.environ.get("NOTIFY_SOCKET", "")
watchdog_usec = int(os.environ.get("WATCHDOG_USEC", "0") or "0")
if os.environ.get("WATCHDOG_PID") not in (None, str(me)):
    watchdog_usec = 0  # meant for another process, as sd_watchdog_enabled(3) has it


def option(name):
    return args[args.index(name) + 1] if name in args[:-1] else None


def now():
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def record(line):
    with open(os.path.join(d, "events.log"), "a") as f:
        f.write(line + "\n")


def path(name):
    return os.path.join(d, name)


# An abstract socket is named with '@' in the variable and a NUL in the address.
address = "\0" + where[1:] if where.startswith("@") else where
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)


flood_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
flood_sock.settimeout(1.0)


def notify(message, via=sock):
    """One datagram; False if it could not go."""
    if not where:
        return False
    try:
        via.sendto(message, address)
        return True
    except (OSError, socket.timeout):
        return False


def on_term(_sig, _frame):
    notify(b"STOPPING=1")
    try:
        with open(path("extend")) as f:
            notify(b"EXTEND_TIMEOUT_USEC=" + f.read().strip().encode())
    except OSError:
        pass
    if "--ignore-term" in args or os.path.exists(path("ignore-term")):
        record(f"ignored {ident} {rev} {me} {now()}")
        return
    record(f"stop {ident} {rev} {me} {now()}")
    os._exit(0)


signal.signal(signal.SIGTERM, on_term)
lock = os.open(path("lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    held = False
except BlockingIOError:
    held = True
record(f"start {ident} {rev} {me} {now()} lock={'held' if held else 'free'} socket={where or '-'}")

ready_sent = "--no-ready" in args
status = option("--status") or "serving"
ping_every = watchdog_usec / 4e6 if watchdog_usec else None
next_ping = time.monotonic()
triggered = False
stopping = False
shown = None
flood_rate = 0
flood_sent = flood_dropped = 0
flood_turn = 0
flood_report = time.monotonic() + 1
BIG = b"STATUS=" + b"x" * (64 * 1024 - 7)
GARBAGE = [b"\xff\xfe\xfd garbage", b"=\n==\nREADY", BIG, b"READY=1\0STATUS=nul", b""]

while True:
    t = time.monotonic()
    if not ready_sent and ("--ready-when-file" not in args or os.path.exists(path(f"ready-{ident}"))):
        notify(b"READY=1\nSTATUS=" + status.encode())
        ready_sent = True
        record(f"ready {ident} {rev} {me} {now()}")
    if not stopping and os.path.exists(path(f"stopping-{ident}")):
        notify(b"STOPPING=1")
        stopping = True
    if ping_every and t >= next_ping and not stopping and not os.path.exists(path(f"wedged-{ident}")):
        notify(b"WATCHDOG=1")
        next_ping = t + ping_every
    if not triggered and os.path.exists(path(f"trigger-{ident}")):
        notify(b"WATCHDOG=trigger")
        triggered = True
    try:
        with open(path(f"status-{ident}")) as f:
            text = f.read()
        if text != shown:
            notify(b"STATUS=" + text.encode())
            shown = text
    except OSError:
        pass
    try:
        with open(path("flood")) as f:
            flood_rate = int(f.read().strip() or "0")
    except (OSError, ValueError):
        flood_rate = 0
    if flood_rate:
        # A hundredth of a second's worth each turn of this loop.
        for _ in range(max(1, flood_rate // 100)):
            flood_turn += 1
            kind = flood_turn % 10
            if kind < 4:
                message = b"WATCHDOG=1"
            elif kind < 9:
                message = GARBAGE[kind - 4]
            else:
                message = b"READY=1\nSTATUS=flood %d" % flood_turn
            if notify(message, via=flood_sock):
                flood_sent += 1
            else:
                flood_dropped += 1
        if t >= flood_report:
            record(f"flood {ident} {rev} {me} {now()} sent={flood_sent} dropped={flood_dropped}")
            flood_report = t + 1
        time.sleep(max(0.0, 0.01 - (time.monotonic() - t)))
    else:
        time.sleep(0.02)
