#!/bin/sh
# The demo's "application": says who it is and its fencing revision once a second, and stops
# cleanly on SIGTERM. singleton-exec guarantees only one of these runs at a time.
trap 'echo "    [$SINGLETON_EXEC_LEADER_ID] got SIGTERM, shutting down cleanly"; exit 0' TERM
echo "    [$SINGLETON_EXEC_LEADER_ID] started as leader, fencing revision $SINGLETON_EXEC_REVISION"
while :; do
    sleep 1 &
    wait $!
    echo "    [$SINGLETON_EXEC_LEADER_ID] serving (revision $SINGLETON_EXEC_REVISION)"
done
