//! HTTPS to the backend: presence webhooks to a receiver whose certificate a private CA
//! signed (made by the `openssl` CLI for each test) arrive when that CA is in
//! `WEBHOOK_CA_FILE`, and never without it (the system's roots do not know it).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;

use crate::helpers::*;
use crate::hooks::{Received, SECRET, valid, wait_for};
use crate::redis_tls::Pki;

/// A webhook receiver on `https://127.0.0.1:<port>/hooks` with the certificate `cert`;
/// it records every body (and whether its signature holds) and answers 204.
async fn tls_receiver(cert: &str, key: &str) -> (String, Received) {
    let chain = CertificateDer::pem_file_iter(cert).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/hooks", listener.local_addr().unwrap());
    let received = Received::default();
    let store = received.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, store) = (acceptor.clone(), store.clone());
            tokio::spawn(async move {
                // A client that does not trust us aborts the handshake: nothing to serve.
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let store = store.clone();
                    async move {
                        let headers = req.headers().clone();
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let ok = valid(&headers, &body);
                        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        store.0.lock().unwrap().push((v, ok));
                        let mut answer = Response::new(Empty::<Bytes>::new());
                        *answer.status_mut() = StatusCode::NO_CONTENT;
                        Ok::<_, Infallible>(answer)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
            });
        }
    });
    (url, received)
}

async fn webhooks(app: &TestApp, outcome: &str) -> f64 {
    let text = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let series = format!("fixrx_webhooks_total{{outcome=\"{outcome}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&series)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
}

#[tokio::test]
async fn presence_webhooks_reach_an_https_receiver_signed_by_the_ca_in_webhook_ca_file() {
    let pki = Pki::new();
    let ca = pki.ca("hooks-ca");
    let (cert, key) = pki.leaf("hooks-ca", "receiver");
    let (url, received) = tls_receiver(&cert, &key).await;
    let app = spawn_app_with(&[("WEBHOOK_URL", &url), ("WEBHOOK_SECRET", SECRET), ("WEBHOOK_CA_FILE", &ca)]).await;
    let _client = connect_user(&app, "tls-trusted").await;
    wait_for(&received, "user:tls-trusted", 1, WAIT).await;
    assert_eq!(received.types("user:tls-trusted"), ["presence.online"]);
    assert!(received.all_signed());
    assert_eq!(webhooks(&app, "failed").await, 0.0);
}

#[tokio::test]
async fn without_webhook_ca_file_a_receiver_signed_by_a_private_ca_gets_nothing_and_the_failures_are_counted() {
    let pki = Pki::new();
    pki.ca("hooks-ca");
    let (cert, key) = pki.leaf("hooks-ca", "receiver");
    let (url, received) = tls_receiver(&cert, &key).await;
    let app = spawn_app_with(&[("WEBHOOK_URL", &url), ("WEBHOOK_SECRET", SECRET)]).await;
    let _client = connect_user(&app, "tls-untrusted").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while webhooks(&app, "failed").await < 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "no failed attempt counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(webhooks(&app, "sent").await, 0.0);
    assert!(received.0.lock().unwrap().is_empty(), "an untrusted receiver got a webhook");
}
