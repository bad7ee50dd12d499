//! The two keys behind a manager's state at rest, as Docker Swarm keeps
//! them.
//!
//! - The **data key** (DEK) seals the Raft log and the state rows (the CA
//!   key among them). It is this manager's own, never leaves it, and is
//!   stored only sealed, in `raft.dek` beside the database.
//! - The **key-encryption key** (KEK) seals the data key. Without autolock
//!   it is a random key of this manager kept in `raft.kek` (0600): a copy of
//!   the database alone opens nothing, a copy of the whole state dir does.
//!   With autolock the KEK is the cluster's **unlock key**, which is not
//!   stored on the manager: after a restart the manager cannot read its own
//!   state until an operator gives the key (`swarmctl cluster unlock`).
//!
//! Switching between the two rewrites `raft.dek` only (the data key stays,
//! so nothing in the database is re-encrypted). The order of the writes
//! keeps a crash at any point recoverable: turning autolock on writes the
//! newly sealed data key before removing `raft.kek`; turning it off writes
//! `raft.kek` before the data key sealed with it. A `raft.kek` that does not
//! open `raft.dek` counts as absent (locked).

use std::path::{Path, PathBuf};

use swarmlet_common::private_fs::{write_atomic, PrivateFsError};

use crate::crypto::Key;

const DEK_FILE: &str = "raft.dek";
const KEK_FILE: &str = "raft.kek";
/// What the data key is sealed with (authenticated with it).
const DEK_CONTEXT: &[u8] = b"swarmlet raft data key";
/// How an unlock key is written for people: `SWMKEY-1-<64 hex digits>`.
const UNLOCK_KEY_PREFIX: &str = "SWMKEY-1-";

/// Failures handling the at-rest keys.
#[derive(Debug, thiserror::Error)]
pub enum AtRestError {
    /// A key file could not be written.
    #[error(transparent)]
    Write(#[from] PrivateFsError),
    /// A key file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the kernel said.
        source: std::io::Error,
    },
    /// A key file holds no key.
    #[error("{0}: not a key")]
    Corrupt(PathBuf),
    /// The unlock key given does not open this manager's data key.
    #[error("invalid unlock key: it does not open this manager's state")]
    WrongUnlockKey,
    /// The text is not an unlock key.
    #[error("invalid unlock key: expected SWMKEY-1- followed by 64 hex digits")]
    BadUnlockKey,
    /// The system's random source failed.
    #[error("no randomness to make a key with")]
    Random,
}

/// What the key files say at start-up.
#[derive(Debug)]
pub enum Opened {
    /// The data key, opened with the stored KEK (or made afresh).
    Unlocked {
        /// The data key.
        key: Key,
        /// Whether it was made just now (nothing was sealed before).
        created: bool,
    },
    /// Autolock: the unlock key is needed.
    Locked,
}

/// The key files of one manager, in its state dir.
#[derive(Debug, Clone)]
pub struct KeyFiles {
    dir: PathBuf,
}

impl KeyFiles {
    /// The key files in `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        KeyFiles {
            dir: state_dir.to_path_buf(),
        }
    }

    fn read(&self, name: &str) -> Result<Option<Vec<u8>>, AtRestError> {
        let path = self.dir.join(name);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(AtRestError::Read { path, source }),
        }
    }

    fn sealed_dek(&self) -> Result<Option<Vec<u8>>, AtRestError> {
        self.read(DEK_FILE)
    }

    fn local_kek(&self) -> Result<Option<Key>, AtRestError> {
        match self.read(KEK_FILE)? {
            None => Ok(None),
            Some(b) => Key::from_bytes(&b)
                .map(Some)
                .ok_or_else(|| AtRestError::Corrupt(self.dir.join(KEK_FILE))),
        }
    }

    /// Opens the data key with the stored KEK; makes both keys if this
    /// manager has none yet.
    pub fn open_or_create(&self) -> Result<Opened, AtRestError> {
        let Some(sealed) = self.sealed_dek()? else {
            let key = Key::generate().map_err(|_| AtRestError::Random)?;
            self.seal_with_local_kek(&key)?;
            return Ok(Opened::Unlocked { key, created: true });
        };
        match self.local_kek()? {
            Some(kek) => match kek.open(&sealed, DEK_CONTEXT) {
                Ok(plain) => Key::from_bytes(&plain)
                    .map(|key| Opened::Unlocked {
                        key,
                        created: false,
                    })
                    .ok_or_else(|| AtRestError::Corrupt(self.dir.join(DEK_FILE))),
                // Autolock was being turned on when the manager stopped.
                Err(_) => Ok(Opened::Locked),
            },
            None => Ok(Opened::Locked),
        }
    }

    /// The data key, opened with the operator's unlock key.
    pub fn unlock(&self, unlock_key: &Key) -> Result<Key, AtRestError> {
        let sealed = self
            .sealed_dek()?
            .ok_or_else(|| AtRestError::Corrupt(self.dir.join(DEK_FILE)))?;
        let plain = unlock_key
            .open(&sealed, DEK_CONTEXT)
            .map_err(|_| AtRestError::WrongUnlockKey)?;
        Key::from_bytes(&plain).ok_or_else(|| AtRestError::Corrupt(self.dir.join(DEK_FILE)))
    }

    /// Autolock off: a KEK of this manager's, stored, seals the data key.
    pub fn seal_with_local_kek(&self, dek: &Key) -> Result<(), AtRestError> {
        let kek = match self.local_kek()? {
            Some(k) => k,
            None => {
                let k = Key::generate().map_err(|_| AtRestError::Random)?;
                write_atomic(&self.dir.join(KEK_FILE), k.as_bytes())?;
                k
            }
        };
        let sealed = kek
            .seal(dek.as_bytes(), DEK_CONTEXT)
            .map_err(|_| AtRestError::Random)?;
        write_atomic(&self.dir.join(DEK_FILE), &sealed)?;
        Ok(())
    }

    /// Autolock on: the cluster's unlock key seals the data key, and no KEK
    /// is kept on disk.
    pub fn seal_with_unlock_key(&self, dek: &Key, unlock_key: &Key) -> Result<(), AtRestError> {
        let sealed = unlock_key
            .seal(dek.as_bytes(), DEK_CONTEXT)
            .map_err(|_| AtRestError::Random)?;
        write_atomic(&self.dir.join(DEK_FILE), &sealed)?;
        match std::fs::remove_file(self.dir.join(KEK_FILE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(AtRestError::Read {
                path: self.dir.join(KEK_FILE),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Whether the data key is sealed with `unlock_key` now (autolock
    /// applied) rather than with a stored KEK.
    pub fn sealed_with(&self, unlock_key: &Key) -> bool {
        matches!(self.sealed_dek(), Ok(Some(s)) if unlock_key.open(&s, DEK_CONTEXT).is_ok())
            && matches!(self.local_kek(), Ok(None))
    }

    /// Removes both files (the node stops being a manager, or leaves).
    pub fn remove(&self) {
        for name in [DEK_FILE, KEK_FILE] {
            let _ = std::fs::remove_file(self.dir.join(name));
        }
    }

    /// Whether this manager's state is sealed with a key it does not keep
    /// (autolock): it cannot start until unlocked.
    pub fn is_locked(&self) -> Result<bool, AtRestError> {
        if self.sealed_dek()?.is_none() {
            return Ok(false);
        }
        Ok(matches!(self.open_or_create()?, Opened::Locked))
    }

    /// Whether a KEK is stored (autolock off on this manager).
    pub fn has_local_kek(&self) -> bool {
        matches!(self.local_kek(), Ok(Some(_)))
    }
}

/// The text form of an unlock key.
pub fn format_unlock_key(key: &Key) -> String {
    format!("{UNLOCK_KEY_PREFIX}{}", hex::encode(key.as_bytes()))
}

/// Reads an unlock key as [`format_unlock_key`] writes it.
pub fn parse_unlock_key(text: &str) -> Result<Key, AtRestError> {
    text.trim()
        .strip_prefix(UNLOCK_KEY_PREFIX)
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| Key::from_bytes(&b))
        .ok_or(AtRestError::BadUnlockKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manager_without_autolock_opens_its_own_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = KeyFiles::new(dir.path());
        let Opened::Unlocked { key, created } = files.open_or_create().expect("create") else {
            panic!("a new manager is not locked");
        };
        assert!(created);
        let Opened::Unlocked {
            key: again,
            created,
        } = files.open_or_create().expect("open")
        else {
            panic!("unlocked");
        };
        assert!(!created);
        assert_eq!(key, again);
        // The data key is never on disk in the clear.
        let sealed = std::fs::read(dir.path().join(DEK_FILE)).expect("dek");
        assert!(!sealed.windows(32).any(|w| w == key.as_bytes()));
    }

    #[test]
    fn autolock_needs_the_unlock_key_and_can_be_turned_off() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = KeyFiles::new(dir.path());
        let Opened::Unlocked { key, .. } = files.open_or_create().expect("create") else {
            panic!("unlocked");
        };
        let unlock = Key::generate().expect("unlock key");
        files.seal_with_unlock_key(&key, &unlock).expect("autolock");
        assert!(!dir.path().join(KEK_FILE).exists());
        assert!(files.sealed_with(&unlock));
        assert!(matches!(files.open_or_create(), Ok(Opened::Locked)));
        let wrong = Key::generate().expect("key");
        assert!(matches!(
            files.unlock(&wrong),
            Err(AtRestError::WrongUnlockKey)
        ));
        assert_eq!(files.unlock(&unlock).expect("unlock"), key);
        // Off again: a stored KEK opens it.
        files.seal_with_local_kek(&key).expect("autolock off");
        assert!(matches!(
            files.open_or_create(),
            Ok(Opened::Unlocked { created: false, .. })
        ));
    }

    #[test]
    fn a_crash_while_turning_autolock_on_leaves_it_locked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = KeyFiles::new(dir.path());
        let Opened::Unlocked { key, .. } = files.open_or_create().expect("create") else {
            panic!("unlocked");
        };
        let kek = std::fs::read(dir.path().join(KEK_FILE)).expect("kek");
        let unlock = Key::generate().expect("unlock key");
        files.seal_with_unlock_key(&key, &unlock).expect("autolock");
        // As if the KEK's removal had not happened yet.
        std::fs::write(dir.path().join(KEK_FILE), kek).expect("kek back");
        assert!(matches!(files.open_or_create(), Ok(Opened::Locked)));
        assert_eq!(files.unlock(&unlock).expect("unlock"), key);
    }

    #[test]
    fn unlock_keys_in_text() {
        let k = Key::generate().expect("key");
        let text = format_unlock_key(&k);
        assert!(text.starts_with("SWMKEY-1-") && text.len() == 9 + 64);
        assert_eq!(parse_unlock_key(&format!(" {text}\n")).expect("parse"), k);
        assert!(parse_unlock_key("SWMKEY-1-abc").is_err());
        assert!(parse_unlock_key("hunter2").is_err());
    }
}
