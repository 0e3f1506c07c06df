#!/usr/bin/env bash
# Stops the cluster sbin/start-cluster.sh started (workers first, then the
# master), by the pids it recorded in $EMBER_CLUSTER_DIR (default
# ./ember-cluster).
set -uo pipefail
dir="${EMBER_CLUSTER_DIR:-$PWD/ember-cluster}"
[[ -d "$dir" ]] || { echo "stop-cluster: no cluster files in $dir" >&2; exit 1; }
stop() {
  local f="$1" pid
  pid="$(cat "$f" 2>/dev/null)" || return 0
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "stopped $(basename "$f" .pid) (pid $pid)"
  fi
  rm -f "$f"
}
for f in "$dir"/worker-*.pid; do [[ -e "$f" ]] && stop "$f"; done
[[ -e "$dir/master.pid" ]] && stop "$dir/master.pid"
exit 0
