//! `swarmctl task ls|inspect`, and the task table shared with `service ps`.

use serde_json::json;
use swarmlet_common::grpc::WithLimits;
use swarmlet_common::task_name::task_name;
use swarmlet_common::task_state::state_name;
use swarmlet_proto::control::control_client::ControlClient;
use swarmlet_proto::control::{ListTasksRequest, TaskInfo, TaskRef};
use swarmlet_proto::objects::TaskState;

use clap::Subcommand;

use crate::globals::{Format, Globals};
use crate::output::{connect, json as print_json, state_since, status, table, time};

/// `swarmctl task …`
#[derive(Subcommand, Debug)]
pub enum TaskCmd {
    /// List tasks.
    Ls {
        /// Only tasks of this service.
        #[arg(long)]
        service: Option<String>,
        /// Only tasks on this node.
        #[arg(long)]
        node: Option<String>,
    },
    /// Show a task.
    Inspect {
        /// Task ID, ID prefix, or SERVICE.SLOT.
        task: String,
    },
}

fn name(i: &TaskInfo) -> String {
    i.task.as_ref().map(task_name).unwrap_or_default()
}

fn state_of(v: i32) -> &'static str {
    TaskState::try_from(v).map(state_name).unwrap_or("unknown")
}

/// One task as `service ps --format json` prints it.
pub fn task_row_json(i: &TaskInfo) -> serde_json::Value {
    let t = i.task.clone().unwrap_or_default();
    let st = t.status.clone().unwrap_or_default();
    json!({
        "id": t.id,
        "name": name(i),
        "service": t.service_name,
        "slot": t.slot,
        "node": i.node_hostname,
        "node_id": t.node_id,
        "desired_state": state_of(t.desired_state),
        "current_state": state_of(st.state),
        "error": st.err,
        "container_id": st.container_id,
        // Where the container runs, for `nsenter --target PID` or
        // `nsenter --net=SANDBOX` (set while it runs).
        "pid": (st.pid > 0).then_some(st.pid),
        "sandbox": (!st.sandbox.is_empty()).then_some(st.sandbox.clone()),
        "addresses": t.networks.iter().map(|a| json!({
            "network": a.network_name,
            "ip": a.address.split('/').next().unwrap_or(""),
        })).collect::<Vec<_>>(),
    })
}

/// Prints tasks as `ps`/`ls` do: one JSON array, or a table.
pub fn print_task_list(format: Format, tasks: &[TaskInfo]) {
    if format == Format::Json {
        print_json(&serde_json::Value::Array(
            tasks.iter().map(task_row_json).collect(),
        ));
    } else {
        print_tasks(tasks);
    }
}

/// Prints tasks as a table.
fn print_tasks(tasks: &[TaskInfo]) {
    let now = swarmlet_common::clock::now_ms();
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|i| {
            let t = i.task.clone().unwrap_or_default();
            let st = t.status.clone().unwrap_or_default();
            vec![
                t.id.clone(),
                name(i),
                t.spec.map(|s| s.image).unwrap_or_default(),
                i.node_hostname.clone(),
                state_of(t.desired_state).to_string(),
                state_since(state_of(st.state), st.timestamp_ms, now),
                st.err,
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "NAME",
            "IMAGE",
            "NODE",
            "DESIRED STATE",
            "CURRENT STATE",
            "ERROR",
        ],
        &rows,
    );
}

/// Runs a `task` subcommand.
pub async fn run(cli: &Globals, cmd: &TaskCmd) -> anyhow::Result<()> {
    let mut client = ControlClient::new(connect(&cli.host)?).with_limits();
    match cmd {
        TaskCmd::Ls { service, node } => {
            let tasks = client
                .list_tasks(ListTasksRequest {
                    service: service.clone().unwrap_or_default(),
                    node: node.clone().unwrap_or_default(),
                })
                .await
                .map_err(status)?
                .into_inner()
                .tasks;
            print_task_list(cli.format, &tasks);
        }
        TaskCmd::Inspect { task } => {
            let i = client
                .inspect_task(TaskRef { task: task.clone() })
                .await
                .map_err(status)?
                .into_inner();
            let mut v = task_row_json(&i);
            let t = i.task.clone().unwrap_or_default();
            let st = t.status.unwrap_or_default();
            v["message"] = json!(st.message);
            v["exit_code"] = json!(st.exit_code);
            v["updated_at"] = json!(time(st.timestamp_ms));
            v["created_at"] = json!(time(t.created_at_ms));
            v["service_id"] = json!(t.service_id);
            v["image"] = json!(t.spec.map(|s| s.image).unwrap_or_default());
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
    }
    Ok(())
}
