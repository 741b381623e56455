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
        for b in &digest[..8] {
            hex.push_str(&format!("{b:02x}"));
        }
        SessionTag(hex)
    }

    /// The tag as text.
    pub fn as_str(&self) -> &str {
        &self.0
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
}
