#!/bin/sh
# once_worker.py with the lock taken first, as worker_start.sh does for worker.py.
#
# Usage: once_worker_start.sh DIR. The shell takes DIR/lock within a few milliseconds of the exec,
# then becomes once_worker.py (same pid), which holds it on fd 9 and records whether it was found
# held. Python takes 50-200 ms to start on a loaded machine: long enough for a predecessor that is
# still dying to be dead by the time once_worker.py could look, so the look has to come first.
dir=$1
exec 9>>"$dir/lock"
if flock -n 9; then found=free; else found=held; fi
exec python3 "${0%/*}/once_worker.py" "$@" --lock-fd 9 --lock-found "$found"
