#!/bin/sh
# A leader's child whose stop the test holds open, so it can act while the tree is still stopping.
#
# Usage: held_stop.sh DIR. Appends `start PID` to DIR/events on start. On SIGTERM it appends
# `stopping PID`, then keeps running until the file DIR/let-go exists, then appends `stop PID` and
# exits 0. SIGINT (Ctrl-C) keeps its default action: it ends the child at once, by that signal.
dir=$1
echo "start $$" >>"$dir/events"
trap 'echo "stopping $$" >>"$dir/events"
until [ -e "$dir/let-go" ]; do sleep 0.05; done
echo "stop $$" >>"$dir/events"
exit 0' TERM
while :; do sleep 0.1; done
