//! Sealing bytes with a 256-bit key: AES-256-GCM (ring), a random 96-bit
//! nonce per message, stored as `nonce ‖ ciphertext ‖ tag`.
//!
//! Every Raft entry and state row is sealed on the write path, so the cost
//! per message matters: the expanded AES key is made once per key, and
//! nonces come from the thread's CSPRNG (ChaCha, seeded and reseeded from
//! the OS) rather than a system call each. Random 96-bit nonces stay safe
//! far beyond the 2^32 messages per key that GCM allows with them.

use std::sync::Arc;

use rand::RngCore;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

/// Failures sealing or opening.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// The sealed bytes are not what this key sealed (wrong key, tampering).
    #[error("sealed data does not open with this key")]
    Open,
    /// The system's random source failed.
    #[error("no randomness available")]
    Random,
}

/// A 256-bit symmetric key (and its expanded AES key, shared by clones).
#[derive(Clone)]
pub struct Key {
    bytes: [u8; 32],
    aead: Arc<LessSafeKey>,
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Key {}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(…)")
    }
}

impl Key {
    /// A fresh random key.
    pub fn generate() -> Result<Key, CryptoError> {
        let mut k = [0u8; 32];
        SystemRandom::new()
            .fill(&mut k)
            .map_err(|_| CryptoError::Random)?;
        Ok(Key::from_array(k))
    }

    fn from_array(bytes: [u8; 32]) -> Key {
        // A 32-byte key always makes an AES-256 key.
        let unbound = UnboundKey::new(&AES_256_GCM, &bytes).unwrap_or_else(|_| unreachable!());
        Key {
            bytes,
            aead: Arc::new(LessSafeKey::new(unbound)),
        }
    }

    /// From its 32 bytes; `None` for any other length.
    pub fn from_bytes(b: &[u8]) -> Option<Key> {
        <[u8; 32]>::try_from(b).ok().map(Key::from_array)
    }

    /// Its 32 bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn aead(&self) -> &LessSafeKey {
        &self.aead
    }

    /// Seals `plaintext`; `context` (e.g. the object's kind and name) is
    /// authenticated with it, so sealed bytes cannot be moved to another row.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng()
            .try_fill_bytes(&mut nonce)
            .map_err(|_| CryptoError::Random)?;
        // One buffer: nonce, then the plaintext sealed in place, then the tag.
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + AES_256_GCM.tag_len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .aead()
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut out[NONCE_LEN..],
            )
            .map_err(|_| CryptoError::Random)?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Opens what [`seal`](Self::seal) made with the same key and context.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < NONCE_LEN {
            return Err(CryptoError::Open);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Open)?;
        let mut buf = body.to_vec();
        let plain = self
            .aead()
            .open_in_place(nonce, Aad::from(context), &mut buf)
            .map_err(|_| CryptoError::Open)?;
        Ok(plain.to_vec())
    }
}

/// A fixed key for unit tests that reopen what they sealed.
#[cfg(test)]
pub(crate) fn test_key() -> std::sync::Arc<Key> {
    std::sync::Arc::new(Key::from_array([7; 32]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_refusals() {
        let k = Key::generate().expect("key");
        let sealed = k.seal(b"hunter2", b"secret/db").expect("seal");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(k.open(&sealed, b"secret/db").expect("open"), b"hunter2");
        // Another context, another key, or a flipped bit: refused.
        assert_eq!(k.open(&sealed, b"secret/other"), Err(CryptoError::Open));
        let other = Key::generate().expect("key");
        assert_eq!(other.open(&sealed, b"secret/db"), Err(CryptoError::Open));
        let mut bad = sealed.clone();
        bad[15] ^= 1;
        assert_eq!(k.open(&bad, b"secret/db"), Err(CryptoError::Open));
        // Two seals of the same bytes differ (fresh nonce).
        assert_ne!(
            k.seal(b"x", b"c").expect("seal"),
            k.seal(b"x", b"c").expect("seal")
        );
        assert!(format!("{k:?}").contains('…'));
    }
}
