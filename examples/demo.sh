#!/usr/bin/env bash
# The local demo: a local etcd, three replicas of one app under singleton-exec, a visible failover.
#   1. three replicas start; exactly one runs the app
#   2. the leader gets SIGTERM: its app stops cleanly, the lease is revoked, a standby takes over at once
#   3. the new leader is SIGKILLed (a crash): its app dies with it, a standby takes over after the TTL
# Everything it starts is stopped on exit. Needs root (or the packages) on first run to install etcd.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
ensure_deps

# A debug build: the quickest from a cold start (the release build's LTO takes longer than the
# demo saves). Cargo shows its progress; later runs reuse the build.
echo "building singleton-exec (cargo build)..."
cargo build --locked --bin singleton-exec
BIN=$(realpath "${CARGO_TARGET_DIR:-target}")/debug/singleton-exec
ETCD=${ETCD_BIN:-etcd}
WORK=$(mktemp -d /tmp/singleton-exec-demo.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
T0=$(date +%s%N)
say() { printf '%6.2fs  %s\n' "$(( ($(date +%s%N) - T0) / 1000000 ))e-3" "$*"; }

CLIENT=http://127.0.0.1:$(free_port)
PEER=http://127.0.0.1:$(free_port)
"$ETCD" --data-dir "$WORK/etcd" --listen-client-urls "$CLIENT" --advertise-client-urls "$CLIENT" \
    --listen-peer-urls "$PEER" --initial-advertise-peer-urls "$PEER" --initial-cluster "default=$PEER" \
    >"$WORK/etcd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    curl -fs "$CLIENT/health" >/dev/null 2>&1 && break
    python3 -c "import urllib.request,sys; urllib.request.urlopen('$CLIENT/health', timeout=1)" 2>/dev/null && break
    sleep 0.1
done
say "etcd is up at $CLIENT"

export SINGLETON_EXEC_ENDPOINTS=$CLIENT SINGLETON_EXEC_TTL=3s SINGLETON_EXEC_ELECTION=demo
declare -A REPLICA
for id in alpha beta gamma; do
    "$BIN" --id "$id" -- examples/demo-app.sh 2>"$WORK/$id.log" &
    REPLICA[$id]=$!
    PIDS+=($!)
    say "replica $id started (pid ${REPLICA[$id]})"
done

leader() { "$BIN" status 2>/dev/null | awk '/^leader:/ {print $2}'; }
wait_leader_change() { # wait until the leader is someone other than $1
    local before=$1 now
    for _ in $(seq 200); do
        now=$(leader || true)
        if [ -n "$now" ] && [ "$now" != "none" ] && [ "$now" != "$before" ]; then echo "$now"; return; fi
        sleep 0.05
    done
    echo "timeout"; return 1
}

L1=$(wait_leader_change "")
say "leader: $L1 (the other two wait as standbys)"
sleep 2.5

say ">>> SIGTERM to the leader $L1 (graceful stop: child stopped, lease revoked)"
T=$(date +%s%N)
kill -TERM "${REPLICA[$L1]}"
L2=$(wait_leader_change "$L1")
say "leader: $L2, took over after $(( ($(date +%s%N) - T) / 1000000 )) ms"
wait "${REPLICA[$L1]}" && rc=0 || rc=$?
say "replica $L1 exited with status $rc (its app's status)"
sleep 2.5

say ">>> SIGKILL to the leader $L2 (a crash: its app dies with it, the lease must expire)"
T=$(date +%s%N)
# Kill and reap it with the shell's messages discarded: otherwise bash reports the SIGKILLed job
# ("Killed") in the middle of the output when it notices the death before the wait.
{ kill -KILL "${REPLICA[$L2]}"; wait "${REPLICA[$L2]}"; } 2>/dev/null || true
L3=$(wait_leader_change "$L2")
say "leader: $L3, took over after $(( ($(date +%s%N) - T) / 1000000 )) ms (TTL 3s)"
sleep 2.5

"$BIN" status || true
say "demo done: one app at a time, every time. Cleaning up."
