#!/usr/bin/env python3
"""Reruns the attacks a hostile stranger or user would try, against one build of the
server, and prints what each did: whether the attacker was closed or refused, whether a
bystander socket kept receiving events, RSS and the size of /metrics before and after.

    cargo build --release --bin fixrx-realtime
    python3 dev/attacks.py                                  # every attack, release build
    python3 dev/attacks.py --bin target/debug/fixrx-realtime --only sid,metrics

Every attack runs on a freshly started server on 127.0.0.1, port 0, with default
settings unless the attack names one (as it was first reported). Loops are bounded in
count and time. Nothing is asserted: the tests do that (tests/api/attack_*.rs); this
prints figures to compare two builds side by side.
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import socket
import subprocess
import threading
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
JWT_SECRET = "attack-secret-0123456789abcdef0123456789"
API_TOKEN = "attack-api-token-0123"
ADMIN_TOKEN = "attack-admin-token-0123456789"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(sub, **claims):
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": sub, "exp": int(time.time()) + 3600, **claims}).encode())
    sig = hmac.new(JWT_SECRET.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(sig)}"


class Server:
    """The binary on a free port, with its log drained."""

    def __init__(self, binary, env):
        full = dict(os.environ, PORT="0", HOST="127.0.0.1", LOG_FORMAT="json", RUST_LOG="warn,fixrx_realtime=info",
                    JWT_SECRET=JWT_SECRET, API_TOKEN=API_TOKEN)
        full.update(env)
        self.proc = subprocess.Popen([binary], env=full, cwd="/tmp", stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.addr = None
        deadline = time.time() + 15
        while time.time() < deadline and self.addr is None:
            line = self.proc.stderr.readline()
            if not line:
                break
            try:
                log = json.loads(line)
            except ValueError:
                continue
            if log.get("message") == "fixrx-realtime listening":
                host, port = log["addr"].rsplit(":", 1)
                self.addr = (host, int(port))
        if self.addr is None:
            raise SystemExit(f"{binary} did not start")
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()
        # /metrics counts its own requests: read it once so every baseline already has them.
        http(self, "GET", "/metrics")

    def url(self, path):
        return f"http://{self.addr[0]}:{self.addr[1]}{path}"

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))

    def metrics_bytes(self):
        status, body = http(self, "GET", "/metrics")
        return len(body) if status == 200 else -1

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def http(server, method, path, body=None, headers=None, timeout=5):
    req = urllib.request.Request(server.url(path), data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return None, b""


def post_event(server, user):
    body = json.dumps({"type": "booking:status_changed", "previousStatus": "pending",
                       "booking": {"id": "b1", "userId": user, "vendorId": "v1", "status": "confirmed"}}).encode()
    return http(server, "POST", "/api/v1/events", body,
                {"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"})[0]


class Ws:
    """A Socket.IO client written by hand over one WebSocket, so an attack controls reads."""

    def __init__(self, server, tok, rcvbuf=None):
        self.sock = socket.create_connection(server.addr, timeout=10)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        key = b64(os.urandom(16)) + "=="
        self.sock.sendall((f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n"
                           f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("closed during the upgrade")
            head += chunk
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError(head.split(b"\r\n")[0].decode())
        self.buf = b""
        self.sock.settimeout(None)
        self.recv_text()  # the Engine.IO open packet
        self.send("40" + json.dumps({"token": tok}))

    def send(self, text):
        data = text.encode()
        mask = os.urandom(4)
        n = len(data)
        head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else
                                bytes([0x80 | 126]) + n.to_bytes(2, "big") if n < 65536 else
                                bytes([0x80 | 127]) + n.to_bytes(8, "big"))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk

    def recv_text(self):
        self._need(2)
        n = self.buf[1] & 0x7F
        start = 2
        if n == 126:
            self._need(4)
            n, start = int.from_bytes(self.buf[2:4], "big"), 4
        elif n == 127:
            self._need(10)
            n, start = int.from_bytes(self.buf[2:10], "big"), 10
        self._need(start + n)
        payload, self.buf = self.buf[start:start + n], self.buf[start + n:]
        return payload.decode(errors="replace")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Bystander:
    """A well-behaved user who answers heartbeats and counts the events posted to it."""

    def __init__(self, server):
        self.server, self.received, self.sent, self.alive = server, 0, 0, True
        self.ws = Ws(server, token("bystander"))
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._post, daemon=True).start()

    def _read(self):
        try:
            while self.alive:
                text = self.ws.recv_text()
                if text == "2":
                    self.ws.send("3")
                elif text.startswith('42["booking:status_changed"'):
                    self.received += 1
        except (OSError, ConnectionError):
            self.alive = False

    def _post(self):
        while self.alive:
            if post_event(self.server, "bystander") == 202:
                self.sent += 1
            time.sleep(0.5)

    def report(self):
        time.sleep(1)
        self.alive = False
        return f"bystander received {self.received} of {self.sent} events"


def settle(server, seconds=3):
    time.sleep(seconds)
    return server.rss_kib()


def idle(binary):
    """40 silent TCP connections with MAX_CONNECTIONS=40 (41: one more for the bystander's
    socket): how long until /health answers?"""
    server = Server(binary, {"MAX_CONNECTIONS": "41"})
    by = Bystander(server)
    rss0, m0 = server.rss_kib(), server.metrics_bytes()
    held = [socket.create_connection(server.addr) for _ in range(40)]
    started, answered = time.time(), None
    while time.time() - started < 75:
        if http(server, "GET", "/health", timeout=2)[0] == 200:
            answered = time.time() - started
            break
        time.sleep(1)
    closed = sum(1 for s in held if _closed(s))
    fate = f"/health answered after {answered:.0f} s" if answered else "/health refused for 75 s"
    print(f"idle: {fate}; {closed} of 40 silent connections closed by the server; {by.report()}; "
          f"RSS {rss0} -> {settle(server)} KiB; /metrics {m0} -> {server.metrics_bytes()} B")
    for s in held:
        s.close()
    server.stop()


def _closed(sock):
    """Whether the server closed this connection: what it sent before closing is read first
    (an end of stream comes after the data), for at most a few seconds."""
    sock.settimeout(0.5)
    deadline = time.time() + 5
    try:
        while time.time() < deadline:
            if sock.recv(1 << 20) == b"":
                return True
    except socket.timeout:
        return False
    except OSError:
        return True
    return False


def sid(binary):
    """1,000 long-polling handshakes from one address, spelled three ways."""
    for spelling in ("", "&s%69d=x", "&sid"):
        server = Server(binary, {})
        by = Bystander(server)
        http(server, "GET", "/socket.io/?EIO=4&transport=polling")
        time.sleep(1)
        rss0, m0 = server.rss_kib(), server.metrics_bytes()
        opened = refused = 0
        for _ in range(1000):
            status, body = http(server, "GET", f"/socket.io/?EIO=4&transport=polling{spelling}")
            if status == 200 and body.startswith(b"0{"):
                opened += 1
            elif status == 429:
                refused += 1
        print(f"handshakes{spelling or ' (plain)'}: {opened} sessions opened, {refused} refused (429); "
              f"{by.report()}; RSS {rss0} -> {settle(server)} KiB; /metrics {m0} -> {server.metrics_bytes()} B")
        server.stop()


def metrics(binary):
    """5,000 requests with made-up methods to the console's API, ADMIN_TOKEN set."""
    server = Server(binary, {"ADMIN_TOKEN": ADMIN_TOKEN})
    by = Bystander(server)
    # One made-up method first, so the baseline holds every series a fixed label set allows.
    _made_up(server, "XWARMUPQ")
    time.sleep(1)
    rss0, m0 = server.rss_kib(), server.metrics_bytes()
    for i in range(5000):
        _made_up(server, f"X{i:05d}Q")
    print(f"metrics: 5,000 made-up methods; {by.report()}; RSS {rss0} -> {settle(server)} KiB; "
          f"/metrics {m0} -> {server.metrics_bytes()} B")
    server.stop()


def _made_up(server, method):
    conn = socket.create_connection(server.addr, timeout=5)
    conn.sendall(f"{method} /admin/api/overview HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    try:
        while conn.recv(4096):
            pass
    except OSError:
        pass
    conn.close()


def slow(binary):
    """12 sockets of one user that stop reading, 25 of its sockets sending large chat messages."""
    server = Server(binary, {})
    by = Bystander(server)
    rss0, m0 = server.rss_kib(), server.metrics_bytes()
    tok = token("mallory")
    stalled = [Ws(server, tok, rcvbuf=4096) for _ in range(12)]
    senders = []
    for _ in range(25):
        try:
            senders.append(Ws(server, tok))
        except (OSError, ConnectionError) as e:
            print(f"  a sender was refused: {e}")
    text = "\u0001" * 4000
    stop = time.time() + 20
    sent, acks, cut = [0], {}, [0]

    def send(ws):
        try:
            while time.time() < stop:
                msg = {"to": {"type": "vendor", "id": "v1"}, "text": text}
                ws.send(f"42{sent[0]}" + json.dumps(["chat:send", msg]))
                sent[0] += 1
                time.sleep(0.01)
        except (OSError, ConnectionError):
            cut[0] += 1

    def drain(ws):
        try:
            while time.time() < stop + 2:
                text = ws.recv_text()
                if text == "2":
                    ws.send("3")
                elif text.startswith("43"):
                    ack = json.loads(text[text.index("["):])[0]
                    key = "accepted" if ack.get("ok") else ack.get("error", "?")
                    acks[key] = acks.get(key, 0) + 1
        except (OSError, ConnectionError, ValueError):
            pass

    threads = [threading.Thread(target=send, args=(w,)) for w in senders]
    threads += [threading.Thread(target=drain, args=(w,), daemon=True) for w in senders]
    for t in threads:
        t.start()
    peak = rss0
    while time.time() < stop:
        peak = max(peak, server.rss_kib())
        time.sleep(0.5)
    stalled_closed = sum(1 for w in stalled if _closed(w.sock))
    print(f"slow readers: {sent[0]} chat messages sent, acks {acks}, {cut[0]} of {len(senders)} senders cut; "
          f"{stalled_closed} of 12 stalled sockets closed; "
          f"RSS {rss0} -> peak {peak} -> {settle(server)} KiB ({(peak - rss0) / 1024:+.0f} MB at peak); "
          f"{by.report()}; /metrics {m0} -> {server.metrics_bytes()} B")
    for w in stalled + senders:
        w.close()
    server.stop()


def devmode(binary):
    """Started with no configuration at all: where does it listen?"""
    env = {k: v for k, v in os.environ.items() if k not in ("HOST", "APP_ENV", "JWT_SECRET", "API_TOKEN")}
    proc = subprocess.Popen([binary], env=dict(env, PORT="0", LOG_FORMAT="json"), cwd="/tmp",
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    addr = "?"
    for line in proc.stderr:
        if '"fixrx-realtime listening"' in line:
            addr = json.loads(line)["addr"]
            break
    proc.terminate()
    proc.wait(10)
    print(f"development mode, no HOST: listening on {addr}")


ATTACKS = {"idle": idle, "sid": sid, "metrics": metrics, "slow": slow, "dev": devmode}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "fixrx-realtime"))
    parser.add_argument("--only", default=",".join(ATTACKS), help="comma-separated: " + ", ".join(ATTACKS))
    args = parser.parse_args()
    for name in args.only.split(","):
        ATTACKS[name.strip()](args.bin)


if __name__ == "__main__":
    main()
