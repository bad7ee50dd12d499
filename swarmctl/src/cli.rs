//! Command-line grammar (clap derive), global options usable before or after the subcommand.

use clap::{Parser, Subcommand};

use crate::globals::Globals;

/// Swarmlet command-line client.
#[derive(Parser, Debug)]
#[command(name = "swarmctl", version, about = "Drive a Swarmlet cluster")]
pub struct Cli {
    #[command(flatten)]
    pub globals: Globals,
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Manage the cluster.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Manage nodes.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Manage services.
    #[command(subcommand)]
    Service(crate::service::ServiceCmd),
    /// Inspect tasks.
    #[command(subcommand)]
    Task(crate::task::TaskCmd),
    /// Manage overlay networks.
    #[command(subcommand)]
    Network(crate::network::NetworkCmd),
    /// Run a standalone container on this node, on attachable overlay networks.
    Run(crate::run::RunArgs),
    /// Manage secrets (sealed in the managers, files on tmpfs in tasks).
    #[command(subcommand)]
    Secret(crate::secret::SecretCmd),
    /// Manage configs (files in tasks).
    #[command(subcommand)]
    Config(crate::secret::SecretCmd),
    /// Stream cluster events (node, service, task, network, secret, config).
    Events(crate::events::EventsArgs),
    /// Print the version.
    Version,
    /// Print a shell completion script.
    Completion {
        /// Shell.
        shell: clap_complete::Shell,
    },
}

/// `swarmctl cluster …`
#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Create a new cluster with this node as its first manager.
    Init {
        /// Address other nodes dial, IP[:PORT].
        #[arg(long)]
        advertise_addr: Option<String>,
        /// Address pool overlay networks are cut from.
        #[arg(long)]
        default_addr_pool: Option<String>,
        /// Prefix length of each network cut from the pool.
        #[arg(long)]
        default_addr_pool_mask_len: Option<u32>,
        /// Seal the managers' state with an unlock key that no manager
        /// stores: a restarted manager waits for `cluster unlock`.
        #[arg(long)]
        autolock: bool,
    },
    /// Show the cluster.
    Inspect,
    /// Change cluster settings.
    Update {
        /// Heartbeat period, e.g. 1s or 500ms.
        #[arg(long)]
        heartbeat_period: Option<String>,
        /// Finished tasks kept per slot.
        #[arg(long)]
        task_history_limit: Option<i64>,
        /// Lifetime of node certificates issued from now on, e.g. 2160h.
        #[arg(long)]
        cert_expiry: Option<String>,
        /// Turn autolock on or off (`--autolock=true|false`).
        #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "true|false")]
        autolock: Option<bool>,
    },
    /// Unlock a manager restarted under autolock (the key from stdin or a prompt).
    Unlock,
    /// Show the root CA, or rotate it (every node gets a certificate from a
    /// new root; the old root is retired once all have one).
    Ca {
        /// Rotate to a new root CA.
        #[arg(long)]
        rotate: bool,
        /// Return once the rotation started, without waiting for the nodes.
        #[arg(short, long)]
        detach: bool,
    },
    /// Show (or rotate) the unlock key of an autolocked cluster.
    UnlockKey {
        /// Replace the key; managers re-seal their state with the new one.
        #[arg(long)]
        rotate: bool,
        /// Print only the key.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show (or rotate) the token of the browser view (`swarmd --web-addr`
    /// beyond loopback asks for it).
    WebToken {
        /// Replace the token; the old one stops working.
        #[arg(long)]
        rotate: bool,
        /// Print only the token.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show (or rotate) a join token.
    JoinToken {
        /// `worker` or `manager`.
        role: String,
        /// Replace the token; the old one stops working.
        #[arg(long)]
        rotate: bool,
        /// Print only the token.
        #[arg(short, long)]
        quiet: bool,
    },
}

/// `swarmctl node …`
#[derive(Subcommand, Debug)]
pub enum NodeCmd {
    /// Join this node to a cluster.
    Join {
        /// Join token.
        #[arg(long)]
        token: String,
        /// A manager's address, IP:PORT.
        manager: String,
        /// Address other nodes dial, IP[:PORT].
        #[arg(long)]
        advertise_addr: Option<String>,
    },
    /// Leave the cluster.
    Leave {
        /// Leave even if this node is a manager.
        #[arg(long)]
        force: bool,
    },
    /// List nodes.
    Ls,
    /// Show a node.
    Inspect {
        /// Node ID, ID prefix or hostname.
        node: String,
    },
    /// List tasks on a node (this node by default).
    Ps {
        /// Node ID, ID prefix or hostname.
        node: Option<String>,
    },
    /// Change a node's availability or labels.
    Update {
        /// `active`, `pause` or `drain`.
        #[arg(long)]
        availability: Option<String>,
        /// Add or change a label K=V.
        #[arg(long = "label-add")]
        label_add: Vec<String>,
        /// Remove a label.
        #[arg(long = "label-rm")]
        label_rm: Vec<String>,
        /// Node ID, ID prefix or hostname.
        node: String,
    },
    /// Make nodes managers.
    Promote {
        /// Nodes.
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Make managers workers.
    Demote {
        /// Nodes.
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Remove nodes from the cluster.
    Rm {
        /// Remove even if the node is not down.
        #[arg(short, long)]
        force: bool,
        /// Nodes.
        #[arg(required = true)]
        nodes: Vec<String>,
    },
}

/// Whether option `opt` (`--name` or `-e`) of the subcommand at `path`
/// (e.g. `["service", "create"]`), or a global one, takes a value.
pub fn takes_value(path: &[&str], opt: &str) -> bool {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    cmd.build();
    let mut here = &cmd;
    for name in path {
        match here.find_subcommand(name) {
            Some(sub) => here = sub,
            None => break,
        }
    }
    let matches = |a: &clap::Arg| match opt.strip_prefix("--") {
        Some(long) => a.get_long() == Some(long),
        None => opt.strip_prefix('-').and_then(|s| s.chars().next()) == a.get_short(),
    };
    let takes = here
        .get_arguments()
        .chain(cmd.get_arguments())
        .find(|a| matches(a))
        .is_some_and(|a| a.get_action().takes_values());
    takes
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_grammar_is_consistent() {
        // Every subcommand: no two options share a name or a short flag.
        super::Cli::command().debug_assert();
    }

    #[test]
    fn options_that_take_values_are_known() {
        let create = ["service", "create"];
        assert!(super::takes_value(&create, "--name"));
        assert!(super::takes_value(&create, "-e"));
        assert!(super::takes_value(&create, "--add-host"));
        assert!(super::takes_value(&create, "-H"), "a global option");
        assert!(!super::takes_value(&create, "-d"));
        assert!(!super::takes_value(&create, "--init"));
    }
}
