//! The node's logs service: streams its containers' output to a manager
//! (`swarmctl service logs` goes through the managers). Only a manager may
//! call it: a manager certificate whose node is among the managers the
//! node's last heartbeat named ([`ManagerIds`]), so that a demoted or
//! removed manager's kept certificate reads nothing.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use futures::stream::{self, BoxStream};
use futures::StreamExt;
use swarmlet_common::tls::require_manager;
use swarmlet_proto::logs::node_logs_server::NodeLogs;
use swarmlet_proto::logs::{LogLine, TaskLogsRequest};
use tonic::{Request, Response, Status};

use crate::executor::Executor;

/// The node IDs of the cluster's managers, as the last heartbeat said.
/// Empty until then: nobody may read.
#[derive(Clone, Default, Debug)]
pub struct ManagerIds(Arc<RwLock<HashSet<String>>>);

impl ManagerIds {
    /// Replaces the set.
    pub fn set(&self, ids: impl IntoIterator<Item = String>) {
        if let Ok(mut g) = self.0.write() {
            *g = ids.into_iter().collect();
        }
    }

    /// Whether `node_id` is a manager now.
    pub fn contains(&self, node_id: &str) -> bool {
        self.0.read().is_ok_and(|g| g.contains(node_id))
    }
}

/// Serves [`NodeLogs`] from an executor.
pub struct LogsService<E: Executor> {
    exec: Arc<E>,
    managers: ManagerIds,
}

impl<E: Executor> LogsService<E> {
    /// A service reading from `exec` for the managers in `managers`.
    pub fn new(exec: Arc<E>, managers: ManagerIds) -> Self {
        LogsService { exec, managers }
    }
}

#[tonic::async_trait]
impl<E: Executor> NodeLogs for LogsService<E> {
    type TaskLogsStream = BoxStream<'static, Result<LogLine, Status>>;

    async fn task_logs(
        &self,
        request: Request<TaskLogsRequest>,
    ) -> Result<Response<Self::TaskLogsStream>, Status> {
        let caller =
            require_manager(&request).map_err(|e| Status::permission_denied(e.to_string()))?;
        if !self.managers.contains(&caller.node_id) {
            return Err(Status::permission_denied(format!(
                "node {} is not a manager of this cluster now",
                caller.node_id
            )));
        }
        let req = request.into_inner();
        let streams = req
            .container_ids
            .iter()
            .map(|id| container_log_lines(self.exec.as_ref(), id, req.follow, req.tail));
        Ok(Response::new(stream::select_all(streams).boxed()))
    }
}

/// One container's output as [`LogLine`]s (the last `tail` lines, negative:
/// all; then new output while `follow`), for the managers and for
/// `swarmctl run`.
pub fn container_log_lines<E: Executor>(
    exec: &E,
    container_id: &str,
    follow: bool,
    tail: i64,
) -> BoxStream<'static, Result<LogLine, Status>> {
    let container = container_id.to_string();
    exec.logs(container_id, follow, tail)
        .map(move |chunk| match chunk {
            Ok((stderr, data)) => Ok(LogLine {
                container_id: container.clone(),
                data,
                stderr,
                source: String::new(),
                unreadable: false,
            }),
            Err(e) => Err(Status::unavailable(e.to_string())),
        })
        .boxed()
}
