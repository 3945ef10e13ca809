//! Text-format fields a client cannot forge. tracing-subscriber's default text fields
//! write a `%` (Display) value and the message raw, so a client-chosen id holding `\n`,
//! `"`, ` level=ERROR` or an ANSI escape could start a line or a field of its own.
//! Here a value is written bare only when it is one plain word; anything else is
//! Debug-quoted (`"a \"b\"\nc"`), which escapes quotes, backslashes, control characters
//! and invisible code points. Call sites stay as they are.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

/// The text format's [`FormatFields`]: `message key=value key="quoted value"`.
#[derive(Debug, Default, Clone, Copy)]
pub struct EscapedFields;

impl<'w> FormatFields<'w> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = Escaping { writer, first: true, result: Ok(()), scratch: String::new() };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct Escaping<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
    /// Reused for each Debug/Display value, so it is inspected before being written.
    scratch: String,
}

impl Escaping<'_> {
    fn write(&mut self, field: &Field, value: &str, quote_always: bool) {
        let name = field.name();
        // Fields `tracing-log` adds to `log` records; the default format hides them too.
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let separator = if self.first { "" } else { " " };
        self.first = false;
        self.result = if name == "message" {
            if plain_message(value) {
                write!(self.writer, "{separator}{value}")
            } else {
                write!(self.writer, "{separator}{value:?}")
            }
        } else {
            let name = name.strip_prefix("r#").unwrap_or(name);
            if !quote_always && plain_word(value) {
                write!(self.writer, "{separator}{name}={value}")
            } else {
                write!(self.writer, "{separator}{name}={value:?}")
            }
        };
    }
}

impl Visit for Escaping<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        // `&str` fields are always quoted, as in tracing-subscriber's default format.
        self.write(field, value, true);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        if write!(scratch, "{value:?}").is_err() {
            self.result = Err(fmt::Error);
        }
        self.write(field, &scratch, false);
        self.scratch = scratch;
    }
}

/// A character that reads as itself and ends nothing: no control, no invisible or
/// combining code point (what `escape_debug` would rewrite), no whitespace.
fn visible(c: char) -> bool {
    if c.is_ascii() { c.is_ascii_graphic() } else { !c.is_whitespace() && c.escape_debug().count() == 1 }
}

/// One word a reader cannot mistake for more: no quote, backslash or `=`.
fn plain_word(value: &str) -> bool {
    !value.is_empty() && value.chars().all(|c| visible(c) && !matches!(c, '"' | '\\' | '='))
}

/// A message is prose: spaces are fine, but nothing that ends a line or looks like a field.
fn plain_message(value: &str) -> bool {
    value.chars().all(|c| (c == ' ' || visible(c)) && !matches!(c, '"' | '\\' | '='))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Formats what `emit` logs with the text format and these fields.
    fn formatted(emit: impl FnOnce()) -> String {
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(EscapedFields)
            .with_ansi(false)
            .without_time()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = out.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8(bytes).expect("utf-8")
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut out) = self.0.lock() {
                out.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn plain_values_stay_bare_and_str_values_stay_quoted() {
        let out = formatted(|| tracing::info!(sid = %"abc123\u{2026}", n = 3, role = "user", "client connected"));
        assert_eq!(
            out.trim(),
            "INFO fixrx_realtime::telemetry::fields::tests: client connected sid=abc123\u{2026} n=3 role=\"user\""
        );
    }

    #[test]
    fn a_client_chosen_value_cannot_start_a_line_or_a_field() {
        let evil = "x\n2026-01-01T00:00:00Z ERROR forged: line level=ERROR \"q\" \u{1b}[31mred\u{202e}";
        let out = formatted(|| {
            tracing::info!(event = %evil, room = %"vendor:x level=ERROR", "unknown client event ignored");
            tracing::debug!("invalid namespace requested: {}", evil);
        });
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(!out.contains('\u{1b}') && !out.contains('\u{202e}'), "{out:?}");
        assert!(out.contains("room=\"vendor:x level=ERROR\""), "{out}");
        assert!(
            out.contains(
                r#"event="x\n2026-01-01T00:00:00Z ERROR forged: line level=ERROR \"q\" \u{1b}[31mred\u{202e}""#
            ),
            "{out}"
        );
        assert!(
            out.contains(r#"DEBUG fixrx_realtime::telemetry::fields::tests: "invalid namespace requested: x\n"#),
            "{out}"
        );
    }

    #[test]
    fn span_fields_are_escaped_too() {
        let out = formatted(|| {
            let span = tracing::info_span!("http", path = %"/a b\nc");
            span.in_scope(|| tracing::info!("inside"));
        });
        assert!(out.contains(r#"http{path="/a b\nc"}"#), "{out}");
    }
}
