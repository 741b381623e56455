//! A cheap hasher for session ids drawn at random.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// Hashes [`MemoryStore`](super::MemoryStore)'s session ids. The ids it stores are 128 random
/// bits this process drew (`Id::default()` in `create`, and `save` of a record loaded or created
/// before): a multiply folded with a key random per store spreads them as well as the default
/// SipHash does, in a tenth of its instructions (one lookup per written message). A client can
/// send any id, but that only looks one up; it cannot choose which ids are stored. Not for
/// maps whose keys a client picks.
#[derive(Debug, Clone)]
pub(crate) struct IdHashing {
    key: u64,
}

impl Default for IdHashing {
    fn default() -> Self {
        IdHashing {
            key: RandomState::new().hash_one(0u8),
        }
    }
}

impl BuildHasher for IdHashing {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(self.key)
    }
}

pub(crate) struct IdHasher(u64);

impl IdHasher {
    fn mix(&mut self, word: u64) {
        let product = u128::from(self.0 ^ word) * 0x9E37_79B9_7F4A_7C15;
        self.0 = (product as u64) ^ ((product >> 64) as u64);
    }
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
    }

    // `Id` hashes its `i128`.
    fn write_i128(&mut self, n: i128) {
        self.mix(n as u64);
        self.mix((n >> 64) as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
