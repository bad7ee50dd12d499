//! `swarmctl`: the Swarmlet command-line client. Parses the command line and
//! calls the daemon's control socket; each command lives in its own module.
//!
//! # Layout
//! - `cli`: the grammar (clap derive); `globals`: the options every command
//!   takes (daemon address, output format), all a command gets of them.
//! - One module per command group: `cluster`, `node`, `service` (with
//!   `service_spec`: flags → spec, `container_args`: the container options,
//!   `progress`: convergence bars), `task`,
//!   `network`, `run`, `secret` (also configs), `events`.
//! - `output`: tables, JSON and one-line errors; `kv`: `KEY=VALUE` parsing.

mod cli;
mod cluster;
mod container_args;
mod events;
mod globals;
mod kv;
mod network;
mod node;
mod output;
mod progress;
mod run;
mod secret;
mod service;
mod service_spec;
mod task;

use clap::{CommandFactory, Parser};

use cli::{Cli, Command};

#[tokio::main]
async fn main() {
    let args = container_args::rewrite_host_entries(std::env::args_os().collect(), |opt| {
        cli::takes_value(&["service", "create"], opt)
    });
    let cli = Cli::parse_from(args);
    let g = &cli.globals;
    let result = match &cli.command {
        Command::Cluster(c) => cluster::run(g, c).await,
        Command::Node(c) => node::run(g, c).await,
        Command::Service(c) => service::run(g, c).await,
        Command::Task(c) => task::run(g, c).await,
        Command::Network(c) => network::run(g, c).await,
        Command::Run(a) => run::run(g, a).await,
        Command::Events(a) => events::run(g, a).await,
        Command::Secret(c) => secret::run(g, c, false).await,
        Command::Config(c) => secret::run(g, c, true).await,
        Command::Version => {
            println!("swarmctl {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Completion { shell } => print_completion(*shell),
    };
    if let Err(e) = result {
        eprintln!("Error: {}", output::one_line(&format!("{e:#}")));
        std::process::exit(1);
    }
}

/// Writes the completion script for `shell` to stdout. Generated into a
/// buffer first: clap_complete panics on a write error, and a reader that
/// stops early (`| head`) is not an error.
fn print_completion(shell: clap_complete::Shell) -> anyhow::Result<()> {
    use std::io::Write;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "swarmctl", &mut script);
    match std::io::stdout().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
