//! `swarmctl network create|ls|inspect|rm`.

use clap::Subcommand;
use serde_json::json;
use swarmlet_common::grpc::WithLimits;
use swarmlet_proto::common::Empty;
use swarmlet_proto::control::control_client::ControlClient;
use swarmlet_proto::control::NetworkRef;
use swarmlet_proto::objects::{Network, NetworkSpec};

use crate::globals::{Format, Globals};
use crate::output::{connect, json as print_json, status, table, time};

/// `swarmctl network …`
#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    /// Create an overlay network.
    Create {
        /// Driver (only overlay).
        #[arg(long, short = 'd', default_value = "overlay")]
        driver: String,
        /// Let standalone containers (`swarmctl run`) attach.
        #[arg(long)]
        attachable: bool,
        /// Subnet in CIDR form; default: the next free one of the cluster's pool.
        #[arg(long)]
        subnet: Option<String>,
        /// Gateway address; default: the subnet's first address.
        #[arg(long)]
        gateway: Option<String>,
        /// Network label K=V.
        #[arg(long = "label")]
        label: Vec<String>,
        /// Network name.
        name: String,
    },
    /// List networks.
    Ls,
    /// Show a network.
    Inspect {
        /// Network name or ID.
        network: String,
    },
    /// Remove networks.
    Rm {
        /// Networks.
        #[arg(required = true)]
        networks: Vec<String>,
    },
}

fn network_json(n: &Network) -> serde_json::Value {
    let spec = n.spec.clone().unwrap_or_default();
    json!({
        "id": n.id,
        "name": spec.name,
        "driver": spec.driver,
        "scope": "swarm",
        "attachable": spec.attachable,
        "ingress": spec.ingress,
        "subnet": n.subnet,
        "gateway": n.gateway,
        "vni": n.vni,
    })
}

/// Runs a `network` subcommand.
pub async fn run(cli: &Globals, cmd: &NetworkCmd) -> anyhow::Result<()> {
    let mut client = ControlClient::new(connect(&cli.host)?).with_limits();
    match cmd {
        NetworkCmd::Create {
            driver,
            attachable,
            subnet,
            gateway,
            label,
            name,
        } => {
            let labels = crate::kv::pairs(label, "label")?.into_iter().collect();
            let n = client
                .create_network(NetworkSpec {
                    name: name.clone(),
                    driver: driver.clone(),
                    attachable: *attachable,
                    subnet: subnet.clone().unwrap_or_default(),
                    gateway: gateway.clone().unwrap_or_default(),
                    labels,
                    ingress: false,
                })
                .await
                .map_err(status)?
                .into_inner();
            println!("{}", n.id);
        }
        NetworkCmd::Ls => {
            let list = client
                .list_networks(Empty {})
                .await
                .map_err(status)?
                .into_inner()
                .networks;
            if cli.format == Format::Json {
                print_json(&serde_json::Value::Array(
                    list.iter().map(network_json).collect(),
                ));
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|n| {
                        let spec = n.spec.clone().unwrap_or_default();
                        vec![
                            n.id.clone(),
                            spec.name,
                            spec.driver,
                            "swarm".into(),
                            n.subnet.clone(),
                            n.vni.to_string(),
                        ]
                    })
                    .collect();
                table(&["ID", "NAME", "DRIVER", "SCOPE", "SUBNET", "VNI"], &rows);
            }
        }
        NetworkCmd::Inspect { network } => {
            let n = client
                .inspect_network(NetworkRef {
                    network: network.clone(),
                })
                .await
                .map_err(status)?
                .into_inner();
            let mut v = network_json(&n);
            v["labels"] = json!(n.spec.clone().unwrap_or_default().labels);
            v["created_at"] = json!(time(n.created_at_ms));
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        NetworkCmd::Rm { networks } => {
            for network in networks {
                client
                    .remove_network(NetworkRef {
                        network: network.clone(),
                    })
                    .await
                    .map_err(status)?;
                println!("{network}");
            }
        }
    }
    Ok(())
}
