#!/usr/bin/env python3
"""Main child that leaves a grandchild whose SIGTERM handler takes 1 s.

Usage: slow_grandchild.py MARKER. The grandchild writes MARKER when its handler finishes. The main
child exits at once on SIGTERM. A supervisor that exits when its main child does (tini, dumb-init)
kills the grandchild mid-handler and MARKER never appears.
"""
import os
import signal
import sys
import time

marker = sys.argv[1]
pid = os.fork()
if pid == 0:
    def slow(_sig, _frame):
        time.sleep(1)
        with open(marker, "w") as f:
            f.write("done\n")
        os._exit(0)

    signal.signal(signal.SIGTERM, slow)
    print("grandchild ready", os.getpid(), flush=True)
    while True:
        signal.pause()
else:
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        signal.pause()
