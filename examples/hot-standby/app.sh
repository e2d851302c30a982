#!/bin/sh
# A hot standby's child in POSIX sh, for singleton-exec --hot-standby:
#
#     singleton-exec --hot-standby -- examples/hot-standby/app.sh
#
# It runs on every replica. Its role is in the file $SINGLETON_EXEC_ROLE_FILE ("leader REVISION" or
# "standby"); SIGUSR1 (--role-signal) comes after every change. It acts in the role the file says
# and confirms it with ROLE=leader or ROLE=standby on its notify socket (systemd-notify, from
# Debian's systemd package; any sd_notify sender works). The rules (docs/hot-standby.md):
# * set the signal handler before the first ROLE= (singleton-exec sends no signal until then);
# * send ROLE=standby only once the leader's work has stopped completely: the lease is given up
#   on it, and another replica's child may lead a moment later;
# * send the role you act in at the moment you send it, nothing else; answer every signal, even
#   when the role is unchanged (a confirmation counts only if sent after the file changed).
role=none
apply() {
    read -r want revision < "$SINGLETON_EXEC_ROLE_FILE"
    if [ "$want" = leader ] && [ "$role" != leader ]; then
        role=leader
        echo "leading (fencing revision $revision)"    # start the leader's work here
    elif [ "$want" = standby ] && [ "$role" != standby ]; then
        [ "$role" = leader ] && echo "standing by"      # stop the leader's work here, first
        role=standby
    fi
    [ "$role" = none ] || systemd-notify "ROLE=$role"
}
trap apply USR1
trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
echo "started as $SINGLETON_EXEC_ROLE"                 # warm up here (caches, connections)
apply
while :; do
    # `wait` returns at once on a signal, so the trap runs without waiting for the sleep.
    sleep 1 &
    sleeper=$!
    wait "$sleeper"
done
