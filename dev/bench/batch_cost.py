#!/usr/bin/env python3
"""What accepting events costs with Redis: 500-event batches and single events, posted
to a server binary on a fresh redis-server, for one or more builds side by side.

    python3 dev/bench/batch_cost.py --bin after=target/release/fixrx-realtime \\
        --bin before=/tmp/fixrx-before --rounds 5

Each round starts, for each binary in turn (the order reversed every other round), a
fresh redis-server and the server on it (default settings, REDIS_URL), connects one
Socket.IO client over WebSocket as the user every event goes to, then posts `--batches`
batches of 500 `payment:completed` events one after the other, and `--singles` single
events, each request waiting for its answer. It counts what the socket receives: the run
fails unless every event arrived once.

Figures per binary, medians over the rounds: wall time per batch and per single event
(request sent to answer read), server CPU and redis-server CPU per batch and per single
event (utime + stime from /proc, the server's including delivering to the socket).
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import http.client

from bench_kit import cpu_seconds, free_port, wait_port, ws_frame

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
JWT_SECRET = "bench-secret-0123456789abcdef0123456789"
API_TOKEN = "bench-api-token"
USER = "batch-bench-user"


def token():
    """An HS256 JWT for USER, signed with JWT_SECRET (no third-party module needed)."""
    import base64, hashlib, hmac

    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": USER, "exp": int(time.time()) + 3600}).encode())
    sig = b64(hmac.new(JWT_SECRET.encode(), head + b"." + body, hashlib.sha256).digest())
    return (head + b"." + body + b"." + sig).decode()


class Receiver(threading.Thread):
    """A Socket.IO client over a raw WebSocket (Engine.IO v4), counting payment ids."""

    def __init__(self, port):
        super().__init__(daemon=True)
        import base64

        self.sock = socket.create_connection(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
             f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
             "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            sys.exit(f"WebSocket refused: {head[:200]!r}")
        self.buf = b""
        self.seen = {}
        self.connected = threading.Event()
        self.lock = threading.Lock()
        self.send_text("40" + json.dumps({"token": token()}))

    def send_text(self, text):
        self.sock.sendall(ws_frame(text))

    def frame(self):
        def need(k):
            while len(self.buf) < k:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    raise EOFError
                self.buf += chunk
        need(2)
        n = self.buf[1] & 0x7F
        at = 2
        if n == 126:
            need(4)
            n, at = int.from_bytes(self.buf[2:4], "big"), 4
        elif n == 127:
            need(10)
            n, at = int.from_bytes(self.buf[2:10], "big"), 10
        need(at + n)
        payload, self.buf = self.buf[at:at + n], self.buf[at + n:]
        return payload.decode()

    def run(self):
        try:
            while True:
                text = self.frame()
                if text == "2":
                    self.send_text("3")
                elif text.startswith("40"):
                    self.connected.set()
                elif text.startswith("42"):
                    name, payload = json.loads(text[2:])[:2]
                    if name == "payment:completed":
                        pid = payload["payment"]["id"]
                        with self.lock:
                            self.seen[pid] = self.seen.get(pid, 0) + 1
        except (EOFError, OSError):
            pass

    def count(self):
        with self.lock:
            return sum(self.seen.values()), max(self.seen.values(), default=0)


def event(i, tag):
    return {"type": "payment:completed",
            "payment": {"id": f"{tag}-{i}", "userId": USER, "vendorId": "v1", "amount": i}}


def one_run(binary, opts, tag):
    redis_port, port = free_port(), free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    server = None
    try:
        wait_port(redis_port, redis, "redis-server")
        env = dict(os.environ, PORT=str(port), HOST="127.0.0.1", JWT_SECRET=JWT_SECRET,
                   API_TOKEN=API_TOKEN, REDIS_URL=f"redis://127.0.0.1:{redis_port}", RUST_LOG="warn")
        server = subprocess.Popen([binary], env=env, cwd="/tmp", stdout=subprocess.DEVNULL)
        wait_port(port, server, binary)
        receiver = Receiver(port)
        receiver.start()
        if not receiver.connected.wait(10):
            sys.exit("the socket never connected")
        conn = http.client.HTTPConnection("127.0.0.1", port)
        headers = {"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"}

        def post(path, body):
            t = time.perf_counter()
            conn.request("POST", path, json.dumps(body), headers)
            res = conn.getresponse()
            text = res.read()
            if res.status != 202:
                sys.exit(f"{path} answered {res.status}: {text[:300]!r}")
            return time.perf_counter() - t

        post("/api/v1/events", event(0, f"{tag}-warm"))
        figures = {}
        for kind, n, path, make in (
            ("batch", opts.batches, "/api/v1/events/batch",
             lambda k: {"events": [event(k * 500 + i, tag) for i in range(500)]}),
            ("single", opts.singles, "/api/v1/events", lambda k: event(k, f"{tag}-s")),
        ):
            bodies = [make(k) for k in range(n)]
            s0, r0 = cpu_seconds(server.pid), cpu_seconds(redis.pid)
            walls = [post(path, body) for body in bodies]
            time.sleep(0.3)  # the socket's last deliveries count too
            s1, r1 = cpu_seconds(server.pid), cpu_seconds(redis.pid)
            figures[kind] = {"wall_ms": statistics.median(walls) * 1e3,
                             "server_cpu_ms": (s1 - s0) * 1e3 / n, "redis_cpu_ms": (r1 - r0) * 1e3 / n}
        expected = 1 + opts.batches * 500 + opts.singles
        deadline = time.time() + 10
        while receiver.count()[0] < expected and time.time() < deadline:
            time.sleep(0.05)
        got, most = receiver.count()
        if got != expected or most != 1:
            sys.exit(f"{binary}: the socket received {got} of {expected} events (most copies of one: {most})")
        return figures
    finally:
        for proc in (server, redis):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(10)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", action="append", required=True, help="label=path of a server binary")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=20, help="500-event batches per run")
    parser.add_argument("--singles", type=int, default=2000, help="single events per run")
    opts = parser.parse_args()
    bins = [(label, os.path.abspath(path)) for label, path in (b.split("=", 1) for b in opts.bin)]
    results = {label: [] for label, _ in bins}
    for r in range(opts.rounds):
        order = bins if r % 2 == 0 else list(reversed(bins))
        for label, path in order:
            results[label].append(one_run(path, opts, f"r{r}-{label}"))
            print(f"round {r + 1}/{opts.rounds} {label}: {json.dumps(results[label][-1])}", flush=True)
    print(f"\nmedians of {opts.rounds} rounds ({opts.batches} batches of 500, {opts.singles} single events per run):")
    print(f"{'build':<10} {'batch wall ms':>14} {'batch server CPU ms':>20} {'batch redis CPU ms':>19} "
          f"{'single wall ms':>15} {'single server CPU µs':>21} {'single redis CPU µs':>20}")
    for label, _ in bins:
        med = lambda kind, key: statistics.median(run[kind][key] for run in results[label])
        print(f"{label:<10} {med('batch', 'wall_ms'):>14.1f} {med('batch', 'server_cpu_ms'):>20.1f} "
              f"{med('batch', 'redis_cpu_ms'):>19.1f} {med('single', 'wall_ms'):>15.3f} "
              f"{med('single', 'server_cpu_ms') * 1e3:>21.0f} {med('single', 'redis_cpu_ms') * 1e3:>20.0f}")


if __name__ == "__main__":
    main()
