//! Logging: `RUST_LOG` (or `DEBUG=socket.io*`) filters, text or JSON lines, on stderr.
//!
//! Two guarantees hold at every level, whoever logs (our code or the transport crates):
//! - no line carries a credential: every formatted line passes through [`redact`] on
//!   its way to the writer ([`Redacting`]);
//! - in the text format, a client-chosen value cannot forge a field or a line
//!   ([`fields::EscapedFields`]); the JSON format is escaped by serde.

pub mod fields;
pub mod redact;

use std::io::{self, IsTerminal};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{LogConfig, LogFormat};

/// A socket id fit for logs. socketioxide's Socket.IO sid is also the Engine.IO session
/// id, which authorizes long-polling requests on that session: logs keep only a prefix
/// (enough to follow one client, far too little to use).
pub fn log_id(sid: socketioxide::socket::Sid) -> String {
    let full = sid.to_string();
    format!("{}…", full.chars().take(6).collect::<String>())
}

/// Installs the global subscriber. A second call (tests) is a no-op.
pub fn init(log: &LogConfig) {
    let filter = EnvFilter::try_new(&log.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Redacting(io::stderr))
        // Colour codes only for a person at a terminal, not in files and collectors.
        .with_ansi(io::stderr().is_terminal());
    let _ = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Text => builder.fmt_fields(fields::EscapedFields).try_init(),
    };
}

/// A [`MakeWriter`] whose writers pass each formatted line through [`redact::redact`].
/// tracing-subscriber hands the writer one whole event per `write_all`, so a credential
/// is never split across two calls.
#[derive(Debug, Clone, Copy)]
pub struct Redacting<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(self.0.make_writer())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        RedactingWriter(self.0.make_writer_for(meta))
    }
}

/// See [`Redacting`].
pub struct RedactingWriter<W>(W);

impl<W: io::Write> io::Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match redact::redact(buf) {
            None => self.0.write_all(buf)?,
            Some(clean) => self.0.write_all(&clean)?,
        }
        // All of `buf` is consumed (or replaced), whatever length was written for it.
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn the_writer_redacts_each_line_and_passes_the_rest_untouched() {
        let mut out = Vec::new();
        {
            let mut writer = RedactingWriter(&mut out);
            writer.write_all(b"auth: {\"token\":\"eyJa.eyJb.c\"}\n").expect("write");
            writer.write_all(b"plain line\n").expect("write");
        }
        assert_eq!(out, b"auth: {\"token\":\"[REDACTED]\"}\nplain line\n");
    }

    #[test]
    fn logs_never_carry_a_usable_session_id() {
        let sid = socketioxide::socket::Sid::new();
        let logged = log_id(sid);
        assert_eq!(logged.chars().count(), 7);
        assert!(!logged.contains(&sid.to_string()));
    }
}
