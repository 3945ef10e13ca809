#!/usr/bin/env python3
"""How the Redis history loads a Redis Cluster: which primary does the work, and how much.

    python3 dev/bench/cluster_spread.py --bin target/release/fixrx-realtime \\
        --primaries 3,1 --instances 2 --users 1000 --events 3000 --rounds 3
    python3 dev/bench/cluster_spread.py --bin target/release/fixrx-realtime \\
        --primaries 3 --partitions 1,3,12 --instances 2 --users 1000 --events 20000 --rounds 3

`--partitions` sets REDIS_HISTORY_PARTITIONS (a comma list runs each side by side).

Each round starts, for each `--primaries` and `--instances` count in turn (comma lists are
run side by side, every pair, the order reversed every other round), a fresh Redis Cluster
of that many primaries (`--replicas` each, none by default) and that many servers on it
(`REDIS_CLUSTER_URLS`, development mode, default settings apart from the per-address and
rate limits, which are off since every client comes from 127.0.0.1). Three or more primaries are joined with
`redis-cli --cluster create`, as tests/api/redis_cluster.rs does; redis-cli refuses fewer
than three, so one or two primaries are joined by hand (`CLUSTER ADDSLOTSRANGE`,
`CLUSTER MEET`, `CLUSTER REPLICATE`): still a cluster, so the server runs the same
cluster code path.

`--users` Socket.IO clients (raw Engine.IO v4 over WebSocket, one asyncio loop), user
`u<i>` on instance i mod M with a token from `GET /dev/token?sub=u<i>`. After one warm-up
event per instance, `--events` `payment:completed` events (event i to user u<i mod U>,
vendor v<i mod 50>) are posted one per request over `--http` keep-alive connections
spread over the instances. The run fails unless every event reached its user's socket
exactly once (and no other socket); timings never fail it.

Metered over the window from the first post to the last delivery: CPU (utime + stime from
/proc/<pid>/stat) of every redis-server and every server instance, and `INFO
commandstats` of every node (reset just before the window). Printed per round and as
medians: the busiest primary's share of the primaries' Redis CPU, its CPU per event, the
implied ceiling (1e6 / that: the event rate at which its one core is busy all the time; a
Redis runs commands on one thread), XREAD calls per event per instance, and server CPU per
event. An instance reads the log of every partition its sockets' rooms live in
(src/history/redis_reader.rs: one reader per partition, an XREAD cursor on its log, each
entry checked against its predecessor): here every partition, as users are spread over
the instances, so each copy of an event (one per partition its rooms live in) is read
once per instance; the script reports the entries an XREAD returned on average (events ×
instances / XREAD calls).
"""
import argparse
import asyncio
import base64
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from bench_kit import cpu_seconds, free_port, wait_port, ws_frame

API_TOKEN = "dev-api-token"  # development mode's token (src/config/mod.rs, DEV_API_TOKEN)
HISTORY_KEY = "fixrx:{history}:log"


class Failed(Exception):
    """Lost, duplicated or misrouted events, or a refused request: the run fails."""


def cluster_port():
    """A free port whose cluster bus port (+10000) is free too."""
    while True:
        port = free_port()
        if port <= 55_535:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 10_000))
                    return port
                except OSError:
                    pass


def redis(port, *args):
    out = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=10)
    return out.stdout


def wait_until(what, check, within=30):
    deadline = time.time() + within
    while not check():
        if time.time() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.1)


class Cluster:
    """redis-server processes joined into a cluster; every one stopped by its PID."""

    def __init__(self, primaries, replicas, procs):
        self.dir = tempfile.mkdtemp(prefix="fixrx-spread-")
        self.procs = procs  # shared with the caller's cleanup list
        self.nodes = []  # (port, Popen)
        for _ in range(primaries * (1 + replicas)):
            port = cluster_port()
            proc = subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--cluster-enabled", "yes", "--cluster-node-timeout", "2000", "--repl-diskless-sync-delay", "0",
                 "--cluster-config-file", f"nodes-{port}.conf", "--dir", self.dir],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(proc)
            self.nodes.append((port, proc))
        for port, proc in self.nodes:
            wait_port(port, proc, "redis-server")
        ports = [p for p, _ in self.nodes]
        if primaries >= 3:
            created = subprocess.run(
                ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                 "--cluster-replicas", str(replicas), "--cluster-yes"], capture_output=True, text=True)
            if created.returncode != 0:
                sys.exit(f"cluster create failed: {created.stdout[-2000:]}{created.stderr[-500:]}")
        else:
            self.join_by_hand(ports[:primaries], ports[primaries:], replicas)
        wait_until("cluster_state:ok", lambda: all("cluster_state:ok" in redis(p, "CLUSTER", "INFO") for p in ports))
        self.roles = {}
        wait_until("every replica in sync", self.learn_roles)
        slot = redis(ports[0], "CLUSTER", "KEYSLOT", HISTORY_KEY).strip()
        self.history_primary = next(p for p in self.primaries() if self.serves(p, int(slot)))

    @staticmethod
    def join_by_hand(primaries, replicas, per_primary):
        """redis-cli --cluster create wants three primaries: fewer are joined here."""
        share = 16384 // len(primaries)
        for k, port in enumerate(primaries):
            last = 16383 if k == len(primaries) - 1 else (k + 1) * share - 1
            redis(port, "CLUSTER", "ADDSLOTSRANGE", str(k * share), str(last))
        for port in primaries[1:] + replicas:
            redis(port, "CLUSTER", "MEET", "127.0.0.1", str(primaries[0]))
        everyone = primaries + replicas
        wait_until("every node to know every other", lambda: all(
            len(redis(p, "CLUSTER", "NODES").strip().splitlines()) == len(everyone) for p in everyone))
        for k, port in enumerate(replicas):
            primary_id = redis(primaries[k // per_primary], "CLUSTER", "MYID").strip()
            wait_until("a replica to attach", lambda: redis(port, "CLUSTER", "REPLICATE", primary_id).strip() == "OK")

    def learn_roles(self):
        for port, _ in self.nodes:
            info = redis(port, "INFO", "replication")
            if "role:master" in info:
                self.roles[port] = "primary"
            elif "master_link_status:up" in info:
                self.roles[port] = "replica"
            else:
                return False
        return True

    def primaries(self):
        return [p for p, _ in self.nodes if self.roles[p] == "primary"]

    def serves(self, port, slot):
        for line in redis(port, "CLUSTER", "NODES").splitlines():
            fields = line.split()
            if "myself" in fields[2]:
                for rng in fields[8:]:
                    a, _, b = rng.partition("-")
                    if rng[0] != "[" and int(a) <= slot <= int(b or a):
                        return True
        return False

    def urls(self):
        return ",".join(f"redis://127.0.0.1:{p}" for p, _ in self.nodes)

    def remove_dir(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def commandstats(port):
    """{command: (calls, µs inside the command)} from INFO commandstats (a script's `usec`
    covers the commands it runs, which are counted under their own names too)."""
    stats = {}
    for line in redis(port, "INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line[len("cmdstat_"):].partition(":")
            fields = dict(kv.split("=", 1) for kv in rest.split(","))
            stats[name] = (int(fields["calls"]), int(fields["usec"]))
    return stats


# ---- the Socket.IO clients and the REST posts, on one asyncio loop ----

async def http(stream, method, path, body=None, headers=()):
    reader, writer = stream
    data = json.dumps(body).encode() if body is not None else b""
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(data)}", *headers]
    if body is not None:
        head.append("Content-Type: application/json")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
    status_line = await reader.readline()
    length, chunked = 0, False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if chunked:
        text = b""
        while (size := int((await reader.readline()).strip(), 16)) > 0:
            text += await reader.readexactly(size)
            await reader.readline()
        await reader.readline()
    else:
        text = await reader.readexactly(length)
    return int(status_line.split()[1]), text




class Client:
    """One Socket.IO client over a raw WebSocket (Engine.IO v4), as user `self.user`."""

    def __init__(self, user, port, seen):
        self.user, self.port, self.seen = user, port, seen
        self.connected = asyncio.Event()
        self.errors = []

    async def open(self, token):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        key = base64.b64encode(os.urandom(16)).decode()
        self.writer.write(
            (f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
             f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
             "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise Failed(f"WebSocket refused for {self.user}: {head[:200]!r}")
        self.writer.write(ws_frame("40" + json.dumps({"token": token})))
        self.task = asyncio.create_task(self.run())

    async def frame(self):
        b0, b1 = await self.reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(await self.reader.readexactly(2), "big")
        elif n == 127:
            n = int.from_bytes(await self.reader.readexactly(8), "big")
        payload = await self.reader.readexactly(n)
        if b0 & 0x0F == 0x8:
            raise EOFError
        return payload.decode()

    async def run(self):
        try:
            while True:
                text = await self.frame()
                if text == "2":
                    self.writer.write(ws_frame("3"))
                elif text.startswith("40"):
                    self.connected.set()
                elif text.startswith("44"):
                    self.errors.append(text)
                    self.connected.set()
                elif text.startswith("42"):
                    name, payload = json.loads(text[2:])[:2]
                    if name == "payment:completed":
                        pid = payload["payment"]["id"]
                        if payload["payment"]["userId"] != self.user:
                            self.errors.append(f"{self.user} received {pid} for {payload['payment']['userId']}")
                        self.seen[pid] = self.seen.get(pid, 0) + 1
        except (EOFError, OSError, asyncio.IncompleteReadError):
            pass

    def close(self):
        self.task.cancel()
        self.writer.close()


def event(i, tag, users):
    return {"type": "payment:completed",
            "payment": {"id": f"{tag}-{i}", "userId": f"u{i % users}", "vendorId": f"v{i % 50}", "amount": i}}


async def drive(opts, ports, meter):
    """Connects the clients, warms up, posts the events; `meter()` is called at the
    window's start and end. Returns the window's wall time and the posts' (s)."""
    seen = {}
    auth = (f"Authorization: Bearer {API_TOKEN}",)
    clients = [Client(f"u{i}", ports[i % len(ports)], seen) for i in range(opts.users)]
    posters = []
    # One token connection per handshake slot, so the GETs do not queue on one stream.
    token_pool = [await asyncio.open_connection("127.0.0.1", ports[k % len(ports)]) for k in range(50)]
    free = asyncio.Queue()
    for stream in token_pool:
        free.put_nowait(stream)

    async def connect(client):
        stream = await free.get()
        try:
            status, text = await http(stream, "GET", f"/dev/token?sub={client.user}")
            if status != 200:
                raise Failed(f"/dev/token answered {status}: {text[:200]!r}")
            await client.open(json.loads(text)["token"])
            await asyncio.wait_for(client.connected.wait(), 20)
        finally:
            free.put_nowait(stream)

    try:
        await asyncio.gather(*(connect(c) for c in clients))
        refused = [e for c in clients for e in c.errors]
        if refused:
            raise Failed(f"{len(refused)} sockets refused, first: {refused[0]}")
        posters += [await asyncio.open_connection("127.0.0.1", ports[k % len(ports)]) for k in range(opts.http)]

        async def post(stream, body):
            status, text = await http(stream, "POST", "/api/v1/events", body, auth)
            if status != 202:
                raise Failed(f"POST /api/v1/events answered {status}: {text[:300]!r}")

        # Warm-up: one event through each instance to a user on each instance, so every
        # appender and every reader has settled (on a shard without replica, the first
        # append waits REDIS_REPLICA_WAIT_MS before the shard counts as alone).
        warm = [event(k, "warm", opts.users) for k in range(len(ports))]
        for k, body in enumerate(warm):
            await post(posters[k % len(posters)], body)
        if not await wait_for(seen, [b["payment"]["id"] for b in warm], 30):
            raise Failed("the warm-up events did not all arrive")
        await asyncio.sleep(1.5)

        ids = [f"ev-{i}" for i in range(opts.events)]
        queue = iter(range(opts.events))

        async def poster(stream):
            for i in queue:
                await post(stream, event(i, "ev", opts.users))

        meter("start")
        t0 = time.perf_counter()
        await asyncio.gather(*(poster(s) for s in posters))
        posted = time.perf_counter() - t0
        await wait_for(seen, ids, max(30, opts.events / 100))
        wall = time.perf_counter() - t0
        meter("end")
        await asyncio.sleep(0.5)  # a duplicate arriving late counts too
        lost = [i for i in ids if seen.get(i, 0) == 0]
        dup = [i for i in ids if seen.get(i, 0) > 1]
        misrouted = [e for c in clients for e in c.errors]
        if lost or dup or misrouted:
            raise Failed(f"{len(lost)} lost (first {lost[:3]}), {len(dup)} duplicated (first {dup[:3]}), "
                         f"{len(misrouted)} misrouted (first {misrouted[:1]})")
        return wall, posted
    finally:
        for c in clients:
            if hasattr(c, "task"):
                c.close()
        for _, writer in token_pool + posters:
            writer.close()


async def wait_for(seen, ids, within):
    deadline = time.time() + within
    while any(seen.get(i, 0) == 0 for i in ids):
        if time.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


# ---- one round ----

def one_run(opts, primaries, instances, partitions, procs):
    cluster = Cluster(primaries, opts.replicas, procs)
    servers = []
    try:
        for _ in range(instances):
            port = free_port()
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith(("REDIS_", "JWT_", "API_TOKEN", "APP_ENV", "HISTORY_"))}
            env.update(PORT=str(port), HOST="127.0.0.1", REDIS_CLUSTER_URLS=cluster.urls(), RUST_LOG="warn",
                       SOCKET_RATE_LIMIT="0", API_RATE_LIMIT="0", MAX_CONNECTIONS_PER_IP="0",
                       HANDSHAKES_PER_IP_PER_SEC="0", REDIS_HISTORY_PARTITIONS=str(partitions))
            with open(os.path.join(cluster.dir, f"server-{port}.log"), "wb") as log:
                proc = subprocess.Popen([opts.bin], env=env, cwd="/tmp", stdout=subprocess.DEVNULL, stderr=log)
            procs.append(proc)
            servers.append((port, proc))
        for port, proc in servers:
            wait_port(port, proc, opts.bin)
        marks = {}

        def meter(at):
            if at == "start":
                for port, _ in cluster.nodes:
                    redis(port, "CONFIG", "RESETSTAT")
            marks[at] = ({p: cpu_seconds(proc.pid) for p, proc in cluster.nodes},
                         [cpu_seconds(proc.pid) for _, proc in servers])
            if at == "end":
                marks["stats"] = {p: commandstats(p) for p, _ in cluster.nodes}

        wall, posted = asyncio.run(drive(opts, [p for p, _ in servers], meter))
        for _, proc in servers:
            if proc.poll() is not None:
                raise Failed(f"a server exited with {proc.returncode} during the run")
        return figures(opts, cluster, marks, wall, posted, instances)
    except (Failed, SystemExit):
        for port, _ in servers:
            with open(os.path.join(cluster.dir, f"server-{port}.log"), errors="replace") as log:
                print(f"--- server on {port}, end of its log:\n{log.read()[-2000:]}", file=sys.stderr)
        raise
    finally:
        cluster.remove_dir()


def figures(opts, cluster, marks, wall, posted, instances):
    (r0, s0), (r1, s1) = marks["start"], marks["end"]
    redis_us = {p: (r1[p] - r0[p]) * 1e6 for p in r0}
    primaries = cluster.primaries()
    busiest = max(primaries, key=lambda p: redis_us[p])
    total = sum(redis_us[p] for p in primaries)
    e = opts.events
    stats = marks["stats"]
    calls = lambda cmd, ports: sum(stats[p].get(cmd, (0, 0))[0] for p in ports)
    usec = lambda cmds, port: sum(stats[port].get(cmd, (0, 0))[1] for cmd in cmds)
    everyone = [p for p, _ in cluster.nodes]
    xread = calls("xread", everyone)
    server_us = [(b - a) * 1e6 for a, b in zip(s0, s1)]
    busiest_per_event = redis_us[busiest] / e
    return {
        "busiest_share": redis_us[busiest] / total if total else 0.0,
        "busiest_is_history_primary": busiest == cluster.history_primary,
        "busiest_redis_us_per_event": busiest_per_event,
        "others_redis_us_per_event": sorted(redis_us[p] / e for p in primaries if p != busiest),
        "replicas_redis_us_per_event": sorted(redis_us[p] / e for p in everyone if p not in primaries),
        "ceiling_events_per_s": 1e6 / busiest_per_event if busiest_per_event else float("inf"),
        "xread_per_event_per_instance": xread / e / instances,
        "entries_per_xread": e * instances / xread if xread else 0.0,
        # On primaries only: a replica counts the XADDs it is sent too.
        "xadd_per_event": calls("xadd", primaries) / e,
        "evalsha_per_event": (calls("evalsha", primaries) + calls("eval", primaries)) / e,
        # Time inside commands on the busiest primary: the append script, and the
        # readers' XREADs (on a replica instead when the shard has one).
        "busiest_script_us_per_event": usec(("evalsha", "eval"), busiest) / e,
        "busiest_xread_us_per_event": usec(("xread",), busiest) / e,
        "busiest_calls_per_event": sum(c for c, _ in stats[busiest].values()) / e,
        "others_calls_per_event": sorted(sum(c for c, _ in stats[p].values()) / e for p in primaries if p != busiest),
        "server_us_per_event": [u / e for u in server_us],
        "server_us_per_event_all": sum(server_us) / e,
        "events_per_s": e / wall,
        "post_s": posted,
    }


ROWS = [
    ("busiest primary's share of the primaries' Redis CPU", lambda r: r["busiest_share"] * 100, "{:.1f} %"),
    ("rounds whose busiest primary owns the {history} slot", lambda r: r["busiest_is_history_primary"], "{:.0f}"),
    ("busiest primary: Redis CPU per event (µs)", lambda r: r["busiest_redis_us_per_event"], "{:.1f}"),
    ("  of which inside the append script (µs)", lambda r: r["busiest_script_us_per_event"], "{:.1f}"),
    ("  of which inside XREAD (µs)", lambda r: r["busiest_xread_us_per_event"], "{:.1f}"),
    ("other primaries: Redis CPU per event, most (µs)",
     lambda r: max(r["others_redis_us_per_event"], default=0.0), "{:.1f}"),
    ("replicas: Redis CPU per event, most (µs)", lambda r: max(r["replicas_redis_us_per_event"], default=0.0),
     "{:.1f}"),
    ("ceiling: events/s saturating the busiest core", lambda r: r["ceiling_events_per_s"], "{:,.0f}"),
    ("XREAD calls per event per instance", lambda r: r["xread_per_event_per_instance"], "{:.3f}"),
    ("log entries per XREAD", lambda r: r["entries_per_xread"], "{:.2f}"),
    ("XADD per event (primaries)", lambda r: r["xadd_per_event"], "{:.2f}"),
    ("EVALSHA per event (primaries)", lambda r: r["evalsha_per_event"], "{:.2f}"),
    ("server CPU per event per instance (µs)", lambda r: statistics.mean(r["server_us_per_event"]), "{:.0f}"),
    ("server CPU per event, all instances (µs)", lambda r: r["server_us_per_event_all"], "{:.0f}"),
    ("events/s over the window (posted and delivered)", lambda r: r["events_per_s"], "{:.0f}"),
]


def print_medians(labels, results):
    """One row per figure, one column per cluster: medians over the rounds (the slot
    owner row counts rounds instead)."""
    width = max(len(name) for name, _, _ in ROWS)
    col = max(14, *(len(label) for label in labels))
    print(f"{'':<{width}} " + " ".join(f"{label:>{col}}" for label in labels))
    for name, get, fmt in ROWS:
        values = []
        for label in labels:
            runs = results[label]
            value = sum(map(get, runs)) if "rounds" in name else statistics.median(map(get, runs))
            values.append(fmt.format(value))
        print(f"{name:<{width}} " + " ".join(f"{v:>{col}}" for v in values))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True, help="path of the fixrx-realtime binary")
    parser.add_argument("--primaries", default="3", help="primaries per cluster; a comma list runs each side by side")
    parser.add_argument("--replicas", type=int, default=0, help="replicas per primary")
    parser.add_argument("--instances", default="2", help="server instances; a comma list runs each side by side")
    parser.add_argument("--partitions", default="1",
                        help="REDIS_HISTORY_PARTITIONS; a comma list runs each side by side")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--http", type=int, default=4, help="concurrent HTTP connections posting events")
    opts = parser.parse_args()
    opts.bin = os.path.abspath(opts.bin)
    configs = [(int(n), int(m), int(k)) for n in opts.primaries.split(",") for m in opts.instances.split(",")
               for k in opts.partitions.split(",")]
    labels = [f"{n} primar{'y' if n == 1 else 'ies'}" + (f", {m} inst." if "," in opts.instances else "")
              + (f", {k} part." if "," in opts.partitions else "") for n, m, k in configs]
    results = {label: [] for label in labels}
    procs = []
    try:
        for r in range(opts.rounds):
            order = list(zip(configs, labels))
            for (n, m, k), label in order if r % 2 == 0 else reversed(order):
                try:
                    results[label].append(one_run(opts, n, m, k, procs))
                finally:
                    stop(procs)
                print(f"round {r + 1}/{opts.rounds} {label}: {json.dumps(results[label][-1])}", flush=True)
    except Failed as e:
        sys.exit(f"FAILED: {e}")
    finally:
        stop(procs)
    print(f"\nmedians of {opts.rounds} rounds: instances {opts.instances}, partitions {opts.partitions}, "
          f"{opts.users} users, {opts.events} events, "
          f"{opts.replicas} replica(s) per primary")
    print_medians(labels, results)
    print("ceiling = 1e6 / the busiest primary's Redis CPU µs per event: a Redis runs commands on one thread,\n"
          "so that is the event rate at which its one core is busy all the time; extrapolated from the rate measured.")


def stop(procs):
    """Stops every process this script started, by its PID, servers before the Redis
    they use (the newest first); SIGKILL after 10 s."""
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    procs.clear()


if __name__ == "__main__":
    main()
