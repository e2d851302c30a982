#!/bin/sh
# A shell child that talks to singleton-exec with Debian's systemd-notify (package `systemd`),
# exactly as it would under a systemd unit with Type=notify and WatchdogSec=:
#
#   singleton-exec --ready-timeout 30s --watchdog 10s -- examples/notify/app.sh
#
# It warms up, says READY=1 with a status line, then feeds the watchdog from its main loop.
# Nothing here knows about singleton-exec: NOTIFY_SOCKET and WATCHDOG_USEC are all it reads.
set -eu
status() { systemd-notify --status="$1"; }

status "warming up"
sleep 2                                   # loading caches, opening ports...
systemd-notify --ready --status="serving (leader $SINGLETON_EXEC_LEADER_ID, fencing revision $SINGLETON_EXEC_REVISION)"

trap 'systemd-notify STOPPING=1; exit 0' TERM
# Half the watchdog interval between heartbeats, as sd_watchdog_enabled(3) advises.
every=$(( ${WATCHDOG_USEC:-10000000} / 2000000 ))
[ "$every" -ge 1 ] || every=1
while :; do
    # ... one round of real work here: a wedged round means no heartbeat, and the leader steps
    # down so a standby takes over.
    systemd-notify WATCHDOG=1
    sleep "$every" &
    wait $!
done
