//! Publisher authentication: `Authorization: Bearer <token>`.
//!
//! Tokens are checked against the registry, which stores only their SHA-256 (see
//! `registry`). A missing header and a wrong token get the same status (401, with
//! `WWW-Authenticate: Bearer` as RFC 6750 asks) but different words, so a publisher can tell a
//! forgotten header from a rotated token; neither says whether a publisher exists.

use axum::http::{HeaderMap, StatusCode, header};

use super::{AppState, Error};
use crate::registry::Publisher;

/// The longest `Authorization` header value looked at. A token is 64 hex digits.
const MAX_AUTHORIZATION_LEN: usize = 256;

/// The publisher the request's bearer token belongs to.
pub(crate) async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Publisher, Error> {
    let token = bearer_token(headers)?.to_owned();
    let registry = state.registry().clone();
    tokio::task::spawn_blocking(move || registry.authenticate(&token))
        .await??
        .ok_or_else(|| unauthorized("the bearer token is not valid (rotated or mistyped?)"))
}

fn bearer_token(headers: &HeaderMap) -> Result<&str, Error> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing `Authorization: Bearer <token>` header"))?;
    let text = value
        .to_str()
        .ok()
        .filter(|text| text.len() <= MAX_AUTHORIZATION_LEN)
        .ok_or_else(|| unauthorized("malformed Authorization header"))?;
    let (scheme, token) = text
        .split_once(' ')
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(unauthorized(
            "the Authorization header must be `Bearer <token>`",
        ));
    }
    Ok(token.trim())
}

fn unauthorized(message: &'static str) -> Error {
    Error::api(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn bearer_tokens_are_read_and_everything_else_refused() {
        assert_eq!(bearer_token(&with("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer_token(&with("bearer  abc ")).unwrap(), "abc");
        for bad in ["Basic abc", "Bearer", "abc"] {
            assert_eq!(
                bearer_token(&with(bad)).unwrap_err().reason(),
                "unauthorized"
            );
        }
        assert!(bearer_token(&HeaderMap::new()).is_err());
        let long = format!("Bearer {}", "a".repeat(MAX_AUTHORIZATION_LEN));
        assert!(bearer_token(&with(&long)).is_err());
    }
}
