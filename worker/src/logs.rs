//! The node's logs service: streams its containers' output to a manager
//! (`swarmctl service logs` goes through the managers). Only a manager's
//! certificate may call it.

use std::sync::Arc;

use futures::stream::{self, BoxStream};
use futures::StreamExt;
use swarmlet_common::tls::require_manager;
use swarmlet_proto::logs::node_logs_server::NodeLogs;
use swarmlet_proto::logs::{LogLine, TaskLogsRequest};
use tonic::{Request, Response, Status};

use crate::executor::Executor;

/// Serves [`NodeLogs`] from an executor.
pub struct LogsService<E: Executor> {
    exec: Arc<E>,
}

impl<E: Executor> LogsService<E> {
    /// A service reading from `exec`.
    pub fn new(exec: Arc<E>) -> Self {
        LogsService { exec }
    }
}

#[tonic::async_trait]
impl<E: Executor> NodeLogs for LogsService<E> {
    type TaskLogsStream = BoxStream<'static, Result<LogLine, Status>>;

    async fn task_logs(
        &self,
        request: Request<TaskLogsRequest>,
    ) -> Result<Response<Self::TaskLogsStream>, Status> {
        require_manager(&request).map_err(|e| Status::permission_denied(e.to_string()))?;
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
