//! Credentials out of formatted log lines, whoever wrote them. With `DEBUG=socket.io*`
//! the transport crates log raw packets and the CONNECT `auth` (socketioxide's
//! `Client::on_message`, `Client::sock_connect`, `Socket::recv_event`; engineioxide's
//! `Socket::send`), and their code is not ours to change: so every line is rewritten
//! here, on its way to the writer, in either format.
//!
//! Hand-written scanning rather than a regex: a line with nothing to redact (nearly all
//! of them) costs one pass over its bytes, and the crate needs no new dependency.

/// What a credential becomes.
pub const REDACTED: &[u8] = b"[REDACTED]";

/// `line` with every credential replaced by [`REDACTED`], or `None` when it holds none:
/// - anything shaped like a JWT (`eyJ` base64url `.` base64url, an optional `.` and
///   signature), wherever it sits;
/// - the value after `token=` (any key ending in `token`, any case);
/// - the quoted value after `token:`, as JSON (`"token":"…"`, escaped or not) and Rust's
///   `Debug` (`token: "…"`, `"token": String("…")`) write it;
/// - the value after `Bearer ` (any case).
pub fn redact(line: &[u8]) -> Option<Vec<u8>> {
    if !suspicious(line) {
        return None;
    }
    let mut out = Vec::with_capacity(line.len());
    let mut changed = false;
    let mut i = 0;
    while i < line.len() {
        if let Some(end) = jwt_at(line, i) {
            out.extend_from_slice(REDACTED);
            changed = true;
            i = end;
        } else if let Some((start, end)) = keyword_value_at(line, i) {
            out.extend_from_slice(&line[i..start]);
            out.extend_from_slice(REDACTED);
            changed = true;
            i = end;
        } else {
            out.push(line[i]);
            i += 1;
        }
    }
    changed.then_some(out)
}

/// The cheap test every line pays: could it hold a JWT, a `…token` key or a `Bearer`?
fn suspicious(line: &[u8]) -> bool {
    (0..line.len()).any(|i| match line[i] {
        b'e' => line[i..].starts_with(b"eyJ") || starts_with_ci(&line[i..], b"earer"),
        b'E' => starts_with_ci(&line[i..], b"earer"),
        b'o' | b'O' => starts_with_ci(&line[i..], b"oken"),
        _ => false,
    })
}

fn starts_with_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len() && hay[..needle.len()].eq_ignore_ascii_case(needle)
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn run_end(line: &[u8], from: usize, keep: impl Fn(u8) -> bool) -> usize {
    line[from..].iter().position(|&b| !keep(b)).map_or(line.len(), |n| from + n)
}

/// The end of a JWT-shaped run starting at `i`. A JSON header always encodes to `eyJ`;
/// a two-part run (a token cut short by a log line) is redacted too.
fn jwt_at(line: &[u8], i: usize) -> Option<usize> {
    if !line[i..].starts_with(b"eyJ") {
        return None;
    }
    let header_end = run_end(line, i, is_b64url);
    if line.get(header_end) != Some(&b'.') {
        return None;
    }
    let payload_end = run_end(line, header_end + 1, is_b64url);
    if payload_end == header_end + 1 {
        return None;
    }
    // Every further `.segment` too: a JWE has five parts, and a token written right after
    // a JWT-shaped run would otherwise keep its signature (found by fuzzing).
    let mut end = payload_end;
    while line.get(end) == Some(&b'.') {
        end = run_end(line, end + 1, is_b64url);
    }
    Some(end)
}

/// Where a keyword's value starts and ends, if a keyword (`…token=`, `…token: "`,
/// `Bearer `) starts at `i`.
fn keyword_value_at(line: &[u8], i: usize) -> Option<(usize, usize)> {
    if starts_with_ci(&line[i..], b"bearer") {
        let after = i + b"bearer".len();
        let start = run_end(line, after, |b| b == b' ' || b == b'\t');
        return (start > after).then(|| value(line, start)).flatten();
    }
    if !starts_with_ci(&line[i..], b"token") {
        return None;
    }
    // The key's closing quote (`"token"`, `\"token\"`), then `=` or `:`.
    let mut j = run_end(line, i + b"token".len(), |b| matches!(b, b'"' | b'\'' | b'\\'));
    j = run_end(line, j, |b| b == b' ');
    let separator = *line.get(j)?;
    if separator != b'=' && separator != b':' {
        return None;
    }
    let (start, quoted) = opening(line, j + 1);
    // After `:` only a quoted value counts, so prose such as "token: expired" survives.
    if separator == b':' && !quoted {
        return None;
    }
    value(line, start)
}

/// Skips what opens a value: spaces, `Some(` / `String(` / `Str(` wrappers, `b"` and any
/// quotes or escaping backslashes. Returns where the value starts and whether it was
/// quoted or wrapped.
fn opening(line: &[u8], from: usize) -> (usize, bool) {
    let mut j = run_end(line, from, |b| b == b' ');
    let mut quoted = false;
    for _ in 0..4 {
        let word = run_end(line, j, |b| b.is_ascii_alphabetic());
        let next = line.get(word).copied();
        if word > j && (next == Some(b'(') || (word == j + 1 && line[j] == b'b' && next == Some(b'"'))) {
            j = if next == Some(b'(') { word + 1 } else { word };
            quoted = true;
            continue;
        }
        let after_quotes = run_end(line, j, |b| matches!(b, b'"' | b'\'' | b'\\'));
        if after_quotes == j {
            break;
        }
        j = after_quotes;
        quoted = true;
    }
    (j, quoted)
}

/// A value runs to the first byte that cannot be part of a token; empty is no value, and
/// neither is one already redacted (a line may pass through twice).
fn value(line: &[u8], start: usize) -> Option<(usize, usize)> {
    if line[start..].starts_with(REDACTED) {
        return None;
    }
    let end = run_end(line, start, |b| {
        !(b.is_ascii_whitespace()
            || b.is_ascii_control()
            || matches!(b, b'"' | b'\'' | b'\\' | b'&' | b',' | b';' | b')' | b']' | b'}' | b'<' | b'>'))
    });
    (end > start).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJlLXBhcnQtMDEyMw";

    fn clean(line: &str) -> String {
        String::from_utf8(redact(line.as_bytes()).unwrap_or_else(|| line.as_bytes().to_vec())).expect("utf-8")
    }

    #[test]
    fn a_line_without_credentials_is_left_alone() {
        for line in [
            "INFO fixrx_realtime: handshake refused sid=\"abc\" reason=\"token_expired\"",
            "DEBUG fixrx_realtime::socket::expiry: token refreshed exp=123",
            "WARN admin console: missing or wrong token",
            "unauthorized: token expired",
            "{\"message\":\"token expired: disconnecting\",\"sid\":\"x\"}",
            "caf\u{e9} \u{2026} eyJ but no dots",
        ] {
            assert_eq!(redact(line.as_bytes()), None, "{line}");
        }
    }

    #[test]
    fn a_jwt_is_redacted_wherever_it_sits() {
        let signature = JWT.rsplit('.').next().expect("three parts");
        for line in [
            format!("received message: Str(b\"0{{\\\"token\\\":\\\"{JWT}\\\"}}\")"),
            format!(
                "{{\"message\":\"auth: Some(Str(Str(b\\\"{{\\\\\\\"token\\\\\\\":\\\\\\\"{JWT}\\\\\\\"}}\\\")))\"}}"
            ),
            format!("x{JWT}y"),
            format!("cut short: {}", &JWT[..JWT.rfind('.').expect("dot")]),
            // Right after a JWT-shaped run, with no separator (found by fuzzing).
            format!("eyJa.eyJd{JWT}"),
            format!("five parts: {JWT}.{JWT}"),
        ] {
            let out = clean(&line);
            assert!(!out.contains(signature) && !out.contains("eyJzdWIi"), "{out}");
            assert!(out.contains("[REDACTED]"), "{out}");
        }
    }

    #[test]
    fn the_values_of_token_keys_and_bearer_are_redacted() {
        let cases = [
            ("GET /socket.io/?EIO=4&token=opaque-1&transport=polling", "opaque-1"),
            ("auth: {\"token\":\"opaque-2\"}", "opaque-2"),
            ("auth: {\\\"token\\\": \\\"opaque-3\\\"}", "opaque-3"),
            ("Object {\"token\": String(\"opaque-4\")}", "opaque-4"),
            ("Refresh { access_token: \"opaque-5\" }", "opaque-5"),
            ("authorization: Bearer opaque-6", "opaque-6"),
            ("\"authorization\": \"BEARER   opaque.7+/=\"", "opaque.7+/="),
            ("TOKEN=opaque-8", "opaque-8"),
        ];
        for (line, secret) in cases {
            let out = clean(line);
            assert!(!out.contains(secret) && out.contains("[REDACTED]"), "{line} -> {out}");
        }
        assert_eq!(clean("a token=x&b=1"), "a token=[REDACTED]&b=1");
        assert_eq!(clean("\"token\":\"x\",\"n\":1"), "\"token\":\"[REDACTED]\",\"n\":1");
    }

    #[test]
    fn redaction_never_splits_a_character_and_is_idempotent() {
        let line = format!("token=\u{e9}t\u{e9} \u{2026} Bearer {JWT}\u{2026}");
        let once = clean(&line);
        assert_eq!(clean(&once), once);
        assert!(!once.contains("eyJ"), "{once}");
    }
}
