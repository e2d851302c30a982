#!/bin/sh
# A leader's child that looks for its predecessor at once: worker.py, with the lock taken first.
#
# Usage: worker_start.sh DIR [worker.py options...]. The shell takes the lock worker.py would take
# (DIR/lock, or DIR/slot-$SINGLETON_EXEC_SLOT/lock with --per-slot) within a few milliseconds of
# the exec, then becomes worker.py (same pid), which holds the lock on fd 9 and records whether it
# was found held (lock=held in its start line) and when it was looked at (looked=BOOT_NS). Python takes 50-200 ms to start on a loaded
# machine: long enough for a predecessor that is still dying (a big working set takes that long to
# free) to be dead by the time worker.py could look, so the look has to come first.
dir=$1
case " $* " in
*" --per-slot "*)
    dir="$dir/slot-${SINGLETON_EXEC_SLOT:-0}"
    mkdir -p "$dir"
    ;;
esac
exec 9>>"$dir/lock"
# Wall-clock ns just before the look (worker.py turns it into boot-clock ns): this child ran then.
looked=$(date +%s%N)
if flock -n 9; then found=free; else found=held; fi
exec python3 "${0%/*}/worker.py" "$@" --lock-fd 9 --lock-found "$found" --looked-at "$looked"
