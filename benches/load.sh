#!/usr/bin/env bash
# Load benchmark: tokens/s of /auth for one static user repeating one scope,
# with the shipped config and with a signature on every request,
# against /healthz of the same server (the baseline), in one run.
#
#   benches/load.sh [seconds] [connections]
#   BASELINE=/path/to/older/regauth benches/load.sh [seconds] [connections]
#
# With BASELINE, a third server runs that binary on the same config, and
# its rounds alternate with the others (which of the two goes first swaps
# each round): the before/after figure of a change, measured in one run.
# ROUNDS=n runs n rounds instead of 3. BIN=path runs that build instead
# of building this tree's. BASELINE_CONFIG=path gives the
# baseline its own shipped config, for a baseline older than a section the
# current config/regauth.toml has.
#
# Builds the release binary, starts regauth on a free loopback port with the
# shipped config and a generated key, warms the verdict cache, then runs wrk
# (Debian package `wrk`, installed if missing) on both endpoints, alternating
# three rounds each, and prints the medians and their ratio; then the
# p99 latency at 64 connections of each.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10}"
connections="${2:-32}"
threads=1

. benches/common.sh
need wrk curl bc python3
bench_binary

# Two servers from the same config: A as shipped (token.reuse_window = 5s),
# B signing every token (reuse_window = 0s). Audit lines go to files: the
# benchmark measures the server, not a terminal.
start() { # name port [env...]  (BIN=... picks the binary, CONFIG=... its config)
    local name=$1 port=$2; shift 2
    sed -e "s#certs/token.key#$work/token.key#" -e "s#certs/token.crt#$work/token.crt#" \
        -e "s#127.0.0.1:5001#127.0.0.1:$port#" "${CONFIG:-config/regauth.toml}" > "$work/$name.toml"
    serve "$name" "$port" "$work/$name.toml" "$@"
}
port_a="$(free_port)"; start a "$port_a" REGAUTH_BENCH=a
port_b="$(free_port)"; start b "$port_b" REGAUTH_TOKEN__REUSE_WINDOW=0s
if [ -n "${BASELINE:-}" ]; then
    port_c="$(free_port)"; BIN="$BASELINE" CONFIG="${BASELINE_CONFIG:-}" start c "$port_c" REGAUTH_BENCH=c
fi

auth="Authorization: Basic $(printf 'bob:bob-dev-password' | base64)"
path="/auth?service=registry.local&scope=repository:dev/app:pull,push"
curl -fs -H "$auth" "http://127.0.0.1:$port_a$path" >/dev/null   # warm the verdict caches
curl -fs -H "$auth" "http://127.0.0.1:$port_b$path" >/dev/null
[ -z "${BASELINE:-}" ] || curl -fs -H "$auth" "http://127.0.0.1:$port_c$path" >/dev/null

run() { wrk -t"$threads" -c"$connections" -d"${duration}s" "$@" | awk '/Requests\/sec/ {print $2}'; }
reuse=(); fresh=(); base=(); baseline=()
rounds="${ROUNDS:-3}"
for round in $(seq "$rounds"); do
    # which of this build and the baseline goes first swaps every round
    if [ -n "${BASELINE:-}" ] && ((round % 2 == 0)); then
        baseline+=("$(run -H "$auth" "http://127.0.0.1:$port_c$path")")
        reuse+=("$(run -H "$auth" "http://127.0.0.1:$port_a$path")")
    else
        reuse+=("$(run -H "$auth" "http://127.0.0.1:$port_a$path")")
        [ -z "${BASELINE:-}" ] || baseline+=("$(run -H "$auth" "http://127.0.0.1:$port_c$path")")
    fi
    fresh+=("$(run -H "$auth" "http://127.0.0.1:$port_b$path")")
    base+=("$(run "http://127.0.0.1:$port_a/healthz")")
done
median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
r="$(median "${reuse[@]}")"; f="$(median "${fresh[@]}")"; b="$(median "${base[@]}")"
echo "wrk -t$threads -c$connections -d${duration}s, $rounds alternating rounds each, $(nproc) cores"
echo "rounds /auth (reuse 5s):      ${reuse[*]}"
echo "rounds /auth (sign each):     ${fresh[*]}"
echo "rounds /healthz (baseline):   ${base[*]}"
printf 'median /auth, default config (reuse_window 5s): %8.0f tokens/s  ratio %.2f\n' "$r" "$(echo "$r / $b" | bc -l)"
printf 'median /auth, ES256 signed every request:       %8.0f tokens/s  ratio %.2f\n' "$f" "$(echo "$f / $b" | bc -l)"
printf 'median /healthz (baseline):                     %8.0f requests/s\n' "$b"
if [ -n "${BASELINE:-}" ]; then
    c="$(median "${baseline[@]}")"
    echo "rounds /auth, $BASELINE: ${baseline[*]}"
    printf 'median /auth, BASELINE binary (reuse_window 5s): %7.0f tokens/s  this build / baseline %.3f\n' "$c" "$(echo "$r / $c" | bc -l)"
    # each round's two runs are back to back: their ratio is less exposed
    # to the machine's load drifting between rounds than the medians are
    paired=()
    for i in "${!reuse[@]}"; do paired+=("$(echo "${reuse[$i]} / ${baseline[$i]}" | bc -l | cut -c1-5)"); done
    printf 'per-round this build / baseline: %s  median %s\n' "${paired[*]}" "$(median "${paired[@]}")"
fi
# the latency clients see at 64 connections, two wrk threads
p99() { wrk -t2 -c64 -d"${duration}s" --latency "$@" | awk '$1 == "99%" {print $2}'; }
echo "p99 at 64 connections (wrk -t2 -c64): /auth as shipped $(p99 -H "$auth" "http://127.0.0.1:$port_a$path"), ES256 each $(p99 -H "$auth" "http://127.0.0.1:$port_b$path"), /healthz $(p99 "http://127.0.0.1:$port_a/healthz")"
echo "audit lines: A $(grep -c '"outcome":"issued"' "$work/a.log" || true), B $(grep -c '"outcome":"issued"' "$work/b.log" || true)"
