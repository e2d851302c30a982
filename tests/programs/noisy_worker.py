#!/usr/bin/env python3
"""A leader's child: worker.py's overlap check, plus options for stderr noise and SIGTERM.

Usage: noisy_worker.py DIR [--ignore-term] [--noise BYTES] [--term-delay SECONDS]

Like worker.py it registers its pid in DIR, checks whether another registered worker is alive
(OVERLAP), and appends `start ID REVISION PID BOOT_NS overlap=N` to DIR/events.log; on SIGTERM it
appends `stop ID REVISION PID BOOT_NS` and exits 0. Options:
  --ignore-term        SIGTERM is ignored (recorded as `term ...`, no exit)
  --noise BYTES        after the start line, write BYTES bytes to stderr (blocks if nobody reads)
  --term-delay SECONDS the SIGTERM handler takes this long before it records `stop` and exits 0
It reads the replica id and revision from the new variable names and falls back to the old ones.
"""
import os
import signal
import sys
import time

d = sys.argv[1]
args = sys.argv[2:]
ignore_term = "--ignore-term" in args


def opt(name, default):
    if name in args:
        return args[args.index(name) + 1]
    return default


noise = int(opt("--noise", "0"))
term_delay = float(opt("--term-delay", "0"))
os.makedirs(d, exist_ok=True)
me = os.getpid()
env = os.environ
ident = env.get("SINGLETON_EXEC_LEADER_ID") or env.get("SINGLETON_EXEC_ID", "?")
rev = env.get("SINGLETON_EXEC_REVISION", "0")


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
    if ignore_term:
        record(f"term {ident} {rev} {me} {now()}")
        return
    if term_delay:
        time.sleep(term_delay)
    record(f"stop {ident} {rev} {me} {now()}")
    # No interpreter shutdown: it could block flushing a stalled stderr.
    os._exit(0)


signal.signal(signal.SIGTERM, on_term)
open(os.path.join(d, f"{me}.pid"), "w").close()
others = [int(n[:-4]) for n in os.listdir(d) if n.endswith(".pid") and int(n[:-4]) != me]
overlap = [p for p in others if alive_worker(p)]
record(f"start {ident} {rev} {me} {now()} overlap={len(overlap)}")
if noise:
    chunk = b"x" * 1023 + b"\n"
    left = noise
    while left > 0:
        n = os.write(2, chunk[: min(left, len(chunk))])
        left -= n
    record(f"noise-done {ident} {rev} {me} {now()}")
while True:
    signal.pause()
