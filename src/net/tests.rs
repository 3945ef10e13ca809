//! The listener's streams: closing from outside, and counting what is written.

use std::task::Wake;

use axum::serve::Listener;
use tokio::io::{AsyncWriteExt, ReadBuf};

use super::*;

struct CountingWaker;

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {}
}

#[tokio::test]
async fn a_closed_connection_lets_go_of_the_task_that_waited_on_it() {
    let inner = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = inner.local_addr().expect("addr");
    let limits = ConnLimits { total: None, per_ip: None };
    let mut listener = LimitedListener::new(inner, limits, None, Arc::new(TrustedProxies::default()));
    let _client = TcpStream::connect(addr).await.expect("connect");
    let (mut stream, _) = listener.accept().await;
    let handle = stream.handle.clone();

    // A read with nothing to read parks the task: its waker is kept so a close can wake it.
    let task = Arc::new(CountingWaker);
    let waker = Waker::from(task.clone());
    let mut buf = [0u8; 8];
    let mut read = ReadBuf::new(&mut buf);
    let poll = Pin::new(&mut stream).poll_read(&mut Context::from_waker(&waker), &mut read);
    assert!(poll.is_pending());
    drop(waker);
    // Ours, the handle's, and tokio's I/O registration's.
    assert_eq!(Arc::strong_count(&task), 3, "the handle keeps the parked task's waker");

    // The handle outlives the connection (a session's table entry); the waker must not,
    // or it keeps the finished connection task's whole allocation.
    drop(stream);
    assert_eq!(Arc::strong_count(&task), 1, "the waker outlived the connection");
    drop(handle);
}

#[tokio::test]
async fn what_a_connection_writes_is_counted_on_its_handle() {
    let inner = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = inner.local_addr().expect("addr");
    let limits = ConnLimits { total: None, per_ip: None };
    let mut listener = LimitedListener::new(inner, limits, None, Arc::new(TrustedProxies::default()));
    let mut client = TcpStream::connect(addr).await.expect("connect");
    let (mut stream, _) = listener.accept().await;
    let handle = stream.handle.clone();
    assert_eq!(handle.written(), 0);

    stream.write_all(b"hello").await.expect("write");
    let slices = [io::IoSlice::new(b", "), io::IoSlice::new(b"world")];
    assert_eq!(stream.write_vectored(&slices).await.expect("write_vectored"), 7);
    assert_eq!(handle.written(), 12, "plain and vectored writes both count");
    let mut received = vec![0u8; 12];
    client.read_exact(&mut received).await.expect("read");
    assert_eq!(&received, b"hello, world");
}
