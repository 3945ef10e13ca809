//! Whether a request on the Socket.IO path opens a new Engine.IO session: the one
//! definition the handshake guard (per-address limits, the head's detaching) and the
//! transport must share. If they disagree, a request the guard waves through as part of an
//! existing session opens a new one, free of every per-address limit.
//!
//! The rule is engineioxide's own (0.17, `RequestInfo::parse`), restated byte for byte: the
//! raw query is split on `&`, and the first piece that starts with the bytes `sid=` names
//! the session. Nothing is percent-decoded, `+` is not a space, names are case-sensitive:
//! `s%69d=…`, `SID=…`, a bare `sid` and `;sid=…` name no session, so they open one.

use engineioxide::sid::Sid;

/// What a request's query says about its Engine.IO session, as engineioxide reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionQuery<'a> {
    /// No piece of the query starts with `sid=`: the request opens a new session (when the
    /// rest of it is a valid handshake).
    New,
    /// The first `sid=` piece holds a well-formed session id: the request belongs to that
    /// session, and engineioxide refuses it if the session is unknown. Never a new session.
    Existing(&'a str),
    /// The first `sid=` piece holds something that is not a session id (empty, too long, a
    /// `%`): engineioxide refuses the request as an unknown session. Never a new session.
    Malformed,
}

impl<'a> SessionQuery<'a> {
    /// Classifies a request by its URI's query (`None`: no `?` at all).
    pub fn of(query: Option<&'a str>) -> SessionQuery<'a> {
        // Without a query engineioxide refuses the request; counting it as new costs an
        // honest client nothing and keeps this function's answer conservative.
        let Some(query) = query else { return SessionQuery::New };
        match query.split('&').find_map(|piece| piece.strip_prefix("sid=")) {
            None => SessionQuery::New,
            // engineioxide's own parser, so "well-formed" cannot drift from its definition.
            Some(sid) if sid.parse::<Sid>().is_ok() => SessionQuery::Existing(sid),
            Some(_) => SessionQuery::Malformed,
        }
    }

    /// Whether the request opens a new session, so counts against the per-address limits.
    pub fn opens_session(&self) -> bool {
        matches!(self, SessionQuery::New)
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    const SID: &str = "AAAAAAAAAAAAAAAA";

    /// Spellings of a session id in a long-polling handshake's query, after
    /// `EIO=4&transport=polling` (so engineioxide reads a valid protocol and transport).
    fn spellings() -> Vec<String> {
        let mut cases: Vec<String> = [
            "",
            "&s%69d=x",
            "&%73id=AAAAAAAAAAAAAAAA",
            "&sid",
            "&sid=",
            "&SID=AAAAAAAAAAAAAAAA",
            "&;sid=AAAAAAAAAAAAAAAA",
            "&x=1;sid=AAAAAAAAAAAAAAAA",
            "&&sid=AAAAAAAAAAAAAAAA",
            "&+sid=AAAAAAAAAAAAAAAA",
            "&%20sid=AAAAAAAAAAAAAAAA",
            "&sid%3DAAAAAAAAAAAAAAAA",
            "&sid=AAAAAAAAAAAAAAA%41",
            "&sid=AAAAAAAAAAAAAAAAA",
            "&sid=AAAAAAAAAAAAAAA",
            "&sid=AAAAAAAAAAAAAAA!",
            "&sid=AAAAAAAAAAAAAAAA=",
            "&sid==AAAAAAAAAAAAAAA",
            "&sid=AAAAAAAA+AAAAAAA",
            "&sid=AAAAAAAAAAAAAAAA",
            "&sid=x&sid=AAAAAAAAAAAAAAAA",
            "&sid=AAAAAAAAAAAAAAAA&sid=x",
            "&sid&sid=AAAAAAAAAAAAAAAA",
            "&s%69d=x&sid=AAAAAAAAAAAAAAAA",
            "&sid=aZ09_-aZ09_-aZ09",
            "&sidx=AAAAAAAAAAAAAAAA",
            "&xsid=AAAAAAAAAAAAAAAA",
            "&sid=%41AAAAAAAAAAAAAAA",
            "&b64=1&sid",
            "&EIO=3&sid=",
        ]
        .map(str::to_owned)
        .into();
        cases.push(format!("&sid={SID}&transport=websocket"));
        cases
    }

    /// Whether the real transport (socketioxide's service, as the app mounts it) opened a
    /// new session for a long-polling GET with this query.
    async fn engineioxide_opens(query: &str) -> bool {
        let (svc, _io) = socketioxide::SocketIo::new_svc();
        let req = http::Request::get(format!("/socket.io/?{query}"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .expect("a valid request");
        let res = svc.oneshot(req).await.expect("the service answers");
        let status = res.status();
        let body = res.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        status == 200 && body.starts_with(br#"0{"sid":"#)
    }

    #[tokio::test]
    async fn the_guard_and_engineioxide_agree_on_every_spelling_of_a_session_id() {
        for suffix in spellings() {
            let query = format!("EIO=4&transport=polling{suffix}");
            let ours = SessionQuery::of(Some(&query));
            assert_eq!(ours.opens_session(), engineioxide_opens(&query).await, "{query:?}: we say {ours:?}");
        }
    }

    #[test]
    fn the_bypass_spellings_open_new_sessions() {
        for query in ["EIO=4&transport=polling&s%69d=x", "EIO=4&transport=polling&sid", "a&SID=AAAAAAAAAAAAAAAA"] {
            assert_eq!(SessionQuery::of(Some(query)), SessionQuery::New, "{query}");
        }
        assert_eq!(SessionQuery::of(None), SessionQuery::New);
        assert_eq!(SessionQuery::of(Some("")), SessionQuery::New);
    }

    #[test]
    fn the_first_sid_piece_decides_and_only_a_well_formed_one_names_a_session() {
        assert_eq!(SessionQuery::of(Some("EIO=4&sid=AAAAAAAAAAAAAAAA")), SessionQuery::Existing(SID));
        assert_eq!(SessionQuery::of(Some("sid=AAAAAAAAAAAAAAAA&sid=x")), SessionQuery::Existing(SID));
        assert_eq!(SessionQuery::of(Some("sid=x&sid=AAAAAAAAAAAAAAAA")), SessionQuery::Malformed);
        assert_eq!(SessionQuery::of(Some("sid=")), SessionQuery::Malformed);
        assert_eq!(SessionQuery::of(Some("sid=%41AAAAAAAAAAAAAAA")), SessionQuery::Malformed);
    }
}
