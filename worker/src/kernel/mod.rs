//! The kernel helpers the data plane shares (the overlay, the routing mesh
//! and the embedded DNS): network namespaces ([`netns`]) and nftables
//! transactions ([`nft`]), with the one error they fail with.

pub mod netns;
pub mod nft;

/// A kernel or system call failed (the message says which and why).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub enum KernelError {
    /// What failed, and why.
    System(String),
}
