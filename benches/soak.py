"""The soak driver of benches/soak.sh: a steady mixed load on regauth
replicas, and a line per minute of latency, errors, RSS and descriptors.

    python3 soak.py MINUTES RATE PORT,PID[;PORT,PID...] REFRESH_TOKEN WORKERS

The load is open-loop: request k is due at start + k/RATE whatever the
answers before it took, and its latency is counted from when it was due
(a stalled server shows as latency, not as fewer requests). Each worker
keeps one connection to one replica; the workers spread over the
replicas. The mix, of each 20 requests:

    12 cached logins      (10 users repeating one scope)      200
     3 refresh grants     (one refresh token, every replica)  200
     2 anonymous pulls    (public/**)                         200
     2 cold logins        (a user not seen before, bcrypt-4) 200
     1 wrong password     (a user of the cold pool)          401

Any other status is counted as an error. Exits non-zero when a request
failed, or when RSS or open descriptors grew by 5 % or more from the end
of the first minute to the end.
"""

import asyncio
import base64
import sys
import time

MINUTES, RATE = float(sys.argv[1]), float(sys.argv[2])
REPLICAS = [tuple(map(int, r.split(","))) for r in sys.argv[3].split(";")]
REFRESH, WORKERS = sys.argv[4], int(sys.argv[5])
SERVICE = "service=registry.local"
MIX = ["cached"] * 12 + ["refresh"] * 3 + ["anonymous"] * 2 + ["cold"] * 2 + ["wrong"]


def basic(user, password):
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return f"Authorization: Basic {token}\r\n"


def client(n):
    """The address a user's requests come from (10.0.0.0/8, one each)."""
    return f"X-Forwarded-For: 10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}\r\n"


def request(k):
    """The k-th request of the run: its kind, its bytes, its expected status."""
    kind, text, expected, n = what(k)
    return kind, text.replace("\r\n", "\r\n" + client(n), 1), expected


def what(k):
    """The k-th request without its client, and the client's number."""
    kind = MIX[k % len(MIX)]
    n = k // len(MIX)
    if kind == "cached":
        user = f"soak{k % 10:06d}"
        head = f"GET /auth?{SERVICE}&scope=repository:{user}/app:pull,push HTTP/1.1\r\n"
        return kind, head + basic(user, "soak-pw") + "\r\n", 200, k % 10
    if kind == "refresh":
        body = (f"grant_type=refresh_token&client_id=soak&{SERVICE}"
                f"&scope=repository:dev/app:pull&refresh_token={REFRESH}")
        head = ("POST /auth HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\n")
        return kind, head + "\r\n" + body, 200, 10
    if kind == "anonymous":
        head = f"GET /auth?{SERVICE}&scope=repository:public/base:pull HTTP/1.1\r\n\r\n"
        return kind, head, 200, 11 + n % 100
    # cold logins take users in order, each once (three per 20 requests:
    # two right, one wrong): after verdict_ttl their verdicts leave the
    # cache, so its size is steady after a minute
    i = 3 * n + k % len(MIX) - MIX.index("cold")
    user = f"cold{i:07d}"
    password = "soak-pw" if kind == "cold" else "not-the-password"
    head = f"GET /auth?{SERVICE}&scope=repository:{user}/app:pull HTTP/1.1\r\n"
    return kind, head + basic(user, password) + "\r\n", 200 if kind == "cold" else 401, 1000 + i


class Minute:
    def __init__(self):
        self.latencies, self.errors, self.kinds = [], 0, {}
        self.by_kind = {}
        self.unexpected = {}


minutes = []


def minute_of(t):
    while len(minutes) <= int(t // 60):
        minutes.append(Minute())
    return minutes[int(t // 60)]


async def worker(w, start, end):
    port = REPLICAS[w % len(REPLICAS)][0]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    k = w
    while True:
        due = start + k / RATE
        if due >= end:
            break
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        kind, text, expected = request(k)
        writer.write(text.replace("HTTP/1.1\r\n", "HTTP/1.1\r\nHost: 127.0.0.1\r\n", 1).encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        await reader.readexactly(length)
        done = time.monotonic()
        minute = minute_of(due - start)
        minute.latencies.append(done - due)
        minute.by_kind.setdefault(kind, []).append(done - due)
        minute.kinds[kind] = minute.kinds.get(kind, 0) + 1
        status = int(head[9:12])
        if status != expected:
            minute.errors += 1
            what = (kind, status)
            minute.unexpected[what] = minute.unexpected.get(what, 0) + 1
        k += WORKERS
    writer.close()


def sample():
    """RSS (kB) and open descriptors of each replica."""
    out = []
    for _, pid in REPLICAS:
        with open(f"/proc/{pid}/status") as status:
            rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
        fds = len(__import__("os").listdir(f"/proc/{pid}/fd"))
        out.append((rss, fds))
    return out


async def sampler(start, end, samples):
    # a second before each minute ends, while the load still runs
    m = 1
    while start + 60 * m <= end + 0.5:
        await asyncio.sleep(max(0.0, start + 60 * m - 1 - time.monotonic()))
        samples.append(sample())
        m += 1


def p(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000 if values else 0.0


async def main():
    start = time.monotonic() + 0.5
    end = start + MINUTES * 60
    samples = [sample()]
    await asyncio.gather(sampler(start, end, samples),
                         *(worker(w, start, end) for w in range(WORKERS)))
    print(f"{MINUTES:g} min at {RATE:g} requests/s over {len(REPLICAS)} replicas, {WORKERS} connections")
    print("minute  requests  errors  p50 ms  p99 ms  max ms  " +
          "  ".join(f"rss{i} MB  fds{i}" for i in range(len(REPLICAS))))
    for i, minute in enumerate(minutes[: len(samples) - 1]):
        rs = "  ".join(f"{rss / 1024:7.1f}  {fds:5d}" for rss, fds in samples[i + 1])
        print(f"{i + 1:6d}  {len(minute.latencies):8d}  {minute.errors:6d}  "
              f"{p(minute.latencies, .5):6.2f}  {p(minute.latencies, .99):6.2f}  "
              f"{p(minute.latencies, 1):6.1f}  {rs}")
    total = sum(len(m.latencies) for m in minutes)
    errors = sum(m.errors for m in minutes)
    kinds = {}
    for m in minutes:
        for kind, n in m.kinds.items():
            kinds[kind] = kinds.get(kind, 0) + n
    print(f"requests {total}, errors {errors}; " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    for kind in sorted(kinds):
        all_of = [t for m in minutes for t in m.by_kind.get(kind, [])]
        print(f"  {kind:9s} p50 {p(all_of, .5):6.2f} ms  p99 {p(all_of, .99):6.2f} ms  max {p(all_of, 1):6.1f} ms")
    unexpected = {}
    for m in minutes:
        for what, n in m.unexpected.items():
            unexpected[what] = unexpected.get(what, 0) + n
    for (kind, status), n in sorted(unexpected.items()):
        print(f"  unexpected: {n} {kind} answered {status}")
    bad = errors > 0
    if len(samples) < 3:
        print("growth is judged from the end of minute 1: run two minutes or more")
    for r in range(len(REPLICAS)) if len(samples) >= 3 else ():
        first, last = samples[1][r], samples[-1][r]
        rss_growth = (last[0] - first[0]) / first[0] * 100
        fd_growth = (last[1] - first[1]) / first[1] * 100
        print(f"replica {r}: RSS {first[0] / 1024:.1f} -> {last[0] / 1024:.1f} MB ({rss_growth:+.1f} %), "
              f"descriptors {first[1]} -> {last[1]} ({fd_growth:+.1f} %) from minute 1 to the end")
        bad |= rss_growth >= 5 or fd_growth >= 5
    sys.exit(1 if bad else 0)


asyncio.run(main())
