//! `rediss://`: instances on a TLS-only Redis and a TLS Redis Cluster, a certificate the
//! server does not trust, and mutual TLS. The certificates are made by the `openssl` CLI
//! for each test; the Redis servers are real `redis-server`s with TLS ports only.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::redis_server::free_port;

/// A test's own certificate authority, and certificates it signed, in a temp dir.
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    pub fn new() -> Pki {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("fixrx-tls-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("pki dir");
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    /// `<name>.crt` / `<name>.key`: a self-signed CA.
    pub fn ca(&self, name: &str) -> String {
        openssl(&self.dir, &["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
            .args(["-keyout", &format!("{name}.key"), "-out", &format!("{name}.crt"), "-days", "2"])
            .args(["-subj", &format!("/CN=fixrx test {name}")])
            .args(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .run();
        self.path(&format!("{name}.crt"))
    }

    /// `<name>.crt` / `<name>.key`, signed by the CA `ca`, for 127.0.0.1, usable by a
    /// server and a client alike.
    pub fn leaf(&self, ca: &str, name: &str) -> (String, String) {
        std::fs::write(
            self.dir.join(format!("{name}.ext")),
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n",
        )
        .expect("ext file");
        openssl(&self.dir, &["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
            .args(["-keyout", &format!("{name}.key"), "-out", &format!("{name}.csr"), "-subj", "/CN=127.0.0.1"])
            .run();
        openssl(&self.dir, &["x509", "-req", "-in", &format!("{name}.csr"), "-days", "2"])
            .args(["-CA", &format!("{ca}.crt"), "-CAkey", &format!("{ca}.key"), "-CAcreateserial"])
            .args(["-extfile", &format!("{name}.ext"), "-out", &format!("{name}.crt")])
            .run();
        (self.path(&format!("{name}.crt")), self.path(&format!("{name}.key")))
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir).args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    cmd
}

trait Run {
    fn run(&mut self);
}

impl Run for Command {
    fn run(&mut self) {
        let out =
            self.output().unwrap_or_else(|e| panic!("\n*** openssl could not be run ({e}): apt-get install openssl\n"));
        assert!(out.status.success(), "openssl failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// TLS-only `redis-server`s (`--port 0`): one, or six joined as a cluster, each stopped
/// by its own PID when the test ends.
struct TlsRedis {
    ports: Vec<u16>,
    children: Vec<Child>,
    /// What `redis-cli` needs to talk to them: the CA and, for mutual TLS, a client pair.
    cli_tls: Vec<String>,
    /// Each server's certificate, key, CA and `--tls-auth-clients`.
    server_tls: Vec<String>,
    dir: PathBuf,
}

/// `--tls-auth-clients`: whether the servers demand a client certificate.
struct ServerPki<'a> {
    pki: &'a Pki,
    ca: &'a str,
    auth_clients: bool,
}

impl TlsRedis {
    fn single(server: ServerPki) -> TlsRedis {
        let mut redis = TlsRedis::new(&server);
        let port = free_port();
        redis.spawn(port, &[]);
        redis.wait_answers();
        redis
    }

    /// Three primaries, three replicas; TLS on the cluster bus and for replication too.
    fn cluster(server: ServerPki) -> TlsRedis {
        let mut redis = TlsRedis::new(&server);
        for _ in 0..6 {
            let port = cluster_port();
            let conf = format!("nodes-{port}.conf");
            let args = ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000", "--cluster-config-file", &conf];
            let tls = ["--tls-cluster", "yes", "--tls-replication", "yes", "--repl-diskless-sync-delay", "0"];
            redis.spawn(port, &[&args[..], &tls[..]].concat());
        }
        redis.wait_answers();
        let nodes: Vec<String> = redis.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut create = redis.cli_command();
        create.args(["--cluster", "create"]).args(&nodes).args(["--cluster-replicas", "1", "--cluster-yes"]);
        let out = create.output().expect("redis-cli runs");
        assert!(out.status.success(), "cluster create failed: {}", String::from_utf8_lossy(&out.stdout));
        redis.wait_until("every node says cluster_state:ok and every primary has its replica", |r| {
            r.ports.iter().all(|p| r.cli(*p, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
                && r.ports.iter().all(|p| {
                    let info = r.cli(*p, &["INFO", "replication"]);
                    !info.contains("role:master") || info.contains("state=online")
                })
        });
        redis
    }

    fn new(server: &ServerPki) -> TlsRedis {
        let mut cli_tls = vec!["--tls".into(), "--cacert".into(), server.pki.path(&format!("{}.crt", server.ca))];
        if server.auth_clients {
            let (cert, key) = server.pki.leaf(server.ca, "redis-cli");
            cli_tls.extend(["--cert".into(), cert, "--key".into(), key]);
        }
        let (cert, key) = server.pki.leaf(server.ca, "redis-server");
        let auth = if server.auth_clients { "yes" } else { "no" };
        let server_tls = ["--tls-cert-file", &cert, "--tls-key-file", &key, "--tls-ca-cert-file", &cli_tls[2]];
        let server_tls = server_tls.iter().chain(&["--tls-auth-clients", auth]).map(|s| s.to_string()).collect();
        let dir = server.pki.dir.join("redis");
        std::fs::create_dir_all(&dir).expect("redis dir");
        TlsRedis { ports: Vec::new(), children: Vec::new(), cli_tls, server_tls, dir }
    }

    fn spawn(&mut self, port: u16, extra: &[&str]) {
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(&self.server_tls)
            .args(["--save", "", "--appendonly", "no"])
            .args(extra)
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("\n*** redis-server could not be started ({e}): apt-get install redis-server\n")
            });
        self.ports.push(port);
        self.children.push(child);
    }

    fn cli_command(&self) -> Command {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1"]).args(&self.cli_tls).stdin(Stdio::null()).stderr(Stdio::piped());
        cmd
    }

    /// One command over TLS; its output ("" if redis-cli could not run it).
    fn cli(&self, port: u16, args: &[&str]) -> String {
        let out = self.cli_command().args(["-p", &port.to_string()]).args(args).output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
    }

    fn wait_answers(&mut self) {
        for (port, child) in self.ports.iter().zip(&mut self.children) {
            // A server that lost its port to another test exits at once.
            std::thread::sleep(Duration::from_millis(50));
            assert!(matches!(child.try_wait(), Ok(None)), "redis-server on {port} exited (port taken?)");
        }
        self.wait_until("every redis-server answers PING over TLS", |r| {
            r.ports.iter().all(|p| r.cli(*p, &["PING"]).trim() == "PONG")
        });
    }

    fn wait_until(&self, what: &str, ok: impl Fn(&TlsRedis) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ok(self) {
            assert!(Instant::now() < deadline, "not in 30 s: {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}/0", self.ports[0])
    }

    fn urls(&self) -> String {
        self.ports.iter().map(|p| format!("rediss://127.0.0.1:{p}")).collect::<Vec<_>>().join(",")
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A free port whose cluster bus port (+10000) is free too.
fn cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port <= 55_535 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// The binary with these variables must stop at start-up: its stderr.
async fn startup_failure(vars: &[(&str, &str)]) -> String {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fixrx-realtime"))
        .current_dir(std::env::temp_dir())
        .envs([("PORT", "0"), ("HOST", "127.0.0.1"), ("RUST_LOG", "warn")])
        .envs([("JWT_SECRET", JWT_SECRET), ("API_TOKEN", API_TOKEN)])
        .envs(vars.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the binary");
    // Start-up gives Redis 10 s; a refused handshake must not take that long.
    let out = tokio::time::timeout(Duration::from_secs(8), child.wait_with_output())
        .await
        .expect("the server neither started nor stopped within 8 s")
        .expect("the binary ran");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "start-up succeeded: {stderr}");
    stderr
}

/// An event posted to the first instance reaches a socket on the second, and only its user.
async fn delivered_across(nodes: &[TestApp]) {
    let mut user = connect_user(&nodes[1], "tls-u1").await;
    let mut bystander = connect_user(&nodes[1], "tls-u2").await;
    let (status, answer) = nodes[0].post_event(event_body("booking:created", "tls-u1", "tls-v1")).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(user.expect_event("booking:created").await["id"], answer["id"]);
    tokio::join!(user.expect_nothing(), bystander.expect_nothing());
    for node in nodes {
        assert_eq!(node.get("/ready").await.0, 200);
    }
}

#[tokio::test]
async fn instances_on_a_tls_only_redis_share_events_when_its_ca_is_given() {
    let pki = Pki::new();
    pki.ca("ca");
    let redis = TlsRedis::single(ServerPki { pki: &pki, ca: "ca", auth_clients: false });
    let (url, ca) = (redis.url(), pki.path("ca.crt"));
    let vars = [("REDIS_URL", url.as_str()), ("REDIS_TLS_CA_FILE", ca.as_str())];
    let nodes = vec![spawn_node(&vars).await, spawn_node(&vars).await];
    delivered_across(&nodes).await;
}

#[tokio::test]
async fn a_redis_certificate_the_server_does_not_trust_stops_start_up_naming_the_variable() {
    let pki = Pki::new();
    pki.ca("ca");
    let other_ca = pki.ca("other-ca");
    let redis = TlsRedis::single(ServerPki { pki: &pki, ca: "ca", auth_clients: false });
    let url = redis.url();

    let stderr = startup_failure(&[("REDIS_URL", &url), ("REDIS_TLS_CA_FILE", &other_ca)]).await;
    assert!(stderr.contains("REDIS_TLS_CA_FILE:") && stderr.contains("does not verify"), "{stderr}");
    // Without a CA file, only the system's roots: the URL is named, and the file suggested.
    let stderr = startup_failure(&[("REDIS_URL", &url)]).await;
    assert!(stderr.contains("REDIS_URL:") && stderr.contains("REDIS_TLS_CA_FILE"), "{stderr}");
}

#[tokio::test]
async fn a_redis_that_demands_client_certificates_takes_the_configured_pair_and_refuses_none() {
    let pki = Pki::new();
    pki.ca("ca");
    let redis = TlsRedis::single(ServerPki { pki: &pki, ca: "ca", auth_clients: true });
    let (cert, key) = pki.leaf("ca", "fixrx-client");
    let (url, ca) = (redis.url(), pki.path("ca.crt"));
    let trust = [("REDIS_URL", url.as_str()), ("REDIS_TLS_CA_FILE", ca.as_str())];

    let stderr = startup_failure(&trust).await;
    assert!(stderr.contains("REDIS_TLS_CERT_FILE"), "{stderr}");

    let vars: Vec<(&str, &str)> = trust
        .iter()
        .copied()
        .chain([("REDIS_TLS_CERT_FILE", cert.as_str()), ("REDIS_TLS_KEY_FILE", key.as_str())])
        .collect();
    let nodes = vec![spawn_node(&vars).await, spawn_node(&vars).await];
    delivered_across(&nodes).await;
}

#[tokio::test]
async fn instances_on_a_tls_redis_cluster_share_events() {
    let pki = Pki::new();
    pki.ca("ca");
    let cluster = TlsRedis::cluster(ServerPki { pki: &pki, ca: "ca", auth_clients: false });
    let (urls, ca) = (cluster.urls(), pki.path("ca.crt"));
    let vars = [("REDIS_CLUSTER_URLS", urls.as_str()), ("REDIS_TLS_CA_FILE", ca.as_str())];
    let nodes = vec![spawn_node(&vars).await, spawn_node(&vars).await];
    delivered_across(&nodes).await;
}
