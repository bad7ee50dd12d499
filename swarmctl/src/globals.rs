//! The options every command takes, before or after the subcommand: which
//! daemon to talk to and how to print. Commands get these, not the whole
//! command line.

use clap::{Args, ValueEnum};

/// Output format of `ls`, `ps` and `inspect`.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// Human-readable table.
    Table,
    /// One JSON array (ls/ps) or object (inspect).
    Json,
}

/// Options global to every command.
#[derive(Args, Debug, Clone)]
pub struct Globals {
    /// Daemon to talk to.
    #[arg(
        short = 'H',
        long = "host",
        global = true,
        env = "SWARMCTL_HOST",
        default_value = "unix:///run/swarmd/swarmd.sock"
    )]
    pub host: String,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}
