//! A real `redis-server` on a free port, owned by one test. Scale-out tests never
//! skip: without `redis-server` on PATH they fail, saying how to install it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        // The port was free a moment ago; another test's server may take it first, and
        // then ours exits while the PING is answered by theirs: try another port.
        for _ in 0..5 {
            let mut server = RedisServer { port: free_port(), child: None };
            server.restart();
            // A server that lost the port exits within milliseconds of starting.
            std::thread::sleep(Duration::from_millis(50));
            if server.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None))) {
                return server;
            }
        }
        panic!("redis-server could not keep a port of its own in 5 tries");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (a crash, not a clean shutdown).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "\n\n*** redis-server could not be started ({e}).\n*** The scale-out tests need it: \
                     apt-get install redis-server (Debian) — .ci/run installs it.\n\n"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ping(self.port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not answer PING in 10 s", self.port);
    }
}

impl RedisServer {
    /// Sends one inline command (e.g. `CONFIG SET maxmemory-policy allkeys-lru`) and
    /// returns the first line of the reply.
    pub fn command(&self, line: &str) -> String {
        RedisServer::command_on(self.port, line)
    }

    /// [`RedisServer::command`] by port, for a blocking task that cannot borrow the server.
    pub fn command_on(port: u16, line: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("redis answers");
        // Generous: a loaded machine (the whole suite runs in parallel) can be slow to answer.
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        stream.write_all(format!("{line}\r\n").as_bytes()).expect("command sent");
        let mut reply = Vec::new();
        let mut buf = [0u8; 256];
        // Until the first line is whole: a reply may come in more than one read.
        while !reply.windows(2).any(|w| w == b"\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => reply.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&reply).lines().next().unwrap_or_default().to_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    matches!(stream.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

/// A free port for a `redis-server`, never handed out twice in one test run, and below
/// the kernel's ephemeral range (32768 and up on Linux), as are the cluster bus ports
/// (+10000). Ports from `bind(0)` were not enough: a test that kills its Redis and
/// restarts it on the same port could find another test's fresh Redis there, and talk
/// to it (or the other way round), and every outgoing connection takes ephemeral ports.
pub fn free_port() -> u16 {
    const FIRST: u32 = 10_000;
    const SPAN: u32 = 12_000;
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    // Each run starts somewhere of its own, so two runs on one machine rarely meet.
    let start = std::process::id() % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = u16::try_from(FIRST + (start + n) % SPAN).expect("below 65536");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port for redis-server between {FIRST} and {}", FIRST + SPAN)
}
