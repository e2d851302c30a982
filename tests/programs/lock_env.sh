#!/bin/sh
# A child written for `etcdctl lock NAME -- cmd`, run unchanged under singleton-exec too: it reads
# ETCD_LOCK_KEY and ETCD_LOCK_REV (the revision at which the lock was acquired) and makes one write
# fenced on them, the way such scripts do: the lock key must still exist, created no later than
# ETCD_LOCK_REV (equal when nobody held the lock, earlier when the holder queued for it).
#   lock_env.sh ENDPOINTS STATE_KEY
# Prints one line: "lock-env: key=K rev=R create=C write=SUCCESS|FAILURE".
set -eu
: "${ETCD_LOCK_KEY:?not run under a lock}" "${ETCD_LOCK_REV:?not run under a lock}"
endpoints=$1
state=$2
create=$(ETCDCTL_API=3 etcdctl --endpoints="$endpoints" get "$ETCD_LOCK_KEY" -w fields |
    sed -n 's/^"CreateRevision" : //p')
write=$(printf 'c("%s") > "0"\nc("%s") < "%s"\n\nput %s "%s"\n\n\n' \
    "$ETCD_LOCK_KEY" "$ETCD_LOCK_KEY" "$((ETCD_LOCK_REV + 1))" "$state" "$ETCD_LOCK_REV" |
    ETCDCTL_API=3 etcdctl --endpoints="$endpoints" txn | head -n 1)
echo "lock-env: key=$ETCD_LOCK_KEY rev=$ETCD_LOCK_REV create=${create:-none} write=$write"
