//! `swarmctl secret|config create|ls|inspect|rm`: one module for both
//! kinds (the API's `config` flag picks). The bytes go in once, from a file
//! or stdin, and are never printed.

use std::io::Read;

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;
use swarmlet_common::grpc::WithLimits;
use swarmlet_proto::control::control_client::ControlClient;
use swarmlet_proto::control::{CreateSecretRequest, ListSecretsRequest, SecretInfo, SecretRef};

use crate::globals::{Format, Globals};
use crate::output::{connect, json as print_json, status, table, time};

/// `swarmctl secret …` / `swarmctl config …`
#[derive(Subcommand, Debug)]
pub enum SecretCmd {
    /// Create one from a file, or from stdin with `-`.
    Create {
        /// Label K=V.
        #[arg(long = "label")]
        label: Vec<String>,
        /// Name.
        name: String,
        /// File with the content, or `-` for stdin.
        file: String,
    },
    /// List them.
    Ls,
    /// Show one (never its content).
    Inspect {
        /// Name or ID.
        name: String,
    },
    /// Remove them (refused while a service uses one).
    Rm {
        /// Names or IDs.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

fn info_json(i: &SecretInfo) -> serde_json::Value {
    json!({
        "id": i.id,
        "name": i.name,
        "labels": i.labels,
        "size": i.size,
        "created_at": time(i.created_at_ms),
        "updated_at": time(i.updated_at_ms),
        "services": i.services,
    })
}

fn read_content(file: &str) -> anyhow::Result<Vec<u8>> {
    let mut data = Vec::new();
    if file == "-" {
        std::io::stdin()
            .read_to_end(&mut data)
            .context("reading stdin")?;
    } else {
        data = std::fs::read(file).with_context(|| format!("cannot read {file}"))?;
    }
    Ok(data)
}

/// Runs a `secret` (`config == false`) or `config` subcommand.
pub async fn run(cli: &Globals, cmd: &SecretCmd, config: bool) -> anyhow::Result<()> {
    let mut client = ControlClient::new(connect(&cli.host)?).with_limits();
    match cmd {
        SecretCmd::Create { label, name, file } => {
            let labels = crate::kv::pairs(label, "label")?.into_iter().collect();
            let data = read_content(file)?;
            let info = client
                .create_secret(CreateSecretRequest {
                    config,
                    name: name.clone(),
                    data,
                    labels,
                })
                .await
                .map_err(status)?
                .into_inner();
            println!("{}", info.id);
        }
        SecretCmd::Ls => {
            let list = client
                .list_secrets(ListSecretsRequest { config })
                .await
                .map_err(status)?
                .into_inner()
                .secrets;
            if cli.format == Format::Json {
                print_json(&serde_json::Value::Array(
                    list.iter().map(info_json).collect(),
                ));
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|i| {
                        vec![
                            i.id.clone(),
                            i.name.clone(),
                            i.size.to_string(),
                            time(i.created_at_ms),
                        ]
                    })
                    .collect();
                table(&["ID", "NAME", "SIZE", "CREATED"], &rows);
            }
        }
        SecretCmd::Inspect { name } => {
            let info = client
                .inspect_secret(SecretRef {
                    config,
                    secret: name.clone(),
                })
                .await
                .map_err(status)?
                .into_inner();
            println!("{}", serde_json::to_string_pretty(&info_json(&info))?);
        }
        SecretCmd::Rm { names } => {
            for name in names {
                client
                    .remove_secret(SecretRef {
                        config,
                        secret: name.clone(),
                    })
                    .await
                    .map_err(status)?;
                println!("{name}");
            }
        }
    }
    Ok(())
}
