#!/usr/bin/env bash
# Grants only, measured with wrk against the release binary (docs/performance.md, "grants only,
# with wrk"): a back office and a license server started with `tessera` as an administrator would,
# the server activated for 1,000,000 seats, and the trivial handler (examples/trivial_handler.rs) as
# the yardstick. wrk drives the two in alternating rounds; every grants request is a fresh seat for
# a new device. Each round also says the CPU a request cost the process answering it and wrk, and
# the context switches a request of the process answering. Needs wrk (apt-get install wrk).
#
#   crates/tessera-server/benches/wrk.sh            # 5 rounds of 2 s each, 64 connections
#   ROUNDS=10 SECS=3 CONNECTIONS=64 THREADS=2 crates/tessera-server/benches/wrk.sh
#   PERF=/tmp/grants.data crates/tessera-server/benches/wrk.sh   # also a perf profile of the server
#                                   over the rounds (perf report -i FILE --sort comm,symbol);
#                                   PERF_GRAPH=1 records call graphs too
#   TESSERA=/path/to/another/tessera crates/tessera-server/benches/wrk.sh   # another build
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
ROUNDS=${ROUNDS:-5}
SECS=${SECS:-2}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 2; }

cd "$root"
cargo build --release --quiet --bin tessera -p tessera-cli
cargo build --release --quiet -p tessera-server --example trivial_handler
target=${CARGO_TARGET_DIR:-$root/target}
tessera=${TESSERA:-$target/release/tessera}   # TESSERA=/path/to/another/build compares two builds
trivial=$target/release/examples/trivial_handler

work=$(mktemp -d "${TMPDIR:-/tmp}/tessera-wrk.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "$1 did not come up" >&2; exit 1; }

# the back office: a product, a customer, one line of 1,000,000 floating seats
bo=$work/bo
"$tessera" backoffice init --data "$bo" --issuer "Bench" >/dev/null
"$tessera" backoffice product add --data "$bo" --id cad --name CAD --feature modeler:2.0 >/dev/null
customer=$("$tessera" backoffice customer add --data "$bo" --name ACME | grep -o 'CUS-[A-Za-z0-9-]*' | head -1)
key=$("$tessera" backoffice entitlement create --data "$bo" --customer "$customer" \
    --line product=cad,model=floating,count=1000000 | grep -oE '[A-Z0-9]{4,}(-[A-Z0-9]{4,}){3,}' | head -1)
bo_port=$(free_port)
"$tessera" backoffice serve --data "$bo" --listen "127.0.0.1:$bo_port" >"$work/bo.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$bo_port/healthz"

# the license server, activated for the line's 1,000,000 seats
srv=$work/server
token=$("$tessera" server init --data "$srv" --producer-key "$bo/keys/producer.pub" \
    --hostid ethernet=0050569a3b03 | grep -o 'tss_[A-Za-z0-9_-]*' | head -1)
srv_port=$(free_port)
"$tessera" server serve --data "$srv" --listen "127.0.0.1:$srv_port" >"$work/server.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$srv_port/healthz"
"$tessera" server activate --server "http://127.0.0.1:$srv_port" --token "$token" \
    --backoffice "http://127.0.0.1:$bo_port" --key "$key:1000000" >/dev/null

triv_port=$(free_port)
"$trivial" "127.0.0.1:$triv_port" >"$work/trivial.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$triv_port/"

rate() { awk '/^Requests\/sec/ {print $2}'; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # a process's CPU time, in clock ticks
# a process's context switches, all its threads (voluntary and not)
switches() { cat /proc/"$1"/task/*/status | awk '/ctxt_switches/ {n += $2} END {print n}'; }
hz=$(getconf CLK_TCK)
server_pid=${pids[1]}
trivial_pid=${pids[2]}
run() { # URL SCRIPT NAME PID -> requests/s (wrk's report in $work/last, CPU use in $work/cpu)
    local before; before=$(ticks "$4")
    local sw_before; sw_before=$(switches "$4")
    # `times` reports the subshell's children: wrk's own CPU time
    ( wrk -t"$THREADS" -c"$CONNECTIONS" -d"${SECS}s" --latency -s "$here/wrk/$2" "$1" -- "$3" >"$work/last"
      times >"$work/wrk-times" )
    if grep -q "Non-2xx" "$work/last"; then
        echo "answers other than 200 from $1:" >&2; cat "$work/last" >&2; exit 1
    fi
    local after; after=$(ticks "$4")
    local sw_after; sw_after=$(switches "$4")
    local requests; requests=$(awk '/requests in/ {print $1}' "$work/last")
    # CPU µs a request: the server's (or trivial handler's), then wrk's
    awk -v b="$before" -v a="$after" -v hz="$hz" -v n="$requests" -v w="$(tail -1 "$work/wrk-times")" 'BEGIN {
        split(w, t, " "); u = t[1]; s = t[2]
        sub(/s$/, "", u); split(u, um, "m"); sub(/s$/, "", s); split(s, sm, "m")
        wrk = (um[1] * 60 + um[2]) + (sm[1] * 60 + sm[2])
        printf "%.1f %.1f", (a - b) / hz * 1e6 / n, wrk * 1e6 / n }' >"$work/cpu"
    awk -v b="$sw_before" -v a="$sw_after" -v n="$requests" 'BEGIN { printf "%.2f", (a - b) / n }' >"$work/switches"
    rate <"$work/last"
}
echo "# grants only with wrk: $CONNECTIONS connections, $THREADS threads, $ROUNDS alternating rounds of $SECS s"
# warm up both
wrk -t"$THREADS" -c"$CONNECTIONS" -d1s -s "$here/wrk/trivial.lua" "http://127.0.0.1:$triv_port" -- warm >/dev/null
wrk -t"$THREADS" -c"$CONNECTIONS" -d1s -s "$here/wrk/grants.lua" "http://127.0.0.1:$srv_port" -- warm >/dev/null
t_sum=0; s_sum=0; ratios=""
if [ -n "${PERF:-}" ]; then
    perf record -q -F 1999 ${PERF_GRAPH:+-g} -p "$server_pid" -o "$PERF" >/dev/null 2>&1 &
    perf_pid=$!
    sleep 0.5
fi
for i in $(seq "$ROUNDS"); do
    t=$(run "http://127.0.0.1:$triv_port" trivial.lua "t$i" "$trivial_pid")
    t_cpu=$(cat "$work/cpu"); t_sw=$(cat "$work/switches")
    s=$(run "http://127.0.0.1:$srv_port" grants.lua "g$i" "$server_pid")
    s_cpu=$(cat "$work/cpu"); s_sw=$(cat "$work/switches")
    s_p=$(awk '/^ +50%/ {p50=$2} /^ +99%/ {p99=$2} END {print p50 " / " p99}' "$work/last")
    ratios="$ratios $(awk -v s="$s" -v t="$t" 'BEGIN {printf "%.2f", s/t}')"
    echo "round $i: trivial $t req/s, grants $s req/s (p50 / p99 $s_p); CPU µs a request, handler and wrk: trivial ${t_cpu/ / + }, grants ${s_cpu/ / + }; context switches a request: trivial $t_sw, grants $s_sw"
    t_sum=$(awk -v a="$t_sum" -v b="$t" 'BEGIN {print a+b}')
    s_sum=$(awk -v a="$s_sum" -v b="$s" 'BEGIN {print a+b}')
done
if [ -n "${PERF:-}" ]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; fi
awk -v s="$s_sum" -v t="$t_sum" -v n="$ROUNDS" -v r="$ratios" 'BEGIN {
    printf "trivial %.0f req/s, grants only %.0f req/s: ratio %.2f (rounds:%s)\n", t/n, s/n, s/t, r }'
curl -s "http://127.0.0.1:$srv_port/metrics" | awk '
    /^tessera_engine_decisions_total/ {d=$2} /^tessera_engine_commits_total/ {c=$2}
    /^tessera_engine_commit_seconds_total/ {cs=$2} /^tessera_engine_decide_seconds_total/ {ds=$2}
    END { if (c > 0) printf "group commit: %.1f decisions a commit, %.3f ms a commit (%.3f ms deciding)\n", d/c, cs*1000/c, ds*1000/c }'
