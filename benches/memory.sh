#!/usr/bin/env bash
# Memory per cached identity: regauth with an htpasswd of N users (bcrypt
# cost 4, distinct names, one hash), its RSS once started, then each user
# logged in once (a cold login: a bcrypt check, a verdict cached, a token
# signed), and its RSS after; the difference over the verdicts cached is
# the cost of one cached identity. Also the cold-login throughput.
#
#   benches/memory.sh [users] [connections]
#   BIN=/path/to/regauth benches/memory.sh     # another build
#
# Builds the release binary unless BIN is given. RSS is VmRSS from
# /proc/PID/status; the verdict count is regauth_cache_entries from
# /metrics. The login driver is Python's standard library (asyncio, one
# keep-alive connection per worker).
set -euo pipefail
cd "$(dirname "$0")/.."
users="${1:-100000}"
connections="${2:-16}"
. benches/common.sh
need curl python3
bench_binary

hash="$(printf 'bench-pw' | "$BIN" hash-password --cost 4)"
python3 - "$users" "$hash" > "$work/users.htpasswd" <<'EOF'
import sys
n, h = int(sys.argv[1]), sys.argv[2]
sys.stdout.write("".join(f"user{i:06d}:{h}\n" for i in range(n)))
EOF
port="$(free_port)"
cat > "$work/regauth.toml" <<EOF
[server]
listen = "127.0.0.1:$port"

[token]
issuer = "regauth"
services = ["registry.local"]
key = "$work/token.key"                # regauth makes both at start
certificate = "$work/token.crt"

[cache]
verdict_ttl = "1h"
verdict_capacity = $((users + 1000))

[refresh_tokens]
state_dir = "$work/state"
key_file = "$work/refresh.key"

[[provider]]
name = "local"
kind = "static"
htpasswd = "$work/users.htpasswd"

[[rule]]
users = ["*"]
repos = ["\${user}/**"]
actions = ["pull", "push"]
EOF
serve audit "$port" "$work/regauth.toml"
pid=$last_pid
rss() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
entries() { curl -fs "http://127.0.0.1:$port/metrics" | awk '/^regauth_cache_entries\{cache="verdict"\}/ {print $2}'; }
sleep 1
start_kb="$(rss)"

started="$(date +%s.%N)"
python3 - "$port" "$users" "$connections" <<'EOF'
import asyncio, base64, sys
port, users, workers = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
failed = 0

async def worker(first):
    global failed
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for i in range(first, users, workers):
        user = f"user{i:06d}"
        auth = base64.b64encode(f"{user}:bench-pw".encode()).decode()
        writer.write(
            f"GET /auth?service=registry.local&scope=repository:{user}/app:pull HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nAuthorization: Basic {auth}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n")
                      if l.lower().startswith(b"content-length:"))
        await reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 200"):
            failed += 1
    writer.close()

async def main():
    await asyncio.gather(*(worker(w) for w in range(workers)))
asyncio.run(main())
if failed:
    sys.exit(f"{failed} logins failed")
EOF
ended="$(date +%s.%N)"
cached="$(entries)"
after_kb="$(rss)"
# the tokens signed for these logins leave the reuse cache after its
# window (5s): what stays is the verdicts
sleep 8
curl -fs "http://127.0.0.1:$port/healthz" >/dev/null
settled_kb="$(rss)"

echo "users: $users (htpasswd, bcrypt cost 4), $connections connections, $(nproc) cores"
echo "RSS at start:                    $((start_kb / 1024)) MB ($start_kb kB)"
echo "RSS after $cached cached logins:  $((after_kb / 1024)) MB"
echo "RSS 8 s later (reuse window over): $((settled_kb / 1024)) MB"
python3 - "$start_kb" "$after_kb" "$settled_kb" "$cached" "$started" "$ended" <<'EOF'
import sys
start, after, settled, cached, t0, t1 = map(float, sys.argv[1:])
print(f"per cached identity: {(after - start) * 1024 / cached:.0f} bytes, "
      f"{(settled - start) * 1024 / cached:.0f} bytes once the reuse window is over")
print(f"cold logins: {cached / (t1 - t0):.0f} per second ({t1 - t0:.1f} s)")
EOF
