//! Errors as Docker answers them: a status code the CLI branches on and a
//! body `{"message": "…"}` with `Content-Type: application/json`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// An error answer of the Engine API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The one line the client prints.
    pub message: String,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 400: the request is invalid.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: no such object.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 503: this node cannot answer (not a manager, no leader).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// 500: a fault of this daemon.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

/// A control API status becomes the status Docker gives for the same
/// condition: not found 404, name taken or port held 409, invalid 400, a
/// node that cannot answer 503.
impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> Self {
        use tonic::Code;
        let message = s.message().to_string();
        let status = match s.code() {
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
            Code::InvalidArgument | Code::OutOfRange | Code::ResourceExhausted => {
                StatusCode::BAD_REQUEST
            }
            Code::PermissionDenied | Code::Unauthenticated => StatusCode::FORBIDDEN,
            // "this node is not a swarm manager" is Docker's 503.
            Code::FailedPrecondition if message.contains("not a swarm manager") => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Code::FailedPrecondition => StatusCode::BAD_REQUEST,
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError { status, message }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "message": self.message }).to_string();
        let mut r = (self.status, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    }
}

/// What a handler returns.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_docker() {
        let cases = [
            (tonic::Status::not_found("service x not found"), 404),
            (
                tonic::Status::already_exists("a service named x already exists"),
                409,
            ),
            (tonic::Status::invalid_argument("bad"), 400),
            (
                tonic::Status::failed_precondition(
                    "this node is not a swarm manager: run this command on a manager node",
                ),
                503,
            ),
            (tonic::Status::unavailable("no leader"), 503),
            (tonic::Status::internal("disk"), 500),
        ];
        for (status, code) in cases {
            assert_eq!(ApiError::from(status).status.as_u16(), code);
        }
    }

    #[tokio::test]
    async fn body_is_a_json_message() {
        let r = ApiError::not_found("no such service: x").into_response();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    }
}
