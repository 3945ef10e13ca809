#!/usr/bin/env python3
"""Runs every benchmark scenario against our server and the Node baseline, back to back,
alternating which goes first, each run on a freshly started server, and prints each
figure's median per server with the ratio Node/ours.

    python3 dev/bench/compare.py                 # full sizes, 3 rounds (release builds)
    python3 dev/bench/compare.py --size tiny --rounds 1 --debug   # a few seconds (CI)

Every run's JSON line is appended to --out (default target/bench/results.jsonl). The
command fails if any run lost an event, failed a socket or got an error: speed is
reported, never asserted here.
"""
import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
JWT_SECRET = "bench-secret-0123456789abcdef0123456789"
API_TOKEN = "bench-api-token"

SIZES = {
    "tiny": {
        "connections": ["--count", "50", "--hold-secs", "1"],
        "rest-fanout": ["--users", "10", "--rate", "50", "--seconds", "1"],
        "broadcast": ["--sockets", "20", "--events", "10"],
        "chat": ["--pairs", "5", "--rate", "20", "--seconds", "1"],
    },
    "full": {
        "connections": ["--count", "5000", "--hold-secs", "5"],
        "rest-fanout": ["--users", "1000", "--rate", "2000", "--seconds", "10"],
        "broadcast": ["--sockets", "1000", "--events", "200"],
        "chat": ["--pairs", "500", "--rate", "1000", "--seconds", "10"],
    },
}

# (scenario, label, path in the JSON line, lower is better)
FIGURES = [
    ("connections", "server CPU per handshake (µs)", "server_cpu_per_handshake_us", True),
    ("connections", "RSS per idle connection (bytes)", "server_rss_per_connection_bytes", True),
    ("connections", "handshakes/s", "handshakes_per_sec", False),
    ("rest-fanout", "server CPU per REST delivery (µs)", "server_cpu_per_delivery_us", True),
    ("rest-fanout", "REST-to-client p50 (ms)", "latency.p50_ms", True),
    ("rest-fanout", "REST-to-client p99 (ms)", "latency.p99_ms", True),
    ("broadcast", "server CPU per broadcast delivery (µs)", "server_cpu_per_delivery_us", True),
    ("broadcast", "broadcast p99 (ms)", "latency.p99_ms", True),
    ("chat", "server CPU per chat message (µs)", "server_cpu_per_message_us", True),
    ("chat", "chat relay p99 (ms)", "relay_latency.p99_ms", True),
]


def get(obj, path):
    for part in path.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def start_ours(binary):
    env = dict(os.environ, PORT="0", HOST="127.0.0.1", LOG_FORMAT="json", RUST_LOG="info",
               JWT_SECRET=JWT_SECRET, API_TOKEN=API_TOKEN, SOCKET_RATE_LIMIT="0", API_RATE_LIMIT="0",
               MAX_CONNECTIONS_PER_IP="0", HANDSHAKES_PER_IP_PER_SEC="0", MAX_CONNECTIONS="0")
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


def run(bench, server, scenario, args):
    starter = start_ours if server["name"] == "ours" else start_node
    proc, url = starter(server["target"])
    try:
        cmd = [bench, "--server-pid", str(proc.pid), "--url", url, "--jwt-secret", JWT_SECRET,
               "--api-token", API_TOKEN, scenario, *args]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise RuntimeError(f"bench {scenario} against {server['name']} failed: {out.stderr.strip()}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["server_name"] = server["name"]
        return result
    finally:
        stop(proc)


def problems(result):
    """Anything that means an event or a socket was lost."""
    found = []
    for path in ["lost", "duplicates", "relays_lost", "relay_duplicates", "acks_missing", "ack_errors",
                 "sockets.failed", "sockets.users.failed", "sockets.vendors.failed", "dropped_sockets",
                 "dropped_during_hold", "rest.rejected", "rest.errors"]:
        value = get(result, path)
        if value:
            found.append(f"{path}={value}")
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scenarios", default="connections,rest-fanout,broadcast,chat")
    parser.add_argument("--debug", action="store_true", help="use debug builds (CI smoke runs)")
    parser.add_argument("--out", default=os.path.join(ROOT, "target", "bench", "results.jsonl"))
    opts = parser.parse_args()

    profile = "debug" if opts.debug else "release"
    build = ["cargo", "build", "-p", "fixrx-realtime", "-p", "bench"] + ([] if opts.debug else ["--release"])
    subprocess.run(build, cwd=ROOT, check=True)
    node_dir = os.path.join(ROOT, "dev", "bench", "node-baseline")
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=node_dir, check=True)
    bench = os.path.join(ROOT, "target", profile, "bench")
    servers = [{"name": "ours", "target": os.path.join(ROOT, "target", profile, "fixrx-realtime")},
               {"name": "node", "target": node_dir}]
    os.makedirs(os.path.dirname(opts.out), exist_ok=True)

    results, failures = [], []
    with open(opts.out, "a") as out:
        for scenario in opts.scenarios.split(","):
            for round_no in range(opts.rounds):
                order = servers if round_no % 2 == 0 else list(reversed(servers))
                for server in order:
                    result = run(bench, server, scenario, SIZES[opts.size][scenario])
                    result["round"] = round_no
                    out.write(json.dumps(result) + "\n")
                    results.append(result)
                    bad = problems(result)
                    if bad:
                        failures.append(f"{scenario} on {server['name']} round {round_no}: {', '.join(bad)}")
                    print(f"{scenario:12} round {round_no} {server['name']:4} done", file=sys.stderr)

    print(f"\n{'figure':42} {'node':>12} {'ours':>12} {'node/ours':>10}")
    for scenario, label, path, lower_better in FIGURES:
        medians = {}
        for name in ("node", "ours"):
            values = [get(r, path) for r in results if r["scenario"] == scenario and r["server_name"] == name]
            values = [v for v in values if isinstance(v, (int, float))]
            if values:
                medians[name] = statistics.median(values)
        if len(medians) < 2:
            continue
        ratio = medians["node"] / medians["ours"] if medians["ours"] else float("inf")
        print(f"{label:42} {medians['node']:12.3f} {medians['ours']:12.3f} {ratio:10.2f}")
    print(f"\n{len(results)} runs ({opts.size}, {opts.rounds} rounds, medians); JSON lines in {opts.out}")
    if failures:
        print("\nLOSS OR FAILURES:\n  " + "\n  ".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
