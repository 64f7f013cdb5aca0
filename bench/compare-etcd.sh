#!/usr/bin/env bash
# Side-by-side benchmark of Cairn and etcd on this machine (issue 10).
#
# Both systems get the same treatment: 3 members on loopback, fsync on (each
# one's default), data under one temp dir, every request sent to the leader,
# one 16-byte key with a 100-byte value, the same closed-loop load tool (wrk
# with bench/wrk/post.lua). Cairn is driven through the `kv` plugin, etcd
# 3.4 through its JSON gateway. For each workload the runs are interleaved
# Cairn, etcd, Cairn, etcd (so a burst of load from elsewhere hits both), and
# the table shows the median of each system's runs.
#
# Usage: bench/compare-etcd.sh            (from anywhere; prints a markdown table)
# Environment:
#   CAIRN_BIN        Cairn binary to use; unset: `cargo build --release -p cairn-host`
#   DURATION         seconds per run (default 15)
#   ROUNDS           runs per system and workload (default 2)
#   FLOOR            1 (default): also measure the floors (fsync, HTTP round trip)
#   CAIRN_PORT_BASE  first client port of the Cairn members (default 27281; they use
#                    BASE, BASE+2, BASE+4 and the next port of each for peers)
#   ETCD_PORT_BASE   first port of the etcd members (default 27379; client ports
#                    BASE..BASE+2, peer ports BASE+10..BASE+12)
#   BENCH_TMP        where the temp dir goes (default $TMPDIR or /tmp); must be a
#                    real disk, a tmpfs would make fsync free
#   READY_TIMEOUT_S  how long a cluster may take to come up (default 60)
# Needs root (or sudo) only when etcd or wrk are missing: they are installed
# with apt-get.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO
readonly WRK_SCRIPT=$REPO/bench/wrk/post.lua

readonly DURATION=${DURATION:-15}
readonly ROUNDS=${ROUNDS:-2}
readonly FLOOR=${FLOOR:-1}
readonly CAIRN_PORT_BASE=${CAIRN_PORT_BASE:-27281}
readonly ETCD_PORT_BASE=${ETCD_PORT_BASE:-27379}
readonly READY_TIMEOUT_S=${READY_TIMEOUT_S:-60}
# Time a stopped server gets to exit before it is killed.
readonly STOP_TIMEOUT_S=10
# wrk gives up on a request after this long and counts it as an error (which
# fails the run); Cairn's own request deadline is 5 s.
readonly WRK_TIMEOUT_S=5
# Seconds per floor measurement (HTTP round trip to a trivial endpoint).
readonly FLOOR_HTTP_SECONDS=5

# The request: one 16-byte key, one 100-byte value.
readonly KEY=bench-key-000001
VALUE=$(printf 'v%.0s' $(seq 1 100))
readonly VALUE

# Filled in as the script goes.
WORK=""          # temp dir holding every data dir and log
PIDS=()          # servers this script started, stopped on exit
CAIRN_TOKEN=""   # admin bearer token of the Cairn cluster
WARNINGS=()      # notes printed under the table
CAIRN_BUILT_AT=""  # commit the binary was built from (empty: CAIRN_BIN given)
ROWS=()          # table rows, one per workload
FAILURES=()      # runs that had non-200 answers or socket errors

say() { echo "compare-etcd: $*" >&2; }
die() {
    say "FAILED: $*"
    exit 1
}

# --- setup ------------------------------------------------------------------

# Installs etcd and wrk from Debian when missing; nothing else is installed.
install_tools() {
    local missing=()
    command -v etcd >/dev/null || missing+=(etcd-server)
    command -v wrk >/dev/null || missing+=(wrk)
    command -v curl >/dev/null || missing+=(curl)
    ((${#missing[@]} == 0)) && return 0
    say "installing ${missing[*]} with apt-get"
    local sudo=()
    ((EUID == 0)) || sudo=(sudo)
    "${sudo[@]}" apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q "${missing[@]}" >&2
}

# Sets CAIRN_BIN, building the release binary unless one was given.
cairn_binary() {
    if [[ -n ${CAIRN_BIN:-} ]]; then
        [[ -x $CAIRN_BIN ]] || die "CAIRN_BIN=$CAIRN_BIN is not an executable"
        return 0
    fi
    say "building Cairn (cargo build --release -p cairn-host)"
    (cd "$REPO" && cargo build --release -p cairn-host >&2)
    CAIRN_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/cairn
    CAIRN_BUILT_AT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
}

# Stops every server we started (by pid) and removes the temp dir. On a
# failure the tails of the logs are shown first, since they go with the dir.
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if ((status != 0)) && [[ -n $WORK && -d $WORK ]]; then
        local log
        for log in "$WORK"/*.log; do
            [[ -f $log ]] || continue
            say "--- last lines of $(basename "$log")"
            tail -n 15 "$log" >&2 || true
        done
    fi
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    local deadline=$((SECONDS + STOP_TIMEOUT_S))
    for pid in "${PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    [[ -n $WORK ]] && rm -rf "$WORK"
    exit "$status"
}

# Polls CMD... every 0.1 s until it succeeds; dies after TIMEOUT_S seconds.
wait_for() {
    local what=$1 timeout_s=$2
    shift 2
    local deadline=$((SECONDS + timeout_s))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "timed out after ${timeout_s}s waiting for $what"
        sleep 0.1
    done
}

# True when nothing listens on 127.0.0.1:PORT.
port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

check_ports_free() {
    local port
    for port in "$@"; do
        port_free "$port" || die "port $port is in use (set CAIRN_PORT_BASE / ETCD_PORT_BASE)"
    done
}

# --- Cairn ------------------------------------------------------------------

cairn_port() { echo $((CAIRN_PORT_BASE + 2 * ($1 - 1))); }

cairn_ready() { curl -sf "http://127.0.0.1:$(cairn_port "$1")/readyz" >/dev/null; }

# GET /v1/cluster on NODE (1..3).
cairn_cluster() {
    curl -sf -H "Authorization: Bearer $CAIRN_TOKEN" "http://127.0.0.1:$(cairn_port "$1")/v1/cluster"
}

# Prints the leader's node id as node 1 sees it; fails while there is none.
cairn_leader() {
    local id
    id=$(cairn_cluster 1 | sed -n 's/.*"leader_id":\([0-9][0-9]*\).*/\1/p')
    [[ -n $id ]] && echo "$id"
}

# True when the leader counts 3 voters (both joins have completed).
cairn_three_voters() {
    local leader
    leader=$(cairn_leader) || return 1
    (($(cairn_cluster "$leader" | grep -o '"role":"voter"' | wc -l) == 3))
}

# Node 1 initialises the cluster and writes admin.token; 2 and 3 join it with
# a join token, one after the other (a join waits for the previous one).
start_cairn() {
    local i
    for i in 1 2 3; do
        check_ports_free "$(cairn_port "$i")" $(($(cairn_port "$i") + 1))
    done
    "$CAIRN_BIN" serve --id 1 --listen "127.0.0.1:$(cairn_port 1)" \
        --data-dir "$WORK/cairn1" >"$WORK/cairn1.log" 2>&1 &
    PIDS+=($!)
    wait_for "Cairn node 1" "$READY_TIMEOUT_S" \
        bash -c "[[ -f '$WORK/cairn1/admin.token' ]] && curl -sf http://127.0.0.1:$(cairn_port 1)/readyz"
    CAIRN_TOKEN=$(<"$WORK/cairn1/admin.token")
    local join_token
    join_token=$("$CAIRN_BIN" --url "http://127.0.0.1:$(cairn_port 1)" --data-dir "$WORK/cairn1" join-token)
    for i in 2 3; do
        "$CAIRN_BIN" serve --id "$i" --listen "127.0.0.1:$(cairn_port "$i")" \
            --data-dir "$WORK/cairn$i" --join-token "$join_token" >"$WORK/cairn$i.log" 2>&1 &
        PIDS+=($!)
        wait_for "Cairn node $i" "$READY_TIMEOUT_S" cairn_ready "$i"
    done
    wait_for "a Cairn leader with 3 voters" "$READY_TIMEOUT_S" cairn_three_voters
    "$CAIRN_BIN" --url "http://127.0.0.1:$(cairn_port 1)" --data-dir "$WORK/cairn1" deploy kv >&2
}

# --- etcd -------------------------------------------------------------------

etcd_client_port() { echo $((ETCD_PORT_BASE + $1 - 1)); }
etcd_peer_port() { echo $((ETCD_PORT_BASE + 10 + $1 - 1)); }

# /health answers {"health":"true"} once the member sees a leader.
etcd_healthy() {
    curl -sf "http://127.0.0.1:$(etcd_client_port "$1")/health" | grep -q '"health":"true"'
}

# Prints the member number (1..3) of the leader: the member whose status names
# itself as leader.
etcd_leader() {
    local i status
    for i in 1 2 3; do
        status=$(curl -sf -X POST -d '{}' "http://127.0.0.1:$(etcd_client_port "$i")/v3/maintenance/status") || continue
        local me leader
        me=$(sed -n 's/.*"member_id":"\([0-9]*\)".*/\1/p' <<<"$status")
        leader=$(sed -n 's/.*"leader":"\([0-9]*\)".*/\1/p' <<<"$status")
        if [[ -n $me && $me == "$leader" ]]; then
            echo "$i"
            return 0
        fi
    done
    return 1
}

# Three members with a static initial cluster; every flag not named here is
# etcd's default (fsync on, heartbeat 100 ms, election 1000 ms).
start_etcd() {
    local i cluster=""
    for i in 1 2 3; do
        check_ports_free "$(etcd_client_port "$i")" "$(etcd_peer_port "$i")"
        cluster+="${cluster:+,}m$i=http://127.0.0.1:$(etcd_peer_port "$i")"
    done
    for i in 1 2 3; do
        etcd --name "m$i" --data-dir "$WORK/etcd$i" \
            --listen-client-urls "http://127.0.0.1:$(etcd_client_port "$i")" \
            --advertise-client-urls "http://127.0.0.1:$(etcd_client_port "$i")" \
            --listen-peer-urls "http://127.0.0.1:$(etcd_peer_port "$i")" \
            --initial-advertise-peer-urls "http://127.0.0.1:$(etcd_peer_port "$i")" \
            --initial-cluster "$cluster" --initial-cluster-state new \
            --initial-cluster-token "compare-etcd-$$" \
            --logger zap --log-level warn >"$WORK/etcd$i.log" 2>&1 &
        PIDS+=($!)
    done
    for i in 1 2 3; do
        wait_for "etcd member $i" "$READY_TIMEOUT_S" etcd_healthy "$i"
    done
    wait_for "an etcd leader" "$READY_TIMEOUT_S" etcd_leader
}

# --- requests ---------------------------------------------------------------

b64() { printf %s "$1" | base64 -w0; }

# Sets URL, BODY and AUTH for SYSTEM (cairn|etcd) and OP (put|get), aimed at
# the current leader.
request_for() {
    local system=$1 op=$2
    case $system in
    cairn)
        local leader port
        leader=$(cairn_leader) || die "Cairn has no leader"
        port=$(cairn_port "$leader")
        AUTH="Bearer $CAIRN_TOKEN"
        if [[ $op == put ]]; then
            URL="http://127.0.0.1:$port/v1/plugins/kv/apply"
            BODY="{\"put\":{\"key\":\"$KEY\",\"value\":\"$VALUE\"}}"
        else
            URL="http://127.0.0.1:$port/v1/plugins/kv/query?consistency=linearizable"
            BODY="{\"get\":{\"key\":\"$KEY\"}}"
        fi
        ;;
    etcd)
        local leader port
        leader=$(etcd_leader) || die "etcd has no leader"
        port=$(etcd_client_port "$leader")
        AUTH=""
        if [[ $op == put ]]; then
            URL="http://127.0.0.1:$port/v3/kv/put"
            BODY="{\"key\":\"$(b64 "$KEY")\",\"value\":\"$(b64 "$VALUE")\"}"
        else
            # Range is linearizable unless "serializable":true is asked for.
            URL="http://127.0.0.1:$port/v3/kv/range"
            BODY="{\"key\":\"$(b64 "$KEY")\"}"
        fi
        ;;
    esac
}

# One request with curl; prints the answer, fails unless it is 200.
send_once() {
    local system=$1 op=$2 headers=()
    request_for "$system" "$op"
    [[ -n $AUTH ]] && headers=(-H "Authorization: $AUTH")
    curl -sf -X POST -H 'Content-Type: application/json' "${headers[@]}" -d "$BODY" "$URL"
}

# Writes the key on both systems and reads it back, so the read workloads
# read a value that exists and we know both APIs answer as expected.
check_requests() {
    send_once cairn put >/dev/null || die "Cairn refused the put"
    send_once cairn get | grep -q "\"value\":\"$VALUE\"" || die "Cairn did not read back the value"
    send_once etcd put >/dev/null || die "etcd refused the put"
    send_once etcd get | grep -q "\"value\":\"$(b64 "$VALUE")\"" || die "etcd did not read back the value"
}

# --- load -------------------------------------------------------------------

# Runs wrk for SECONDS with CLIENTS connections against the request set up by
# request_for. Prints "req_per_s p50_ms p99_ms" and, when any answer was not
# 200 or any socket error happened, a second line "FAIL <why>": such a run is
# not a result (refusing requests is fast), and the caller says so loudly.
run_wrk() {
    local label=$1 clients=$2 seconds=$3
    # wrk needs at least one connection per thread; two threads use both cores.
    local threads=$((clients < 2 ? clients : 2))
    local out
    out=$(WRK_BODY=$BODY WRK_AUTH=$AUTH wrk --latency -t "$threads" -c "$clients" \
        -d "${seconds}s" --timeout "${WRK_TIMEOUT_S}s" -s "$WRK_SCRIPT" "$URL") ||
        die "$label: wrk failed: $out"
    local result
    result=$(grep '^RESULT ' <<<"$out") || die "$label: no RESULT line from wrk: $out"
    local requests duration_us non200 errors p50_us p99_us
    requests=$(field requests "$result")
    duration_us=$(field duration_us "$result")
    non200=$(field non200 "$result")
    errors=$(field errors "$result")
    p50_us=$(field p50_us "$result")
    p99_us=$(field p99_us "$result")
    ((requests > 0)) || die "$label: no request completed"
    awk -v n="$requests" -v d="$duration_us" -v p50="$p50_us" -v p99="$p99_us" \
        'BEGIN { printf "%.1f %.3f %.3f\n", n / (d / 1e6), p50 / 1000, p99 / 1000 }'
    if ((non200 > 0)); then
        echo "FAIL $label: $non200 of $requests answers were not 200; first: ${result#*first_bad=}"
    elif ((errors > 0)); then
        echo "FAIL $label: $errors socket errors or timeouts in $requests requests"
    fi
}

# Prints the value of NAME=... in a RESULT line.
field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$2"; }

# Median of the numbers on stdin (mean of the middle two for an even count).
median() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# "12345.6" -> "12,346"
thousands() {
    awk -v r="$1" 'BEGIN {
        s = sprintf("%d", r + 0.5); t = ""
        while (length(s) > 3) { t = "," substr(s, length(s) - 2) t; s = substr(s, 1, length(s) - 3) }
        print s t }'
}

# Runs one workload A-B-A-B and appends its table row to ROWS. A system with a
# failed run gets "FAILED" in its cell (its numbers in brackets) and no ratio;
# the reasons go to FAILURES and the script exits non-zero at the end.
workload() {
    local name=$1 op=$2 clients=$3
    local round system r a b c rest
    declare -A rps=() p50=() p99=() failed=()
    for round in $(seq 1 "$ROUNDS"); do
        for system in cairn etcd; do
            request_for "$system" "$op"
            local target=$URL
            r=$(run_wrk "$system, $name, round $round" "$clients" "$DURATION")
            read -r a b c <<<"$(head -n 1 <<<"$r")"
            rps[$system]+="$a "
            p50[$system]+="$b "
            p99[$system]+="$c "
            say "$name, $system, round $round: $a req/s, p50 $b ms, p99 $c ms"
            rest=$(sed -n 's/^FAIL //p' <<<"$r")
            if [[ -n $rest ]]; then
                say "FAILED: $rest"
                FAILURES+=("$rest")
                failed[$system]=1
            fi
            # A leader change mid-run would send requests through a forwarder.
            request_for "$system" "$op"
            [[ $URL == "$target" ]] ||
                WARNINGS+=("$system changed leader during \"$name\" round $round")
        done
    done
    local cells=() medians=()
    for system in cairn etcd; do
        local m q50 q99 cell
        m=$(tr ' ' '\n' <<<"${rps[$system]}" | grep . | median)
        q50=$(tr ' ' '\n' <<<"${p50[$system]}" | grep . | median)
        q99=$(tr ' ' '\n' <<<"${p99[$system]}" | grep . | median)
        medians+=("$m")
        cell=$(printf '%s/s, p50 %.2f ms, p99 %.2f ms' "$(thousands "$m")" "$q50" "$q99")
        [[ -n ${failed[$system]:-} ]] && cell="**FAILED** (non-200 answers; $cell)"
        cells+=("$cell")
    done
    local ratio=n/a
    [[ -z ${failed[cairn]:-} && -z ${failed[etcd]:-} ]] &&
        ratio=$(awk -v a="${medians[0]}" -v b="${medians[1]}" 'BEGIN { printf "%.2f", a / b }')
    ROWS+=("| $name | ${cells[0]} | ${cells[1]} | $ratio |")
}

# The floors under both systems: a durable 4 KiB write on the disk that holds
# the data dirs, and one HTTP round trip on loopback to each server's cheapest
# endpoint (no auth, no Raft, no plugin) with one connection.
floors() {
    "$REPO/bench/fsync-floor.sh" "$WORK" 1000
    local r
    r=$(floor_http "http://127.0.0.1:$(cairn_port 1)/healthz")
    echo "HTTP round trip, Cairn GET /healthz, 1 client: $r"
    r=$(floor_http "http://127.0.0.1:$(etcd_client_port 1)/version")
    echo "HTTP round trip, etcd GET /version, 1 client: $r"
}

# wrk with a GET and its plain --latency output; prints "p50 X ms, p99 Y ms"
# (wrk writes 17.00us / 1.88ms / 1.02s; converted to ms).
floor_http() {
    local out
    out=$(wrk --latency -t 1 -c 1 -d "${FLOOR_HTTP_SECONDS}s" "$1") || die "wrk failed on $1"
    grep -q 'Non-2xx' <<<"$out" && die "$1 answered non-2xx"
    awk 'function ms(v) {
            if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; return v * 1000 }
         $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) }
         END { printf "p50 %.3f ms, p99 %.3f ms\n", p50, p99 }' <<<"$out"
}

# --- main -------------------------------------------------------------------

main() {
    local load_at_start
    load_at_start=$(uptime)
    install_tools
    cairn_binary

    WORK=$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/compare-etcd.XXXXXX")
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    [[ $(stat -f -c %T "$WORK") == tmpfs ]] &&
        die "$WORK is on tmpfs, where fsync costs nothing; set BENCH_TMP to a disk"

    say "starting 3 Cairn nodes and 3 etcd members under $WORK"
    start_cairn
    start_etcd
    check_requests

    local load_before_runs
    load_before_runs=$(uptime)
    workload "put, 1 client" put 1
    workload "put, 64 clients" put 64
    workload "linearizable read, 1 client" get 1
    workload "linearizable read, 64 clients" get 64

    echo
    echo "Cairn vs etcd, 3 members each on loopback, fsync on, one 16-byte key," \
        "100-byte value, requests to the leader, wrk closed loop," \
        "interleaved A-B-A-B, median of $ROUNDS × ${DURATION} s."
    echo
    echo "| workload | Cairn | etcd | ratio (req/s) |"
    echo "|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
    echo
    local origin="$CAIRN_BIN (CAIRN_BIN)"
    [[ -n $CAIRN_BUILT_AT ]] && origin="built from commit $CAIRN_BUILT_AT"
    echo "- Cairn: $("$CAIRN_BIN" --version), $origin"
    echo "- etcd: $(etcd --version | head -n 1 | sed 's/^etcd Version: //') (JSON gateway)"
    echo "- wrk: $(wrk -v 2>&1 | head -n 1 | awk '{ print $2 }')"
    echo "- machine: $(nproc) cores, $(uname -sr)"
    echo "- load at start:       $load_at_start"
    echo "- load before the runs: $load_before_runs"
    echo "- load after the runs:  $(uptime)"
    local warning
    for warning in "${WARNINGS[@]}"; do
        echo "- WARNING: $warning"
    done
    if [[ $FLOOR == 1 ]]; then
        echo
        echo "Floors:"
        echo
        floors | sed 's/^/- /'
    fi
    if ((${#FAILURES[@]} > 0)); then
        echo
        echo "FAILED runs (their numbers are not results):"
        echo
        printf -- '- %s\n' "${FAILURES[@]}"
        die "${#FAILURES[@]} run(s) had answers other than 200"
    fi
}

main "$@"
