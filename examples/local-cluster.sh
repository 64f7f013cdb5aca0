#!/usr/bin/env bash
# A newcomer's tour of Cairn: a three-node cluster on this machine.
#
# Builds `cairn`, starts three nodes on 127.0.0.1:7071-7073 (their peer
# ports, for Raft between them, on 7171-7173), deploys the
# built-in `counter` plugin through node 1, applies through node 2, queries
# through node 3, kill -9s the leader, waits for a new one, applies again and
# shows that the survivors hold the same state. Every process it starts is
# stopped on exit, however the script ends.
#
#   examples/local-cluster.sh               # debug build
#   CAIRN_PROFILE=release examples/local-cluster.sh
#   CAIRN_TOUR_BASE_PORT=7271 examples/local-cluster.sh   # if 7071-7073 or 7171-7173 are taken
#
# Needs only bash, cargo and coreutils; JSON is read with grep/sed so no jq is required.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROFILE="${CAIRN_PROFILE:-debug}"
BASE_PORT="${CAIRN_TOUR_BASE_PORT:-7071}"
# Polls are bounded: WAIT_TRIES × POLL_SECS is the longest any single wait lasts.
POLL_SECS=0.2
WAIT_TRIES=300

step() { printf '\n==> %s\n' "$*"; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

port() { echo $((BASE_PORT + $1 - 1)); }
peer_port() { echo $((BASE_PORT + 100 + $1 - 1)); }
url() { echo "http://127.0.0.1:$(port "$1")"; }
# Runs the CLI against node $1.
cli() {
    local id=$1
    shift
    "$CAIRN" --url "$(url "$id")" "$@"
}

# Field of the compact JSON `cairn status --json` prints, e.g. leader_id → 2 (empty if null).
json_field() { grep -o "\"$1\":[^,}]*" | head -n1 | sed 's/^[^:]*://; s/"//g; s/^null$//'; }
leader_seen_by() { cli "$1" status --json 2>/dev/null | json_field leader_id || true; }
leads() { [ "$(leader_seen_by "$1")" = "$1" ]; }
knows_leader() { [ -n "$(leader_seen_by "$1")" ]; }
# True when node $1 lists node $2 as a voter.
is_voter_on() { cli "$1" status --json 2>/dev/null | grep -q "{\"id\":$2,[^}]*\"role\":\"voter\"}"; }

# Retries the command "$@" (re-run each time, so pass a function, not a $(…) value) until it succeeds or the bounded wait runs out.
wait_until() {
    local what=$1
    shift
    for _ in $(seq "$WAIT_TRIES"); do
        if "$@"; then return 0; fi
        sleep "$POLL_SECS"
    done
    die "timed out waiting for $what"
}

declare -A PIDS=()
DATA=""
cleanup() {
    local status=$?
    trap - EXIT
    if [ "${#PIDS[@]}" -gt 0 ]; then
        step "Cleaning up: stopping nodes ${!PIDS[*]}"
        for id in "${!PIDS[@]}"; do kill -TERM "${PIDS[$id]}" 2>/dev/null || true; done
        # Give each node a bounded chance to shut down cleanly, then force it.
        for id in "${!PIDS[@]}"; do
            local pid=${PIDS[$id]}
            for _ in $(seq 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        done
    fi
    if [ -n "$DATA" ]; then
        if [ "$status" -ne 0 ]; then
            echo "node logs (last lines) from $DATA:" >&2
            for log in "$DATA"/node*.log; do
                [ -f "$log" ] && { echo "--- $log" >&2; tail -n 15 "$log" >&2; }
            done
        fi
        rm -rf "$DATA"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_node() {
    local id=$1
    shift
    "$CAIRN" serve --id "$id" --listen "127.0.0.1:$(port "$id")" \
        --advertise "127.0.0.1:$(port "$id")" --peer-listen "127.0.0.1:$(peer_port "$id")" \
        --data-dir "$DATA/node$id" "$@" \
        >"$DATA/node$id.log" 2>&1 &
    PIDS[$id]=$!
    echo "node $id: pid ${PIDS[$id]}, $(url "$id"), log $DATA/node$id.log"
}

step "Building cairn ($PROFILE)"
if [ "$PROFILE" = release ]; then
    (cd "$ROOT" && cargo build --release -p cairn-host)
else
    (cd "$ROOT" && cargo build -p cairn-host)
fi
CAIRN="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE/cairn"
[ -x "$CAIRN" ] || die "no binary at $CAIRN"
echo "binary: $CAIRN"

for id in 1 2 3; do
    for p in "$(port "$id")" "$(peer_port "$id")"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            die "port $p is in use; set CAIRN_TOUR_BASE_PORT to a free range"
        fi
    done
done
DATA="$(mktemp -d "${TMPDIR:-/tmp}/cairn-tour.XXXXXX")"

step "Starting node 1 (a fresh data dir without --join-token initialises a one-node cluster)"
start_node 1
token_written() { [ -s "$DATA/node1/admin.token" ]; }
wait_until "node 1 to write its admin token" token_written
# Every client request carries a bearer token; the CLI, and the nodes that
# join below (adding a member is admin-only), take it from CAIRN_TOKEN.
export CAIRN_TOKEN
CAIRN_TOKEN="$(cat "$DATA/node1/admin.token")"
echo "admin token: $DATA/node1/admin.token"
wait_until "node 1 to lead" leads 1
cli 1 status

for id in 2 3; do
    step "Starting node $id with a join token from node 1 (added as a learner, then promoted to voter)"
    # The token lets the new node fetch the cluster secret (every Raft RPC is
    # signed with it) and names the members' peer addresses; it expires in an hour.
    TOKEN="$(cli 1 join-token)"
    start_node "$id" --join-token "$TOKEN"
    wait_until "node $id to become a voter" is_voter_on 1 "$id"
    wait_until "node $id to see the leader" knows_leader "$id"
done
step "The cluster, as node 3 sees it"
cli 3 status

step "Deploying the built-in counter plugin through node 1"
cli 1 deploy counter

step "Applying {\"increment\":{\"by\":5}} through node 2 (a write to a follower is forwarded to the leader)"
cli 2 apply counter '{"increment":{"by":5}}'

step "Querying through node 3 (linearizable by default: it sees the write made through node 2)"
cli 3 query counter '{"get":{}}'

LEADER="$(leader_seen_by 1)"
[ -n "$LEADER" ] || die "no leader known"
step "Killing the leader, node $LEADER (pid ${PIDS[$LEADER]}), with kill -9"
kill -KILL "${PIDS[$LEADER]}"
wait "${PIDS[$LEADER]}" 2>/dev/null || true
unset "PIDS[$LEADER]"
mapfile -t SURVIVORS < <(printf '%s\n' "${!PIDS[@]}" | sort -n)
echo "survivors: nodes ${SURVIVORS[*]}"

new_leader_elected() {
    local l
    l="$(leader_seen_by "${SURVIVORS[0]}")"
    [ -n "$l" ] && [ "$l" != "$LEADER" ] && [ "$(leader_seen_by "${SURVIVORS[1]}")" = "$l" ]
}
step "Waiting for the survivors to elect a new leader"
wait_until "a new leader" new_leader_elected
echo "new leader: node $(leader_seen_by "${SURVIVORS[0]}")"

step "Applying {\"increment\":{\"by\":10}} through node ${SURVIVORS[0]}"
# The Idempotency-Key makes a retry safe: if an attempt committed but its answer
# was lost, the retry returns the stored result instead of incrementing twice.
apply_again() { cli "${SURVIVORS[0]}" apply counter '{"increment":{"by":10}}' --idempotency-key tour-after-failover; }
wait_until "the apply after failover" apply_again

step "Querying through node ${SURVIVORS[1]} (expect 15)"
cli "${SURVIVORS[1]}" query counter '{"get":{}}'

hashes_agree() {
    [ "$(cli "${SURVIVORS[0]}" state-hash --json)" = "$(cli "${SURVIVORS[1]}" state-hash --json)" ]
}
step "State hashes of the survivors (equal once both have applied the same log)"
wait_until "the survivors to converge" hashes_agree
for id in "${SURVIVORS[@]}"; do
    echo "node $id: $(cli "$id" state-hash)"
done

step "Tour complete"
