//! Secrets and configs: their keys, their rows, and handing them out.
//!
//! - [`keys`]: the key-encryption key (a file in each manager's state dir,
//!   fetched from another manager when missing) and the cluster's data key
//!   (random, stored in the cluster object sealed with the key-encryption
//!   key).
//!
//! Creating, listing and removing them, resolving services' references and
//! the plaintext a node's tasks need are operations: [`crate::ops::secret`].
//!
//! A secret's bytes exist in plaintext only in a manager's memory while it
//! seals or hands them out, in the worker's memory, and in the tmpfs file
//! mounted into the container. Configs take the same path.

pub mod keys;
