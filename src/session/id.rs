//! Session ids: the capability that names a session.
//!
//! An id is 24 random bytes from the kernel (192 bits), base64url without
//! padding (32 characters, URL-safe). The registry keys sessions by the
//! SHA-256 of the id and compares digests in constant time, so neither the
//! map's lookup nor a comparison's early exit tells anything about an id
//! that is not known already. Only [`SessionId::redacted`] (the first 6
//! characters) is ever logged.

use std::io::Read;

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Random bytes in an id.
const ID_BYTES: usize = 24;

/// The SHA-256 of an id: what the registry stores and compares.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdDigest([u8; 32]);

impl IdDigest {
    /// The digest of any presented id (well-formed or not).
    pub fn of(id: &str) -> Self {
        Self(Sha256::digest(id.as_bytes()).into())
    }

    /// Constant-time equality (the map lookup found a candidate).
    pub fn matches(&self, other: &IdDigest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

/// A new session id.
pub struct SessionId(String);

impl SessionId {
    /// Draws a fresh id from `/dev/urandom`.
    ///
    /// # Errors
    /// When the kernel's random source cannot be read.
    pub fn generate() -> std::io::Result<Self> {
        let mut bytes = [0u8; ID_BYTES];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        Ok(Self(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// The id, to hand to the client once.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its digest.
    pub fn digest(&self) -> IdDigest {
        IdDigest::of(&self.0)
    }
}

/// The first characters of an id: enough to tell sessions apart in logs,
/// far too few to use one.
pub fn redacted(id: &str) -> String {
    let head: String = id.chars().take(6).collect();
    format!("{head}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_long_url_safe_and_distinct() {
        let a = SessionId::generate().expect("urandom");
        let b = SessionId::generate().expect("urandom");
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(a.as_str(), b.as_str());
        assert!(a.digest().matches(&IdDigest::of(a.as_str())));
        assert!(!a.digest().matches(&b.digest()));
        assert_eq!(redacted(a.as_str()).chars().count(), 7);
    }
}
