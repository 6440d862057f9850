#!/usr/bin/env bash
# State-backend benchmark: tokens/s of the cached token path and of the
# refresh grant, with backend = "embedded" against backend = "redis" (a
# local redis-server), in one run, alternating rounds.
#
#   benches/state.sh [seconds] [connections]
#   BIN=/path/to/regauth benches/state.sh     # another build
#
# Builds the release binary (unless BIN is given), starts redis-server and two regauth servers on
# free loopback ports from the shipped config (one per backend), and runs
# wrk (GET with Basic credentials; POST grant_type=refresh_token with a
# refresh token from a docker-style login) three rounds each.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10}"
connections="${2:-32}"

. benches/common.sh
need wrk curl bc redis-server python3
bench_binary
redis_port="$(free_port)"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no > "$work/redis.log" 2>&1 &
pids+=($!)
start() { # name port state-section
    local name=$1 port=$2 state=$3
    sed -e "s#certs/token.key#$work/token.key#" -e "s#certs/token.crt#$work/token.crt#" \
        -e "s#127.0.0.1:5001#127.0.0.1:$port#" config/regauth.toml > "$work/$name.toml"
    printf '\n[refresh_tokens]\nkey_file = "%s/refresh.key"\n%s\n' "$work" "$state" >> "$work/$name.toml"
    serve "$name" "$port" "$work/$name.toml"
}
port_e="$(free_port)"; start embedded "$port_e" "[state]
dir = \"$work/state\""
port_r="$(free_port)"; start redis "$port_r" "[state]
backend = \"redis\"
url = \"redis://127.0.0.1:$redis_port/0\""

auth="Authorization: Basic $(printf 'bob:bob-dev-password' | base64)"
path="/auth?service=registry.local&scope=repository:dev/app:pull,push"
refresh_token() { # port
    curl -fs -H "$auth" "http://127.0.0.1:$1/auth?service=registry.local&offline_token=true&client_id=docker" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["refresh_token"])'
}
for port in "$port_e" "$port_r"; do curl -fs -H "$auth" "http://127.0.0.1:$port$path" >/dev/null; done
rt_e="$(refresh_token "$port_e")"; rt_r="$(refresh_token "$port_r")"
post_script() { # token file
    cat > "$2" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "grant_type=refresh_token&client_id=docker&service=registry.local&scope=repository:dev/app:pull&refresh_token=$1"
LUA
}
post_script "$rt_e" "$work/post_e.lua"; post_script "$rt_r" "$work/post_r.lua"

run() { wrk -t1 -c"$connections" -d"${duration}s" "$@" | awk '/Requests\/sec/ {print $2}'; }
ge=(); gr=(); pe=(); pr=()
for round in 1 2 3; do
    ge+=("$(run -H "$auth" "http://127.0.0.1:$port_e$path")")
    gr+=("$(run -H "$auth" "http://127.0.0.1:$port_r$path")")
    pe+=("$(run -s "$work/post_e.lua" "http://127.0.0.1:$port_e/auth")")
    pr+=("$(run -s "$work/post_r.lua" "http://127.0.0.1:$port_r/auth")")
done
median() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
a="$(median "${ge[@]}")"; b="$(median "${gr[@]}")"; c="$(median "${pe[@]}")"; d="$(median "${pr[@]}")"
echo "wrk -t1 -c$connections -d${duration}s, 3 alternating rounds each, $(nproc) cores"
echo "rounds cached token, embedded: ${ge[*]}"
echo "rounds cached token, redis:    ${gr[*]}"
echo "rounds refresh grant, embedded: ${pe[*]}"
echo "rounds refresh grant, redis:    ${pr[*]}"
printf 'median cached token:  embedded %8.0f  redis %8.0f tokens/s  redis/embedded %.2f\n' "$a" "$b" "$(echo "$b / $a" | bc -l)"
printf 'median refresh grant: embedded %8.0f  redis %8.0f tokens/s  redis/embedded %.2f\n' "$c" "$d" "$(echo "$d / $c" | bc -l)"
issued() { grep '"grant":"refresh_token"' "$1" | grep -c '"outcome":"issued"' || true; }
refused() { grep '"grant":"refresh_token"' "$1" | grep -vc '"outcome":"issued"' || true; }
echo "refresh grants issued: embedded $(issued "$work/embedded.log") (refused $(refused "$work/embedded.log")), redis $(issued "$work/redis.log") (refused $(refused "$work/redis.log"))"
