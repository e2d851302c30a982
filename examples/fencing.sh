#!/bin/sh
# A leader's child that writes to etcd only while it still leads: every write is a transaction that
# first checks that the leader key still exists with this leadership's create-revision (the fencing
# token). A deposed leader that is still running (a frozen supervisor, a paused VM) cannot write.
#
#   singleton-exec --election fenced -- examples/fencing.sh /myapp/state
set -eu
: "${SINGLETON_EXEC_LEADER_KEY:?run me under singleton-exec}"
key=${1:-/fencing-demo/state}
n=0
while :; do
    n=$((n + 1))
    out=$(printf 'c("%s") = "%s"\n\nput %s "%s write %s"\n\n\n' \
        "$SINGLETON_EXEC_LEADER_KEY" "$SINGLETON_EXEC_REVISION" "$key" "$SINGLETON_EXEC_LEADER_ID" "$n" |
        ETCDCTL_API=3 etcdctl --endpoints="$SINGLETON_EXEC_ETCD_ENDPOINTS" txn)
    case "$out" in
    SUCCESS*) echo "write $n accepted (key $SINGLETON_EXEC_LEADER_KEY revision $SINGLETON_EXEC_REVISION)" ;;
    *)
        echo "write $n refused: revision $SINGLETON_EXEC_REVISION no longer leads" >&2
        exit 1
        ;;
    esac
    [ "${FENCING_ONCE:-}" = 1 ] && exit 0
    sleep 1
done
