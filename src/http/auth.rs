//! Bearer-token authentication of `POST /execute` and `/mcp` (`--api-token`).
//!
//! Only `/execute` and `/mcp` are guarded: `/health`, `/ready` and `/metrics` stay open
//! because the orchestrator's probes and the Prometheus scraper carry no
//! secrets and reveal none (see docs/api.md, section Authentication). This
//! module decides "token right or not"; the answer (401 with
//! `WWW-Authenticate: Bearer`) is the error table's job.

use hyper::header::{HeaderMap, AUTHORIZATION};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::ApiToken;

/// The configured token, kept only as its SHA-256 digest.
pub struct BearerAuth {
    digest: [u8; 32],
}

impl BearerAuth {
    /// Guards requests with `token`.
    pub fn new(token: &ApiToken) -> Self {
        Self { digest: Sha256::digest(token.as_bytes()).into() }
    }

    /// Whether the request carries `Authorization: Bearer <the token>`.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let presented = headers.get(AUTHORIZATION).and_then(|value| bearer_credentials(value.as_bytes()));
        // A missing or malformed header still costs one digest and one
        // comparison, like a wrong token.
        token_matches(&self.digest, presented.unwrap_or_default())
    }
}

/// The credentials of a `Bearer` authorization value. RFC 9110 section 11.1:
/// the scheme is case-insensitive and one or more spaces follow it.
fn bearer_credentials(value: &[u8]) -> Option<&[u8]> {
    let space = value.iter().position(|&byte| byte == b' ')?;
    let (scheme, rest) = value.split_at(space);
    scheme.eq_ignore_ascii_case(b"Bearer").then(|| rest.trim_ascii())
}

/// Compares `presented` with the token whose digest is `expected`.
///
/// SECURITY: comparing the SHA-256 digests with `subtle`'s constant-time
/// equality means the time taken depends neither on where the first wrong
/// byte is (no byte-by-byte guessing) nor on the token's length (the
/// digests always have 32 bytes). Hashing the presented value takes time
/// proportional to its own length only, which the client already knows.
fn token_matches(expected: &[u8; 32], presented: &[u8]) -> bool {
    let presented: [u8; 32] = Sha256::digest(presented).into();
    bool::from(presented.ct_eq(expected))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn auth() -> BearerAuth {
        BearerAuth { digest: Sha256::digest(b"s3cret").into() }
    }

    fn allows(value: Option<&'static str>) -> bool {
        let mut headers = HeaderMap::new();
        if let Some(value) = value {
            headers.insert(AUTHORIZATION, HeaderValue::from_static(value));
        }
        auth().allows(&headers)
    }

    #[test]
    fn comparison_needs_the_exact_token() {
        let expected: [u8; 32] = Sha256::digest(b"s3cret").into();
        assert!(token_matches(&expected, b"s3cret"));
        assert!(!token_matches(&expected, b"s3creT"), "last byte differs");
        assert!(!token_matches(&expected, b"S3cret"), "first byte differs");
        assert!(!token_matches(&expected, b"s3cre"), "prefix");
        assert!(!token_matches(&expected, b"s3cret2"), "longer");
        assert!(!token_matches(&expected, b""), "empty");
    }

    #[test]
    fn header_parsing() {
        assert!(allows(Some("Bearer s3cret")));
        assert!(allows(Some("bearer s3cret")), "the scheme is case-insensitive");
        assert!(allows(Some("Bearer   s3cret ")), "surrounding spaces are not part of the token");
        assert!(!allows(None));
        assert!(!allows(Some("s3cret")), "no scheme");
        assert!(!allows(Some("Basic s3cret")), "wrong scheme");
        assert!(!allows(Some("Bearers3cret")));
        assert!(!allows(Some("Bearer")));
        assert!(!allows(Some("Bearer wrong")));
    }

    #[test]
    fn credentials_are_split_from_the_scheme() {
        assert_eq!(bearer_credentials(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_credentials(b"BEARER abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_credentials(b"Token abc"), None);
        assert_eq!(bearer_credentials(b"Bearer"), None);
    }
}
