//! `swarmctl run`: a standalone container on the node whose control socket
//! is given (`-H`), attached to attachable overlay networks, as `docker run
//! --network <attachable overlay>` in Swarm mode. With `-d` it prints the
//! container ID; without, it streams the container's output until it exits
//! and exits with its code.

use std::io::Write;

use anyhow::bail;
use swarmlet_common::grpc::WithLimits;
use swarmlet_common::task_state::is_terminal;
use swarmlet_proto::local::local_client::LocalClient;
use swarmlet_proto::local::{RunRef, RunRequest};
use swarmlet_proto::objects::TaskState;

use crate::globals::Globals;
use crate::output::{connect, status};

/// `swarmctl run` arguments.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Print the container ID and return at once.
    #[arg(short, long)]
    pub detach: bool,
    /// Container name (default: run-<task id>).
    #[arg(long)]
    pub name: Option<String>,
    /// Attachable overlay network to join (repeatable).
    #[arg(long = "network", value_name = "NETWORK")]
    pub networks: Vec<String>,
    /// Image to run.
    pub image: String,
    /// Command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Runs `swarmctl run`.
pub async fn run(cli: &Globals, args: &RunArgs) -> anyhow::Result<()> {
    let mut client = LocalClient::new(connect(&cli.host)?).with_limits();
    let started = client
        .run(RunRequest {
            name: args.name.clone().unwrap_or_default(),
            image: args.image.clone(),
            command: args.command.clone(),
            args: Vec::new(),
            networks: args.networks.clone(),
        })
        .await
        .map_err(status)?
        .into_inner();
    if args.detach {
        println!("{}", started.container_id);
        return Ok(());
    }
    let task = RunRef {
        task_id: started.task_id.clone(),
    };
    let mut lines = client
        .run_logs(task.clone())
        .await
        .map_err(status)?
        .into_inner();
    while let Some(line) = lines.message().await.map_err(status)? {
        if line.stderr {
            std::io::stderr().write_all(&line.data)?;
        } else {
            std::io::stdout().write_all(&line.data)?;
        }
    }
    // The output ends with the container; its status follows shortly.
    for _ in 0..100 {
        let st = client
            .run_status(task.clone())
            .await
            .map_err(status)?
            .into_inner();
        if is_terminal(st.state()) {
            if st.exit_code != 0 {
                std::process::exit(st.exit_code);
            }
            if st.state() != TaskState::Complete {
                bail!(
                    "{}",
                    if st.err.is_empty() {
                        st.message
                    } else {
                        st.err
                    }
                );
            }
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Ok(())
}
