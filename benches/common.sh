# What the bench scripts share; sourced from the repository's root.
#
#   need wrk curl ...           installs the missing tools from Debian
#   bench_binary                sets BIN: the build given, or this tree's
#                               release build (built now)
#   free_port                   a free loopback port
#   serve NAME PORT CONFIG [ENV=VALUE...]
#                               runs regauth on CONFIG (JSON log, audit
#                               lines on) into $work/NAME.log, and waits
#                               for its /healthz; its PID is $last_pid
#
# It makes $work (a temporary directory) and $pids (processes to stop),
# both cleaned up when the script exits.

need() {
    local missing=() tool
    for tool in "$@"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
    if ((${#missing[@]})); then
        echo "installing ${missing[*]} from Debian" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

bench_binary() {
    if [ -z "${BIN:-}" ]; then
        cargo build --release --quiet --bin regauth
        BIN=target/release/regauth
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

serve() {
    local name=$1 port=$2 config=$3
    shift 3
    env "$@" RUST_LOG=warn,regauth::audit=info "$BIN" --log-format json \
        serve --config "$config" 2> "$work/$name.log" &
    last_pid=$!
    pids+=("$last_pid")
    for _ in $(seq 200); do
        curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return
        sleep 0.1
    done
    echo "regauth $name did not start" >&2
    cat "$work/$name.log" >&2
    exit 1
}

work="$(mktemp -d)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
