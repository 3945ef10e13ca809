//! A real Redis Cluster for one test: six `redis-server` processes (three primaries,
//! three replicas) on free ports, joined with `redis-cli --cluster create`, each stopped
//! by its own PID when the test ends.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis_server::{free_port, ping};

pub struct RedisCluster {
    pub ports: Vec<u16>,
    children: Vec<Option<Child>>,
    dir: PathBuf,
}

/// A port whose cluster bus port (+10000) is free too.
fn cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port <= 55_535 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        RedisCluster::start_with(&[])
    }

    /// With `extra` arguments for every node (say `--enable-debug-command yes`).
    pub fn start_with(extra: &[&str]) -> RedisCluster {
        let dir = std::env::temp_dir().join(format!("fixrx-cluster-{}-{}", std::process::id(), cluster_port()));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let mut cluster = RedisCluster { ports: Vec::new(), children: Vec::new(), dir };
        for _ in 0..6 {
            let port = cluster_port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
                // Replicas in sync at once (no 5 s wait for more replicas), and always
                // eligible to take over: the failover is what the tests are about.
                .args(["--repl-diskless-sync-delay", "0", "--cluster-replica-validity-factor", "0"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .args(extra)
                .arg("--dir")
                .arg(&cluster.dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("\n*** redis-server could not be started ({e}): apt-get install redis-server\n")
                });
            cluster.ports.push(port);
            cluster.children.push(Some(child));
        }
        for &port in &cluster.ports {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !ping(port) {
                assert!(Instant::now() < deadline, "redis-server on {port} did not answer");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let nodes: Vec<String> = cluster.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap_or_else(|e| panic!("\n*** redis-cli could not be run ({e}): apt-get install redis-tools\n"));
        assert!(created.status.success(), "cluster create failed: {}", String::from_utf8_lossy(&created.stdout));
        cluster.wait_ok(Duration::from_secs(20));
        cluster.wait_replicas_in_sync(Duration::from_secs(20));
        cluster
    }

    /// Waits until every primary's writes reach its replica: a write on each primary,
    /// then `WAIT 1` on the same connection (a replica that never synced cannot take over).
    fn wait_replicas_in_sync(&self, within: Duration) {
        let deadline = Instant::now() + within;
        for &port in &self.ports {
            if !command(port, "INFO replication").contains("role:master") {
                continue;
            }
            loop {
                if replicated_write(port) {
                    break;
                }
                assert!(Instant::now() < deadline, "the replica of the primary on {port} does not take writes");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Seed URLs for `REDIS_CLUSTER_URLS`.
    pub fn urls(&self) -> String {
        self.ports.iter().map(|p| format!("redis://127.0.0.1:{p}")).collect::<Vec<_>>().join(",")
    }

    /// Waits until every live node says `cluster_state:ok`.
    pub fn wait_ok(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let live: Vec<u16> =
                self.ports.iter().zip(&self.children).filter(|(_, c)| c.is_some()).map(|(p, _)| *p).collect();
            if live.iter().all(|p| command(*p, "CLUSTER INFO").contains("cluster_state:ok")) {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster did not reach cluster_state:ok");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The port of the primary that serves the slot of `key` right now.
    pub fn primary_of(&self, key: &str) -> u16 {
        let any = self.ports.iter().zip(&self.children).find(|(_, c)| c.is_some()).map(|(p, _)| *p).expect("a node");
        let slot: u16 =
            command(any, &format!("CLUSTER KEYSLOT {key}")).trim_start_matches(':').trim().parse().expect("slot");
        for line in command(any, "CLUSTER NODES").lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
            });
            if serves {
                let addr = fields[1].split('@').next().unwrap_or_default();
                return addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
            }
        }
        panic!("no primary serves slot {slot} of {key}");
    }

    /// The port of a replica of the primary on `primary`.
    pub fn replica_of(&self, primary: u16) -> u16 {
        let info = command(primary, "INFO replication");
        let slave = info.lines().find(|l| l.starts_with("slave0:")).expect("the primary has a replica");
        let port = slave.split(',').find_map(|f| f.strip_prefix("port=")).expect("its port");
        port.trim().parse().expect("a port")
    }

    /// Kills one node (SIGKILL: a crash).
    pub fn kill(&mut self, port: u16) {
        let i = self.ports.iter().position(|p| *p == port).expect("one of ours");
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().filter_map(Option::take) {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One inline command; the whole reply as text (bulk headers left in).
pub fn command(port: u16, line: &str) -> String {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(300)));
    if stream.write_all(format!("{line}\r\n").as_bytes()).is_err() {
        return String::new();
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if complete(&out) {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A whole RESP reply: a one-line reply, or a bulk string with all its declared bytes.
fn complete(out: &[u8]) -> bool {
    let Some(head) = out.windows(2).position(|w| w == b"\r\n") else { return false };
    if out.first() != Some(&b'$') {
        return true;
    }
    let declared = std::str::from_utf8(&out[1..head]).ok().and_then(|s| s.parse::<usize>().ok()).unwrap_or(0);
    out.len() >= head + 2 + declared + 2
}

/// Writes a key this primary owns and asks for one replica's acknowledgement, on one
/// connection: true once the replica has it.
fn replicated_write(port: u16) -> bool {
    for i in 0..1000 {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
        let key = format!("{{probe{i}}}");
        let read = |stream: &mut TcpStream, line: &str| -> String {
            let _ = stream.write_all(format!("{line}\r\n").as_bytes());
            let mut buf = [0u8; 256];
            let n = stream.read(&mut buf).unwrap_or(0);
            String::from_utf8_lossy(&buf[..n]).into_owned()
        };
        let set = read(&mut stream, &format!("SET {key} 1"));
        if set.starts_with("-MOVED") {
            continue;
        }
        return read(&mut stream, "WAIT 1 2000").trim() == ":1";
    }
    false
}
