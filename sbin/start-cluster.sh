#!/usr/bin/env bash
# Starts a standalone Ember cluster on this machine: one master and N
# workers, each a background `ember` process, logs and pids under
# $EMBER_CLUSTER_DIR (default ./ember-cluster). Stop it with
# sbin/stop-cluster.sh.
#
#   sbin/start-cluster.sh [N]         N workers (default 2)
#
# Settings (environment):
#   EMBER            the ember binary (default: target/release/ember, then PATH)
#   EMBER_MASTER_PORT / EMBER_MASTER_WEBUI_PORT   7077 / 8080
#   EMBER_WORKER_CORES / EMBER_WORKER_MEMORY      cores and memory per worker
#                                                 (default: all cores / N, 2g)
#   EMBER_WORKER_WEBUI_PORT                       first worker UI port (8081)
# Authentication, like every setting, comes from ember-defaults.conf
# ($EMBER_CONF_DIR) or EMBER_* variables, e.g. EMBER_AUTHENTICATE=true
# EMBER_AUTHENTICATE_SECRETFILE=/path/to/secret.
set -euo pipefail
n="${1:-2}"
here="$(cd "$(dirname "$0")/.." && pwd)"
ember="${EMBER:-}"
if [[ -z "$ember" ]]; then
  if [[ -x "$here/target/release/ember" ]]; then ember="$here/target/release/ember"
  else ember="$(command -v ember || true)"; fi
fi
[[ -x "$ember" ]] || { echo "start-cluster: no ember binary (cargo build --release -p ember-driver, or set EMBER)" >&2; exit 1; }
dir="${EMBER_CLUSTER_DIR:-$PWD/ember-cluster}"
mkdir -p "$dir"
if [[ -f "$dir/master.pid" ]] && kill -0 "$(cat "$dir/master.pid")" 2>/dev/null; then
  echo "start-cluster: a master already runs (pid $(cat "$dir/master.pid")); sbin/stop-cluster.sh first" >&2
  exit 1
fi
port="${EMBER_MASTER_PORT:-7077}"
webui="${EMBER_MASTER_WEBUI_PORT:-8080}"
cores="${EMBER_WORKER_CORES:-$(( $(nproc) / n > 0 ? $(nproc) / n : 1 ))}"
memory="${EMBER_WORKER_MEMORY:-2g}"
wport="${EMBER_WORKER_WEBUI_PORT:-8081}"

nohup "$ember" master --port "$port" --webui-port "$webui" >"$dir/master.out" 2>"$dir/master.log" &
echo $! >"$dir/master.pid"
for _ in $(seq 1 100); do
  grep -q "listening on" "$dir/master.out" 2>/dev/null && break
  kill -0 "$(cat "$dir/master.pid")" 2>/dev/null || { cat "$dir/master.log" >&2; exit 1; }
  sleep 0.1
done
url="$(grep -o 'ember://[^ ]*' "$dir/master.out" | head -1)"
[[ -n "$url" ]] || { echo "start-cluster: the master did not start; see $dir/master.log" >&2; exit 1; }
for i in $(seq 1 "$n"); do
  nohup "$ember" worker "$url" --cores "$cores" --memory "$memory" \
    --webui-port $((wport + i - 1)) --work-dir "$dir/worker-$i" \
    >"$dir/worker-$i.out" 2>"$dir/worker-$i.log" &
  echo $! >"$dir/worker-$i.pid"
done
for i in $(seq 1 "$n"); do
  for _ in $(seq 1 100); do
    grep -q "registered with" "$dir/worker-$i.out" 2>/dev/null && break
    sleep 0.1
  done
done
echo "master $url (web UI http://127.0.0.1:$webui), $n workers of $cores cores and $memory; files in $dir"
echo "submit with: $ember submit --master $url APP [ARGS]..."
