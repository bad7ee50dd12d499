//! Transparent huge pages, turned off for the whole process.
//!
//! mimalloc (the allocator of `swarmd` and `swarm-bench`) asks the kernel for
//! transparent huge pages on its arenas and hands freed memory back in small
//! ranges; the next touch of such a range faults in, and zeroes, a whole
//! 2 MiB page. sled copies its pages on every write, so under load that
//! churn became the largest single cost of a Raft write (14% of the CPU in
//! the kernel's `clear_page_erms`). With huge pages off for the process
//! (`prctl(PR_SET_THP_DISABLE)`, which overrides mimalloc's `madvise`),
//! `swarm-bench raft` with 64 clients went from 13.5k to 19.5k writes/s.

/// Turns transparent huge pages off for this process (all its threads).
pub fn turn_off() -> nix::Result<()> {
    nix::sys::prctl::set_thp_disable(true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_process_reports_huge_pages_off() {
        super::turn_off().expect("prctl");
        assert!(nix::sys::prctl::get_thp_disable().expect("prctl"));
    }
}
