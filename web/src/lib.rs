//! Swarmlet's live cluster view in the browser (`swarmd --web-addr`): one
//! page, its HTML, CSS and JS compiled into the binary (no CDN, no fonts,
//! nothing fetched from elsewhere), updated by server-sent events from the
//! manager's event stream.
//!
//! # Layout
//! - [`view`]: what the page shows, built from the control API's listings
//!   (pure; grouped per node beyond a screenful of tasks).
//! - [`server`]: the routes (page, assets, `/api/view`, `/api/events`) and
//!   the live stream.
//! - [`access`]: loopback, or the cluster's web token.

pub mod access;
pub mod server;
pub mod view;

pub use access::Access;
pub use server::serve;
