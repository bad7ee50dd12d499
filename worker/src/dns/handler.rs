//! Answering one container's queries: cluster names from [`Records`],
//! scoped to the container's networks; everything else forwarded upstream.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use hickory_proto::op::{Header, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};

use super::records::{Records, Resolution};
use super::upstream;

/// TTL of cluster answers: short, so that answers follow tasks.
pub const CLUSTER_TTL: u32 = 2;

/// The resolver of one container.
pub struct ContainerResolver {
    /// The networks the container is attached to (the scope of its names).
    pub networks: Vec<String>,
    /// The node's cluster names.
    pub records: Arc<RwLock<Records>>,
    /// Where other names go.
    pub upstreams: Arc<Vec<SocketAddr>>,
}

impl ContainerResolver {
    fn resolve(&self, name: &str) -> Resolution {
        match self.records.read() {
            Ok(r) => r.resolve(&self.networks, name),
            Err(_) => Resolution::Upstream,
        }
    }
}

async fn send_error<R: ResponseHandler>(
    request: &Request,
    mut response: R,
    code: ResponseCode,
) -> ResponseInfo {
    let builder = MessageResponseBuilder::from_message_request(request);
    let msg = builder.error_msg(request.header(), code);
    match response.send_response(msg).await {
        Ok(info) => info,
        Err(_) => {
            let mut h = Header::response_from_request(request.header());
            h.set_response_code(ResponseCode::ServFail);
            h.into()
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for ContainerResolver {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let Ok(info) = request.request_info() else {
            return send_error(request, response, ResponseCode::FormErr).await;
        };
        let query = info.query.original().clone();
        let mut header = Header::response_from_request(request.header());
        header.set_recursion_available(true);
        let builder = MessageResponseBuilder::from_message_request(request);
        let sent = match self.resolve(&query.name().to_ascii()) {
            Resolution::Cluster(ips) => {
                header.set_authoritative(true);
                let answers: Vec<Record> = if query.query_type() == RecordType::A {
                    ips.iter()
                        .map(|ip| {
                            Record::from_rdata(query.name().clone(), CLUSTER_TTL, RData::A(A(*ip)))
                        })
                        .collect()
                } else {
                    // A cluster name has no other records (NODATA, at once).
                    Vec::new()
                };
                let msg = builder.build(header, answers.iter(), None, None, None);
                response.send_response(msg).await
            }
            Resolution::NoSuchName => {
                header.set_authoritative(true);
                header.set_response_code(ResponseCode::NXDomain);
                let msg = builder.build(header, None, None, None, None);
                response.send_response(msg).await
            }
            Resolution::Upstream => {
                let mut q = Query::query(query.name().clone(), query.query_type());
                q.set_query_class(query.query_class());
                match upstream::forward(&self.upstreams, q).await {
                    Some(answer) => {
                        header.set_response_code(answer.response_code());
                        let msg = builder.build(
                            header,
                            answer.answers().iter(),
                            answer.name_servers().iter(),
                            None,
                            answer.additionals().iter(),
                        );
                        response.send_response(msg).await
                    }
                    None => return send_error(request, response, ResponseCode::ServFail).await,
                }
            }
        };
        match sent {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "sending a DNS answer");
                let mut h = Header::response_from_request(request.header());
                h.set_response_code(ResponseCode::ServFail);
                h.into()
            }
        }
    }
}
