//! Bearer-token authentication for both front ends: `Authorization: Bearer <token>` (gRPC:
//! the `authorization` metadata entry) must carry one of the configured tokens.
//!
//! Tokens are compared as SHA-256 digests, every configured token each time and without an
//! early exit, so neither the time taken nor its variation tells a client how much of a
//! token or which token it matched. Tokens never appear in logs or answers.

use http::HeaderMap;
use http::header::AUTHORIZATION;
use ring::digest::{SHA256, digest};

use super::config::AuthConfig;

/// The accepted tokens, as digests.
pub(crate) struct BearerAuth {
    digests: Vec<[u8; 32]>,
}

/// Why a request was not authenticated (the answer's message).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    /// No `Authorization` header, or not of the `Bearer` scheme.
    Missing,
    /// A bearer token that is not one of the configured ones.
    Wrong,
}

impl AuthFailure {
    pub(crate) fn message(&self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing bearer token: send \"Authorization: Bearer <token>\"",
            AuthFailure::Wrong => "invalid bearer token",
        }
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

impl BearerAuth {
    pub(crate) fn new(config: &AuthConfig) -> BearerAuth {
        BearerAuth {
            digests: config
                .bearer_tokens
                .iter()
                .map(|t| sha256(t.expose().as_bytes()))
                .collect(),
        }
    }

    /// Checks a request's headers.
    pub(crate) fn check(&self, headers: &HeaderMap) -> Result<(), AuthFailure> {
        let value = headers
            .get(AUTHORIZATION)
            .map(|v| v.as_bytes())
            .ok_or(AuthFailure::Missing)?;
        // The scheme is case-insensitive (RFC 9110); the token is everything after it.
        let token = match value.split_first_chunk::<7>() {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case(b"bearer ") => rest.trim_ascii(),
            _ => return Err(AuthFailure::Missing),
        };
        let presented = sha256(token);
        let mut matched = 0u8;
        for expected in &self.digests {
            matched |= u8::from(constant_time_eq(&presented, expected));
        }
        if std::hint::black_box(matched) == 1 {
            Ok(())
        } else {
            Err(AuthFailure::Wrong)
        }
    }
}

/// Equal digests, looking at every byte whatever differs.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= std::hint::black_box(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use pipeline_core::config::Secret;

    fn headers(value: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = value {
            h.insert(AUTHORIZATION, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn accepts_any_configured_token_and_nothing_else() {
        let auth = BearerAuth::new(&AuthConfig {
            bearer_tokens: vec![Secret::new("first-token"), Secret::new("second")],
        });
        assert_eq!(auth.check(&headers(Some("Bearer first-token"))), Ok(()));
        assert_eq!(auth.check(&headers(Some("bearer second"))), Ok(()));
        assert_eq!(auth.check(&headers(Some("BEARER  second "))), Ok(()));
        assert_eq!(
            auth.check(&headers(Some("Bearer first-toke"))),
            Err(AuthFailure::Wrong)
        );
        assert_eq!(
            auth.check(&headers(Some("Bearer "))),
            Err(AuthFailure::Wrong)
        );
        assert_eq!(
            auth.check(&headers(Some("Basic Zmlyc3QtdG9rZW4="))),
            Err(AuthFailure::Missing)
        );
        assert_eq!(auth.check(&headers(None)), Err(AuthFailure::Missing));
    }
}
