#!/usr/bin/env bash
# Soak: a steady mixed load through two regauth replicas that share one
# Redis, for ten minutes, with latency, errors, RSS and open descriptors
# per minute. What a platform team reads before it puts regauth in front
# of its registry: does it stay flat, and how slow is the slowest 1 %.
#
#   benches/soak.sh [minutes] [requests/s] [connections]   # 10 1000 16
#   BIN=/path/to/regauth benches/soak.sh                   # another build
#
# The mix (benches/soak.py): 60 % cached logins, 15 % refresh grants (a
# token minted on one replica, redeemed on both), 10 % anonymous pulls,
# 10 % cold logins (bcrypt-4 users, each once), 5 % wrong passwords. The
# replicas run the shipped config (verdicts kept 60 s) with the soak
# users in an htpasswd file of its static provider and `[state] backend = "redis"`; audit lines go to
# files. The driver stands for a load balancer: each request names its
# client in X-Forwarded-For (127.0.0.1 is a trusted proxy), one address
# per user, so a mistyped password spends its own network's failure
# budget and not everyone's. Fails when a request gets an unexpected status, or RSS or
# descriptors grow by 5 % or more after the first minute.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-10}"
rate="${2:-1000}"
connections="${3:-16}"

. benches/common.sh
need curl redis-server python3
bench_binary

# the soak users: 10 that log in over and over, and a cold pool large
# enough that every cold login and wrong password names a user once
hash="$(printf 'soak-pw' | "$BIN" hash-password --cost 4)"
cold="$(python3 -c "print(int($minutes * 60 * $rate * 3 / 20) + 1000)")"
python3 - "$hash" "$cold" > "$work/soak.htpasswd" <<'EOF'
import sys
h, cold = sys.argv[1], int(sys.argv[2])
sys.stdout.write("".join(f"soak{i:06d}:{h}\n" for i in range(10)))
sys.stdout.write("".join(f"cold{i:07d}:{h}\n" for i in range(cold)))
EOF

redis_port="$(free_port)"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no > "$work/redis.log" 2>&1 &
pids+=($!)
replicas=()
start() { # name port
    local name=$1 port=$2
    # the soak users join the shipped provider's inline users
    sed -e "s#certs/token.key#$work/token.key#" -e "s#certs/token.crt#$work/token.crt#" \
        -e "s#^listen = \"127.0.0.1:5001\"#listen = \"127.0.0.1:$port\"\ntrusted_proxies = [\"127.0.0.1/32\"]#" \
        -e "s#^\[provider.users\]#htpasswd = \"$work/soak.htpasswd\"\n\n[provider.users]#" \
        config/regauth.toml > "$work/$name.toml"
    grep -q "^htpasswd = \"$work/soak.htpasswd\"" "$work/$name.toml"
    grep -q "^trusted_proxies" "$work/$name.toml"
    cat >> "$work/$name.toml" <<EOF

[refresh_tokens]
key_file = "$work/refresh.key"

[state]
backend = "redis"
url = "redis://127.0.0.1:$redis_port/0"
EOF
    serve "$name" "$port" "$work/$name.toml"
    replicas+=("$port,$last_pid")
}
# the second replica starts once the first has made the token key, its
# certificate and the refresh key, and shares them
start a "$(free_port)"
start b "$(free_port)"

port_a="${replicas[0]%,*}"
refresh="$(curl -fs -H "Authorization: Basic $(printf 'soak000000:soak-pw' | base64)" \
    "http://127.0.0.1:$port_a/auth?service=registry.local&offline_token=true&client_id=soak" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["refresh_token"])')"

echo "regauth $("$BIN" --version 2>/dev/null || echo "$BIN"), $(nproc) cores, redis $(redis-server --version | awk '{print $3}')"
status=0
python3 benches/soak.py "$minutes" "$rate" "$(IFS=';'; echo "${replicas[*]}")" "$refresh" "$connections" || status=$?
for name in a b; do
    lines="$(grep -c '"target":"regauth::audit"' "$work/$name.log" || true)"
    other="$(grep -vc '"target":"regauth::audit"' "$work/$name.log" || true)"
    echo "replica $name: $lines audit lines, $other other lines"
    # (grep finds nothing when a replica logged only audit lines)
    { grep -v '"target":"regauth::audit"' "$work/$name.log" || true; } | head -5
done
exit "$status"
