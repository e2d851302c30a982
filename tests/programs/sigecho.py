#!/usr/bin/env python3
"""Prints `ready`, then the name of every signal it receives, one per line. Exits 0 on SIGTERM."""
import os
import signal
import sys


def name(sig):
    if signal.SIGRTMIN <= sig <= signal.SIGRTMAX:
        return f"SIGRTMIN+{sig - signal.SIGRTMIN}"
    return signal.Signals(sig).name


def on_signal(sig, _frame):
    print(name(sig), flush=True)
    if sig == signal.SIGTERM:
        sys.exit(0)


for s in range(1, signal.SIGRTMAX + 1):
    if s in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD, 32, 33):
        continue
    try:
        signal.signal(s, on_signal)
    except (OSError, ValueError):
        pass
print("ready", os.getpid(), flush=True)
while True:
    signal.pause()
