//! A TCP link between the server and a real `redis-server` that can lose one reply: the
//! connection it travels on is closed instead, as when a network drops a connection after
//! Redis ran the command. Every byte that reaches either side comes from the real peer.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct RedisLink {
    pub port: u16,
    /// The reply to lose: the first chunk from Redis that contains these bytes.
    armed: Arc<Mutex<Option<Vec<u8>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl RedisLink {
    /// Listens on 127.0.0.1, port 0, and forwards each connection to `redis_port`.
    pub async fn start(redis_port: u16) -> RedisLink {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let port = listener.local_addr().expect("local addr").port();
        let armed: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
        let cut = armed.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(redis) = TcpStream::connect(("127.0.0.1", redis_port)).await else { continue };
                tokio::spawn(forward(client, redis, cut.clone()));
            }
        });
        RedisLink { port, armed, accept }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The next chunk from Redis that contains `marker` is dropped, and its connection
    /// closed on both sides.
    pub fn lose_reply_containing(&self, marker: &[u8]) {
        *self.armed.lock().unwrap() = Some(marker.to_vec());
    }

    /// Whether the armed reply was lost already.
    pub fn lost(&self) -> bool {
        self.armed.lock().unwrap().is_none()
    }
}

impl Drop for RedisLink {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn forward(client: TcpStream, redis: TcpStream, armed: Arc<Mutex<Option<Vec<u8>>>>) {
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut redis_rx, mut redis_tx) = redis.into_split();
    let up = async {
        let _ = tokio::io::copy(&mut client_rx, &mut redis_tx).await;
    };
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match redis_rx.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            let hit = {
                let mut armed = armed.lock().unwrap();
                let hit = armed.as_ref().is_some_and(|m| chunk.windows(m.len()).any(|w| w == m.as_slice()));
                if hit {
                    *armed = None;
                }
                hit
            };
            if hit || client_tx.write_all(chunk).await.is_err() {
                return;
            }
        }
    };
    // Whichever side ends first ends both: dropping the halves closes the connections.
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}
