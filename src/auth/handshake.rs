//! Where a Socket.IO handshake carries its token: `auth.token`, the `Authorization`
//! header, or the `token` query parameter (the connect middleware itself, which verifies
//! it, is `socket::handshake`).

use serde_json::Value;

use super::jwt::TokenError;

/// Where a client put its token. Only the first one present is checked, in this order,
/// so an invalid `auth.token` is refused even when a header is valid.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenSource<'a> {
    /// `io(url, { auth: { token } })`: the socket.io convention.
    Auth(&'a str),
    /// `Authorization: Bearer <jwt>` on the handshake request.
    Header(String),
    /// `?token=<jwt>` on the handshake URL.
    Query(String),
}

/// Finds the token of a handshake, or says why there is none usable.
pub fn find_token<'a>(auth: Option<&'a Value>, parts: &http::request::Parts) -> Result<TokenSource<'a>, TokenError> {
    if let Some(token) = auth.and_then(|a| a.get("token")).filter(|t| !t.is_null()) {
        return match token.as_str() {
            Some(t) => Ok(TokenSource::Auth(t)),
            None => Err(TokenError::Malformed),
        };
    }
    if let Some(value) = parts.headers.get(http::header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| TokenError::Malformed)?.trim();
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            return Ok(TokenSource::Header(token.trim().to_owned()));
        }
    }
    if let Some(query) = parts.uri.query()
        && let Some((_, token)) = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "token")
    {
        return Ok(TokenSource::Query(token.into_owned()));
    }
    Err(TokenError::Missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parts(uri: &str, auth_header: Option<&str>) -> http::request::Parts {
        let mut req = http::Request::builder().uri(uri);
        if let Some(h) = auth_header {
            req = req.header("authorization", h);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn auth_token_comes_first_then_header_then_query() {
        let p = parts("/socket.io/?EIO=4&token=q", Some("Bearer h"));
        let auth = json!({"token": "a"});
        assert_eq!(find_token(Some(&auth), &p), Ok(TokenSource::Auth("a")));
        assert_eq!(find_token(None, &p), Ok(TokenSource::Header("h".into())));
        assert_eq!(find_token(None, &parts("/?token=q%2Eb", Some("Basic x"))), Ok(TokenSource::Query("q.b".into())));
        assert_eq!(find_token(None, &parts("/?EIO=4", None)), Err(TokenError::Missing));
        assert_eq!(find_token(Some(&json!({"token": 5})), &p), Err(TokenError::Malformed));
    }
}
