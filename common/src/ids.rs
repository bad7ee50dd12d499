//! Identifiers: 25-character base-36 object IDs (as Docker Swarm prints them)
//! and non-zero 64-bit Raft member IDs.

use rand::Rng;

const BASE36: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A random string of `len` base-36 characters.
pub fn random_base36(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| char::from(BASE36[rng.gen_range(0..BASE36.len())]))
        .collect()
}

/// A new object ID (nodes, clusters, and later services and tasks).
pub fn new_id() -> String {
    random_base36(25)
}

/// A new Raft member ID; never 0, which raft-rs reserves for "none".
pub fn new_raft_id() -> u64 {
    let mut rng = rand::thread_rng();
    loop {
        let id: u64 = rng.gen();
        if id != 0 {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_base36_and_distinct() {
        let a = new_id();
        let b = new_id();
        assert_eq!(a.len(), 25);
        assert!(a.bytes().all(|c| BASE36.contains(&c)));
        assert_ne!(a, b);
        assert_ne!(new_raft_id(), 0);
    }
}
