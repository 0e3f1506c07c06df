#!/usr/bin/env bash
# Test hosts on one machine: N Linux network namespaces joined by a bridge
# that lives in a namespace of its own, so nothing is added to this
# machine's own network and nothing can leave it (no uplink, no default
# route, no NAT). Needs root and `ip` (Debian's iproute2).
#
#   scripts/testnet.sh up N [PREFIX]     make hosts PREFIX-h1..PREFIX-hN
#   scripts/testnet.sh down [PREFIX]     remove PREFIX's namespaces
#   scripts/testnet.sh clean             remove namespaces of test runs
#                                        whose process is gone
#   scripts/testnet.sh exec I CMD...     run CMD on host I of PREFIX
#   scripts/testnet.sh cut I | restore I take host I's link down / up
#
# PREFIX defaults to $EMBER_TESTNET (else "embnet"); tests use
# "embnet<pid>x<n>", which `clean` recognises. Host I has the address
# 10.77.0.I/24 on its eth0 and its loopback up; its only route is the
# subnet's. Its link's far end is port hI of bridge br0 in PREFIX-br.
set -euo pipefail

SUBNET=10.77.0
cmd=${1:-}
shift || true

prefix_arg() { echo "${1:-${EMBER_TESTNET:-embnet}}"; }

# Namespaces of PREFIX (its hosts and its bridge).
namespaces_of() {
    ip netns list | awk '{print $1}' | grep -E "^$1-(h[0-9]+|br)$" || true
}

down() {
    local prefix=$1 ns
    # Hosts first: their processes lose their links, then the bridge goes.
    for ns in $(namespaces_of "$prefix" | sort -r); do
        # Processes left in a namespace keep it alive after `ip netns del`.
        local pids
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        if [ -n "$pids" ]; then
            # shellcheck disable=SC2086
            kill -9 $pids 2>/dev/null || true
        fi
        ip netns del "$ns" 2>/dev/null || true
    done
}

up() {
    local n=$1 prefix=$2 br i ns
    case $n in '' | *[!0-9]*) echo "testnet: up needs a host count" >&2; exit 2 ;; esac
    if [ "$n" -lt 1 ] || [ "$n" -gt 250 ]; then
        echo "testnet: between 1 and 250 hosts" >&2
        exit 2
    fi
    if ! command -v ip >/dev/null 2>&1; then
        echo "testnet: no \`ip\` command (install Debian's iproute2)" >&2
        exit 1
    fi
    down "$prefix"
    br=$prefix-br
    # A failure halfway leaves nothing behind.
    trap 'down "$prefix"' ERR
    ip netns add "$br"
    ip -n "$br" link set lo up
    ip -n "$br" link add br0 type bridge forward_delay 0 stp_state 0
    ip -n "$br" link set br0 up
    for i in $(seq 1 "$n"); do
        ns=$prefix-h$i
        ip netns add "$ns"
        # IPv4 only: no link-local IPv6 chatter (router solicitations).
        ip netns exec "$ns" sh -c 'echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6' 2>/dev/null || true
        ip -n "$ns" link set lo up
        ip link add eth0 netns "$ns" type veth peer name "h$i" netns "$br"
        ip -n "$br" link set "h$i" master br0
        ip -n "$br" link set "h$i" up
        ip -n "$ns" addr add "$SUBNET.$i/24" dev eth0
        ip -n "$ns" link set eth0 up
    done
    trap - ERR
    for i in $(seq 1 "$n"); do
        echo "$prefix-h$i $SUBNET.$i"
    done
}

# Namespaces of test runs ("embnet<pid>x<n>-...") whose process is gone.
clean() {
    local prefix pid
    for prefix in $(ip netns list | awk '{print $1}' | sed -nE 's/^(embnet([0-9]+)x[0-9]+)-(h[0-9]+|br)$/\1/p' | sort -u); do
        pid=${prefix#embnet}
        pid=${pid%%x*}
        if [ ! -d "/proc/$pid" ]; then
            down "$prefix"
        fi
    done
}

host_ns() {
    local i=$1 prefix
    prefix=$(prefix_arg "")
    case $i in '' | *[!0-9]*) echo "testnet: host number expected, got '$i'" >&2; exit 2 ;; esac
    echo "$prefix-h$i"
}

case $cmd in
    up) up "${1:-}" "$(prefix_arg "${2:-}")" ;;
    down) down "$(prefix_arg "${1:-}")" ;;
    clean) clean ;;
    exec)
        ns=$(host_ns "${1:-}")
        shift
        exec ip netns exec "$ns" "$@"
        ;;
    cut | restore)
        ns=$(host_ns "${1:-}")
        state=down
        [ "$cmd" = restore ] && state=up
        ip -n "${ns%-h*}-br" link set "h${ns##*-h}" "$state"
        ;;
    *)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
        exit 2
        ;;
esac
