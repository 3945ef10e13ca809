//! One signed JSON `POST` to the backend, on a shared pooled client.

use std::time::Duration;

use http::StatusCode;
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;

use super::sign::{SIGNATURE_HEADER, Signer, TIMESTAMP_HEADER};
use crate::config::HookTarget;

/// Most of an answer's body that is read (the chat hook's error message lives there);
/// the rest is dropped unread.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Idle keep-alive connections kept to the backend.
const POOL_IDLE_PER_HOST: usize = 64;
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What the backend answered.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

/// Why there is no answer.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("unreachable: {0}")]
    Unreachable(String),
}

/// Posts signed bodies. Cheap to clone: the connection pool is shared.
#[derive(Clone)]
pub struct Poster {
    client: reqwest::Client,
    signer: Signer,
}

impl Poster {
    /// Trusts the system's roots plus `extra_roots` (`WEBHOOK_CA_FILE`). The system's roots
    /// are read here, once.
    pub fn new(signer: Signer, extra_roots: &[CertificateDer<'static>]) -> Result<Poster, reqwest::Error> {
        let mut builder = reqwest::Client::builder();
        for root in extra_roots {
            builder = builder.add_root_certificate(reqwest::Certificate::from_der(root.as_ref())?);
        }
        let client = builder
            .user_agent(concat!("fixrx-realtime/", env!("CARGO_PKG_VERSION")))
            // A signed request goes where it was configured to go, never where a redirect points.
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(POOL_IDLE_PER_HOST)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .tcp_nodelay(true)
            .build()?;
        Ok(Poster { client, signer })
    }

    /// One attempt, within `target.timeout` from connecting to the last byte read.
    pub async fn post(&self, target: &HookTarget, body: Vec<u8>) -> Result<Answer, PostError> {
        let timestamp = OffsetDateTime::now_utc().unix_timestamp();
        let signature = self.signer.sign(timestamp, &body);
        let attempt = async {
            let mut response = self
                .client
                .post(target.url.clone())
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(TIMESTAMP_HEADER, timestamp.to_string())
                .header(SIGNATURE_HEADER, signature)
                .body(body)
                .send()
                .await
                .map_err(|e| PostError::Unreachable(describe(e)))?;
            let status = response.status();
            let mut body = Vec::new();
            while body.len() < MAX_ANSWER_BYTES {
                match response.chunk().await {
                    Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                    // A body cut short still came with a status: the status is the answer.
                    Ok(None) | Err(_) => break,
                }
            }
            body.truncate(MAX_ANSWER_BYTES);
            Ok(Answer { status, body })
        };
        tokio::time::timeout(target.timeout, attempt).await.map_err(|_| PostError::Timeout(target.timeout))?
    }
}

/// The error and its causes in one line, without the URL (it may carry credentials).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
