//! A salted hash that names a session in logs and room names without revealing its id.

use std::fmt;

use sha2::{Digest, Sha256};
use tower_sessions::session::Id;

/// Identifies a session in logs: the first 8 bytes of SHA-256(salt ‖ id), in hex. The salt is
/// random per process unless set, so a tag cannot be turned back into an id.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionTag(String);

impl SessionTag {
    pub(crate) fn new(salt: &[u8; 16], id: &Id) -> Self {
        let digest = Sha256::new()
            .chain_update(salt)
            .chain_update(id.0.to_le_bytes())
            .finalize();
        let mut hex = String::with_capacity(16);
        push_hex(&mut hex, &digest[..8]);
        SessionTag(hex)
    }

    /// The tag as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Appends `bytes` in lower-case hex (`format!` per byte costs more than the hash itself, and
/// this runs for every connection).
pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
}

impl fmt::Display for SessionTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionTag({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_hides_the_id_and_depends_on_salt() {
        let id = Id::default();
        let a = SessionTag::new(&[1; 16], &id);
        assert_eq!(a, SessionTag::new(&[1; 16], &id));
        assert_ne!(a, SessionTag::new(&[2; 16], &id));
        assert_eq!(a.as_str().len(), 16);
        assert!(!a.as_str().contains(&id.to_string()));
    }

    #[test]
    fn hex_matches_format() {
        let bytes = [0x00, 0x0f, 0xa5, 0xff, 0x10];
        let mut out = String::from("x:");
        push_hex(&mut out, &bytes);
        let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(out, format!("x:{expected}"));
    }
}
