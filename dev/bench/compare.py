#!/usr/bin/env python3
"""Runs every benchmark scenario against our server and the Node baseline, back to back,
alternating which goes first, each run on a freshly started server, and prints each
figure's median per server with the ratio Node/ours.

    python3 dev/bench/compare.py                 # full sizes, 3 rounds (release builds)
    python3 dev/bench/compare.py --size tiny --rounds 1 --debug   # a few seconds (CI)
    python3 dev/bench/compare.py --runs connections,chat             # a subset
    python3 dev/bench/compare.py --history-cost --rounds 5           # history on/off, memory and Redis
    python3 dev/bench/compare.py --runs rest-fanout,chat --floor --variants ours \
        --base-binary /tmp/fixrx-base                                 # a change against an older build

Our server runs in variants: `ours` (history on, in memory: the server's default),
`ours-nohist` (HISTORY_ENABLED=false), `ours-redis` and `ours-redis-nohist` (REDIS_URL
pointing at a redis-server started for that run alone, on a free port, and stopped after
it; its CPU is metered too). The `history-*` runs put the four variants side by side;
`--history-cost` is short for `--runs history-rest,history-broadcast,recovery`.
`--base-binary` adds `base`: another build of our server (an older commit's, say), run as
`ours` is, in every run that has `ours`, so a change is measured side by side.

Builds go to $CARGO_TARGET_DIR when it is set (else target/).

Every run's JSON line is appended to --out (default target/bench/results.jsonl). The
command fails if any run lost, duplicated or reordered an event, failed a socket or got
an error: speed is reported, never asserted here.
"""
import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
JWT_SECRET = "bench-secret-0123456789abcdef0123456789"
API_TOKEN = "bench-api-token"

BOTH = ("ours", "node")
# `--floor` adds dev/floor-server (the stack alone: axum, socketioxide on our engine
# settings, jsonwebtoken, doing each scenario's minimum) to these runs.
FLOOR_RUNS = ("connections", "connections-20k", "reconnect-storm", "rest-fanout", "broadcast", "chat")
# Side by side, in this order (reversed every other round): each pair on/off adjacent.
HISTORY_VARIANTS = ("ours", "ours-nohist", "ours-redis", "ours-redis-nohist")
RECOVERY_VARIANTS = ("ours", "ours-redis")

# Our server's variants: extra environment, and whether it gets its own redis-server.
# HISTORY_ENABLED is always set, and REDIS_URL always replaced, so the caller's shell
# cannot change what a variant measures.
VARIANTS = {
    "ours": {"env": {"HISTORY_ENABLED": "true"}, "redis": False},
    "ours-nohist": {"env": {"HISTORY_ENABLED": "false"}, "redis": False},
    "ours-redis": {"env": {"HISTORY_ENABLED": "true"}, "redis": True},
    "ours-redis-nohist": {"env": {"HISTORY_ENABLED": "false"}, "redis": True},
}


def sized(connections, conn_20k, storm, rest, sustained, broadcast, chat, recovery):
    """The runs of one size: name -> bench scenario, its arguments, the servers it runs on,
    and options for the bench itself."""
    return {
        "connections": {"scenario": "connections", "args": connections, "servers": BOTH},
        "connections-20k": {"scenario": "connections", "args": conn_20k, "servers": BOTH},
        "reconnect-storm": {"scenario": "reconnect-storm", "args": storm, "servers": BOTH},
        "rest-fanout": {"scenario": "rest-fanout", "args": rest, "servers": BOTH},
        # Node saturates near 2,400 events/s: the sustained rate is a target for ours alone.
        "sustained": {"scenario": "rest-fanout", "args": sustained, "servers": ("ours",),
                      "bench_opts": ["--http-in-flight", "2048"]},
        "broadcast": {"scenario": "broadcast", "args": broadcast, "servers": BOTH},
        "chat": {"scenario": "chat", "args": chat, "servers": BOTH},
        # The cost of history: the same loads as rest-fanout and broadcast, on our server
        # with history on and off, in memory and with Redis.
        "history-rest": {"scenario": "rest-fanout", "args": rest, "servers": HISTORY_VARIANTS},
        "history-broadcast": {"scenario": "broadcast", "args": broadcast, "servers": HISTORY_VARIANTS},
        "recovery": {"scenario": "recovery", "args": recovery, "servers": RECOVERY_VARIANTS},
    }


SIZES = {
    "tiny": sized(
        connections=["--count", "50", "--hold-secs", "1"],
        conn_20k=["--count", "100", "--hold-secs", "1"],
        storm=["--count", "50", "--hold-secs", "1"],
        rest=["--users", "10", "--rate", "50", "--seconds", "1"],
        sustained=["--users", "10", "--rate", "200", "--seconds", "1"],
        broadcast=["--sockets", "20", "--events", "10"],
        chat=["--pairs", "5", "--rate", "20", "--seconds", "1"],
        recovery=["--missed", "100", "--rounds-inside", "2"],
    ),
    "full": sized(
        connections=["--count", "5000", "--hold-secs", "5"],
        # 20,000 open files per process is this machine's hard limit; a server needs a
        # few for itself, so 19,980 sockets is the most one instance can hold here.
        # 30 s covers a full 25 s heartbeat interval.
        conn_20k=["--count", "19980", "--hold-secs", "30"],
        storm=["--count", "5000", "--hold-secs", "5"],
        rest=["--users", "1000", "--rate", "2000", "--seconds", "10"],
        # 21,000/s so the achieved rate clears 20,000 despite scheduling granularity.
        sustained=["--users", "1000", "--rate", "21000", "--seconds", "10"],
        broadcast=["--sockets", "1000", "--events", "200"],
        chat=["--pairs", "500", "--rate", "1000", "--seconds", "10"],
        recovery=["--missed", "1000", "--rounds-inside", "5"],
    ),
}


def ratio_at_least(x):
    return (f"node/ours >= {x:g}", lambda node, ours: node is not None and ours and node / ours >= x)


def p99_target():
    return ("node/ours >= 20 and < 5 ms",
            lambda node, ours: node is not None and ours and node / ours >= 20 and ours < 5)


def at_most(x):
    return (f"ours <= {x:g}", lambda node, ours: ours is not None and ours <= x)


def at_least(x):
    return (f">= {x:g}", lambda node, ours: ours is not None and ours >= x)


# (run, label, path in the JSON line, target or None)
FIGURES = [
    ("connections", "server CPU per handshake (µs)", "server_cpu_per_handshake_us", ratio_at_least(10)),
    ("connections", "RSS per idle connection, 5k (bytes)", "server_rss_per_connection_bytes", ratio_at_least(1)),
    ("connections", "handshakes/s", "handshakes_per_sec", None),
    ("connections-20k", "RSS per idle connection, 20k (bytes)", "server_rss_per_connection_bytes", ratio_at_least(1)),
    ("connections-20k", "connections held (no drops)", "held", at_least(19980)),
    ("reconnect-storm", "RSS per connection after a storm, 5k (bytes)", "server_rss_per_connection_bytes",
     ratio_at_least(1)),
    ("reconnect-storm", "server CPU per reconnect (µs)", "server_cpu_per_reconnect_us", None),
    ("rest-fanout", "server CPU per REST delivery (µs)", "server_cpu_per_delivery_us", ratio_at_least(10)),
    ("rest-fanout", "REST-to-client p50 (ms)", "latency.p50_ms", None),
    ("rest-fanout", "REST-to-client p99 (ms)", "latency.p99_ms", p99_target()),
    ("sustained", "sustained REST events/s, no loss", "sustained_rate", at_least(20000)),
    ("sustained", "sustained REST p99 (ms)", "latency.p99_ms", None),
    ("broadcast", "server CPU per broadcast delivery (µs)", "server_cpu_per_delivery_us", ratio_at_least(7)),
    ("broadcast", "broadcast p99 (ms)", "latency.p99_ms", None),
    ("chat", "server CPU per chat message (µs)", "server_cpu_per_message_us", ratio_at_least(8)),
    ("chat", "chat relay p99 (ms)", "relay_latency.p99_ms", None),
    # What share of the server's CPU is its own code (the rest is the kernel's).
    ("connections", "user-space share of CPU, handshakes", "server_user_share", at_most(0.40)),
    ("rest-fanout", "user-space share of CPU, REST", "server_user_share", at_most(0.40)),
    ("broadcast", "user-space share of CPU, broadcast", "server_user_share", at_most(0.40)),
    ("chat", "user-space share of CPU, chat", "server_user_share", at_most(0.40)),
]


# The cost of history, shown per variant pair (on, off): (run, label, path).
HISTORY_FIGURES = [
    ("history-rest", "server CPU per REST event delivered (µs)", "server_cpu_per_delivery_us"),
    ("history-rest", "  server + redis-server CPU (µs)", "server_plus_aux_cpu_per_delivery_us"),
    ("history-rest", "REST-to-client p50 (ms)", "latency.p50_ms"),
    ("history-rest", "REST-to-client p99 (ms)", "latency.p99_ms"),
    ("history-rest", "server RSS after the run (MiB)", "server_rss_after_mib"),
    ("history-broadcast", "server CPU per broadcast delivery (µs)", "server_cpu_per_delivery_us"),
    ("history-broadcast", "  server + redis-server CPU (µs)", "server_plus_aux_cpu_per_delivery_us"),
    ("history-broadcast", "broadcast p99 (ms)", "latency.p99_ms"),
    ("history-broadcast", "server RSS after the run (MiB)", "server_rss_after_mib"),
]
HISTORY_TARGET = ("history-rest", "server_cpu_per_delivery_us", 1.15)

# (label, path, how runs combine: median of medians, or the worst)
RECOVERY_FIGURES = [
    ("recovery time, median (ms)", "recovery_ms_median", statistics.median),
    ("recovery time, worst round (ms)", "recovery_ms_max", max),
    ("CONNECT ack after (ms)", "connect_ack_ms_median", statistics.median),
    ("first replayed event after (ms)", "first_event_ms_median", statistics.median),
    ("server CPU per replayed event (µs)", "server_cpu_per_replayed_event_us", statistics.median),
    ("redis-server CPU per replayed event (µs)", "aux_cpu_per_replayed_event_us", statistics.median),
    ("posting the missed events (ms)", "post_ms_median", statistics.median),
]
RECOVERY_TARGET_MS = 100


def derive(result):
    """Figures computed from a run's JSON line."""
    delivered = result.get("delivered")
    if delivered and result.get("aux_cpu_us") is not None:
        result["server_plus_aux_cpu_per_delivery_us"] = (result["server_cpu_us"] + result["aux_cpu_us"]) / delivered
    if result.get("server_rss_after_bytes") is not None:
        result["server_rss_after_mib"] = result["server_rss_after_bytes"] / 2**20
    if result["scenario"] in ("connections", "reconnect-storm"):
        dropped = result.get("dropped_during_hold") or 0
        result["held"] = (get(result, "sockets.opened") or 0) - dropped
    if result["run"] == "sustained":
        clean = not problems(result) and not get(result, "rest.skipped_generator_saturated")
        result["sustained_rate"] = get(result, "rest.achieved_rate") if clean else 0


def get(obj, path):
    for part in path.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def start_ours(binary, workers, extra_env):
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "WORKER_THREADS")}
    if workers is not None:
        env["WORKER_THREADS"] = str(workers)
    env.update(PORT="0", HOST="127.0.0.1", LOG_FORMAT="json", RUST_LOG="info",
               JWT_SECRET=JWT_SECRET, API_TOKEN=API_TOKEN, SOCKET_RATE_LIMIT="0", API_RATE_LIMIT="0",
               MAX_CONNECTIONS_PER_IP="0", HANDSHAKES_PER_IP_PER_SEC="0", MAX_CONNECTIONS="0", **extra_env)
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, cwd="/tmp")
    for line in proc.stderr:
        try:
            log = json.loads(line)
        except ValueError:
            continue
        if log.get("message") == "fixrx-realtime listening":
            drain(proc.stderr)
            return proc, "http://" + log["addr"]
    raise RuntimeError("our server did not start")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis():
    """A redis-server of our own for one run: no persistence, loopback only, a free port."""
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode} (port {port} taken?)")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc, port
        except OSError:
            pass
        time.sleep(0.05)
    stop(proc)
    raise RuntimeError("redis-server did not answer PING within 10 s")


def start_node(node_dir):
    env = dict(os.environ, PORT="0", HOST="127.0.0.1", JWT_SECRET=JWT_SECRET, API_TOKEN=API_TOKEN)
    proc = subprocess.Popen(["node", os.path.join(node_dir, "server.js")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        match = re.match(r"node-baseline listening on (\S+)", line.strip())
        if match:
            drain(proc.stdout)
            return proc, "http://" + match.group(1)
    raise RuntimeError("the Node baseline did not start")


def drain(stream):
    """Keeps reading a server's output in the background so its pipe never fills."""
    import threading
    threading.Thread(target=lambda: [None for _ in stream], daemon=True).start()


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run(bench, targets, variant, name, spec, workers):
    redis, aux = None, []
    if variant == "node":
        proc, url = start_node(targets["node"])
    elif variant == "floor":
        # The product's allocator setting (one malloc arena, set in its main), so the
        # memory figures differ by what each server keeps, not by glibc's arenas.
        env = {"MALLOC_ARENA_MAX": "1"}
        proc, url = start_ours(targets["floor"], workers, env)
    else:
        env = dict(VARIANTS["ours" if variant == "base" else variant]["env"])
        if VARIANTS.get(variant, {}).get("redis"):
            redis, port = start_redis()
            env["REDIS_URL"] = f"redis://127.0.0.1:{port}"
            aux = ["--aux-pid", str(redis.pid)]
        try:
            proc, url = start_ours(targets["base" if variant == "base" else "ours"], workers, env)
        except BaseException:
            if redis:
                stop(redis)
            raise
    try:
        cmd = [bench, "--server-pid", str(proc.pid), "--url", url, "--jwt-secret", JWT_SECRET,
               "--api-token", API_TOKEN, *aux, *spec.get("bench_opts", []), spec["scenario"], *spec["args"]]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if out.returncode != 0:
            raise RuntimeError(f"bench {name} against {variant} failed: {out.stderr.strip()}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["server_name"] = variant
        result["run"] = name
        if variant != "node":
            result["server_worker_threads"] = workers
            result["server_build"] = os.path.basename(targets["ours"])
            result["server_env"] = {k: v for k, v in env.items() if k != "REDIS_URL"}
            result["server_redis"] = bool(redis)
        if variant in ("floor", "base"):
            result["server_build"] = os.path.basename(targets[variant])
        return result
    finally:
        stop(proc)
        if redis:
            stop(redis)


def problems(result):
    """Anything that means an event or a socket was lost."""
    found = []
    for path in ["lost", "duplicates", "relays_lost", "relay_duplicates", "acks_missing", "ack_errors",
                 "sockets.failed", "sockets.users.failed", "sockets.vendors.failed", "dropped_sockets",
                 "dropped_during_hold", "rest.rejected", "rest.errors",
                 "out_of_order", "after_recovery", "unexpected", "not_recovered"]:
        value = get(result, path)
        if value:
            found.append(f"{path}={value}")
    return found


def medians_of(results, name, path, variants, combine=statistics.median):
    """The median (or another combination) of `path` over the runs of `name`, per variant."""
    found = {}
    for who in variants:
        values = [get(r, path) for r in results if r["run"] == name and r["server_name"] == who]
        values = [v for v in values if isinstance(v, (int, float))]
        if values:
            found[who] = combine(values)
    return found


def num(value, width=12):
    return f"{value:{width}.3f}" if value is not None else f"{'-':>{width}}"


def quotient(a, b, width=8):
    return f"{a / b:{width}.2f}" if a is not None and b else f"{'-':>{width}}"


def print_node_table(results):
    if not any(r["run"] in {name for name, *_ in FIGURES} for r in results):
        return
    print(f"\n{'figure':42} {'node':>12} {'ours':>12} {'node/ours':>10}  target")
    for name, label, path, target in FIGURES:
        medians = medians_of(results, name, path, BOTH)
        if "ours" not in medians:
            continue
        node, ours = medians.get("node"), medians["ours"]
        verdict = ""
        if target:
            text, met = target
            verdict = f"{text}: {'met' if met(node, ours) else 'NOT met'}"
        print(f"{label:42} {num(node)} {num(ours)} {quotient(node, ours, 10)}  {verdict}")


def print_floor_table(results):
    if not any(r["server_name"] == "floor" for r in results):
        return
    print(f"\n{'figure (the stack alone: floor-server)':42} {'floor':>12} {'ours':>12} {'ours/floor':>10}")
    for name, label, path, _ in FIGURES:
        medians = medians_of(results, name, path, ("ours", "floor"))
        if "floor" in medians and "ours" in medians:
            print(f"{label:42} {num(medians['floor'])} {num(medians['ours'])} "
                  f"{quotient(medians['ours'], medians['floor'], 10)}")


def print_base_table(results):
    if not any(r["server_name"] == "base" for r in results):
        return
    print(f"\n{'figure (base: --base-binary)':42} {'base':>10} {'ours':>10} {'floor':>10} {'ours/base':>9}"
          f" {'paired':>7} {'base/floor':>10} {'ours/floor':>10}")
    for name, label, path, _ in FIGURES:
        m = medians_of(results, name, path, ("base", "ours", "floor"))
        if "base" not in m or "ours" not in m:
            continue
        base, ours, floor = m["base"], m["ours"], m.get("floor")
        print(f"{label:42} {num(base, 10)} {num(ours, 10)} {num(floor, 10)} {quotient(ours, base, 9)}"
              f" {num(paired(results, name, path, 'ours', 'base'), 7)} {quotient(base, floor, 10)}"
              f" {quotient(ours, floor, 10)}")
    print("(paired: median of each round's ours/base ratio)")


def paired(results, name, path, on, off):
    """The median over rounds of on/off, each ratio from the two runs of one round (made
    side by side, so a change in the machine's load between rounds cancels out)."""
    ratios = []
    for round_no in sorted({r["round"] for r in results if r["run"] == name}):
        pair = {r["server_name"]: get(r, path) for r in results if r["run"] == name and r["round"] == round_no}
        a, b = pair.get(on), pair.get(off)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
            ratios.append(a / b)
    return statistics.median(ratios) if ratios else None


def print_history_table(results):
    if not any(r["run"].startswith("history-") for r in results):
        return
    print(f"\n{'cost of history (ours, medians)':42} {'mem on':>10} {'mem off':>10} {'on/off':>7} {'paired':>7}"
          f" {'redis on':>10} {'redis off':>10} {'on/off':>7} {'paired':>7}")
    for name, label, path in HISTORY_FIGURES:
        m = medians_of(results, name, path, HISTORY_VARIANTS)
        if not m:
            continue
        row = [m.get(v) for v in HISTORY_VARIANTS]
        pm = paired(results, name, path, "ours", "ours-nohist")
        pr = paired(results, name, path, "ours-redis", "ours-redis-nohist")
        print(f"{label:42} {num(row[0], 10)} {num(row[1], 10)} {quotient(row[0], row[1], 7)} {num(pm, 7)}"
              f" {num(row[2], 10)} {num(row[3], 10)} {quotient(row[2], row[3], 7)} {num(pr, 7)}")
    print("(on/off: ratio of the medians; paired: median of each round's on/off ratio)")
    name, path, limit = HISTORY_TARGET
    m = medians_of(results, name, path, ("ours", "ours-nohist"))
    pm = paired(results, name, path, "ours", "ours-nohist")
    if "ours" in m and m.get("ours-nohist") and pm is not None:
        r = m["ours"] / m["ours-nohist"]
        worst = max(r, pm)
        print(f"target: history costs at most {limit - 1:.0%} more CPU per REST event in memory: "
              f"{r - 1:+.1%} (medians), {pm - 1:+.1%} (paired), {'met' if worst <= limit else 'NOT met'}")


def print_recovery_table(results):
    if not any(r["run"] == "recovery" for r in results):
        return
    missed = {get(r, "params.missed") for r in results if r["run"] == "recovery"}
    print(f"\n{'recovery of ' + '/'.join(map(str, sorted(missed))) + ' missed events':42} {'memory':>12} {'redis':>12}")
    for label, path, combine in RECOVERY_FIGURES:
        m = medians_of(results, "recovery", path, RECOVERY_VARIANTS, combine)
        if m:
            print(f"{label:42} {num(m.get('ours'))} {num(m.get('ours-redis'))}")
    m = medians_of(results, "recovery", "recovery_ms_median", RECOVERY_VARIANTS)
    for who, value in m.items():
        print(f"target: recovery within {RECOVERY_TARGET_MS} ms ({who}, median): "
              f"{'met' if value <= RECOVERY_TARGET_MS else 'NOT met'}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", default=None,
                        help="comma-separated subset of: " + ", ".join(SIZES["full"]) + " (default: all)")
    parser.add_argument("--history-cost", action="store_true",
                        help="short for --runs history-rest,history-broadcast,recovery: our server with "
                             "history on and off, in memory and with Redis, side by side")
    parser.add_argument("--variants", default=None,
                        help="comma-separated servers to run, of: " + ", ".join([*VARIANTS, "node"]) +
                             " (default: every one a run names)")
    parser.add_argument("--ours-workers", type=int, default=None,
                        help="WORKER_THREADS for our server (default: unset, the server's own default, "
                             "as a user runs it; 0: one per core)")
    parser.add_argument("--build", choices=("user", "workspace"), default="user",
                        help="how our server is built: `user` as the Dockerfile builds it (the server "
                             "alone), or `workspace` (cargo build --workspace, every member's features)")
    parser.add_argument("--floor", action="store_true",
                        help="also run dev/floor-server, the stack alone, on " + ", ".join(FLOOR_RUNS) +
                             ": what the same work costs without our code")
    parser.add_argument("--base-binary", default=None, metavar="PATH",
                        help="also run this build of our server (variant `base`, history on in memory, as "
                             "`ours`) in every run that has `ours`: a change measured side by side")
    parser.add_argument("--debug", action="store_true", help="use debug builds (CI smoke runs)")
    parser.add_argument("--out", default=os.path.join(ROOT, "target", "bench", "results.jsonl"))
    opts = parser.parse_args()
    if opts.history_cost and opts.runs:
        parser.error("give --history-cost or --runs, not both")
    runs = ("history-rest,history-broadcast,recovery" if opts.history_cost
            else opts.runs or ",".join(SIZES["full"])).split(",")
    wanted = set(opts.variants.split(",")) if opts.variants else None
    for v in wanted or ():
        if v not in VARIANTS and v != "node":
            parser.error(f"unknown variant `{v}`")
    specs = []
    for name in runs:
        if name not in SIZES[opts.size]:
            parser.error(f"unknown run `{name}`")
        spec = dict(SIZES[opts.size][name])
        servers = spec["servers"] + (("floor",) if opts.floor and name in FLOOR_RUNS else ())
        servers = tuple(v for v in servers if wanted is None or v in wanted or v == "floor")
        # Last, so that `ours` and `base` swap the first and the last place every round
        # (whichever runs first in a round tends to measure differently).
        if opts.base_binary and "ours" in servers:
            servers = servers + ("base",)
        spec["servers"] = servers
        specs.append((name, spec))

    profile = "debug" if opts.debug else "release"
    release = [] if opts.debug else ["--release"]
    # The server is built on its own (as the Dockerfile does) or with the whole workspace,
    # and copied aside before the bench is built, so no other member's features reach it.
    server_build = (["cargo", "build", "--locked", "--bin", "fixrx-realtime"] if opts.build == "user"
                    else ["cargo", "build", "--workspace"])
    subprocess.run(server_build + release, cwd=ROOT, check=True)
    target_dir = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    os.makedirs(os.path.join(ROOT, "target", "bench"), exist_ok=True)
    server_bin = os.path.join(ROOT, "target", "bench", f"fixrx-realtime-{opts.build}-{profile}")
    import shutil
    shutil.copy2(os.path.join(target_dir, profile, "fixrx-realtime"), server_bin)
    subprocess.run(["cargo", "build", "-p", "bench"] + release, cwd=ROOT, check=True)
    if opts.floor:
        subprocess.run(["cargo", "build", "-p", "floor-server"] + release, cwd=ROOT, check=True)
    node_dir = os.path.join(ROOT, "dev", "bench", "node-baseline")
    if any("node" in spec["servers"] for _, spec in specs):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=node_dir, check=True)
    bench = os.path.join(target_dir, profile, "bench")
    targets = {"ours": server_bin, "node": node_dir, "floor": os.path.join(target_dir, profile, "floor-server"),
               "base": opts.base_binary and os.path.abspath(opts.base_binary)}
    os.makedirs(os.path.dirname(opts.out), exist_ok=True)

    results, failures = [], []
    started = time.monotonic()
    with open(opts.out, "a") as out:
        for name, spec in specs:
            for round_no in range(opts.rounds):
                # Alternate which variant goes first; pairs stay adjacent.
                order = list(spec["servers"]) if round_no % 2 == 0 else list(reversed(spec["servers"]))
                for variant in order:
                    result = run(bench, targets, variant, name, spec, opts.ours_workers)
                    result["round"] = round_no
                    derive(result)
                    out.write(json.dumps(result) + "\n")
                    results.append(result)
                    bad = problems(result)
                    if bad:
                        failures.append(f"{name} on {variant} round {round_no}: {', '.join(bad)}")
                    print(f"{name:17} round {round_no} {variant:17} done", file=sys.stderr)

    print_node_table(results)
    print_floor_table(results)
    print_base_table(results)
    print_history_table(results)
    print_recovery_table(results)
    workers = "unset (the default)" if opts.ours_workers is None else opts.ours_workers
    print(f"\n{len(results)} runs ({opts.size}, {opts.rounds} rounds, medians; ours built `{opts.build}`, "
          f"WORKER_THREADS={workers}) in {time.monotonic() - started:.0f} s; JSON lines in {opts.out}")
    if failures:
        print("\nLOSS OR FAILURES:\n  " + "\n  ".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
