//! The routes of the Engine API subset, one file per resource. Handlers
//! parse Docker's request, call the [`Backend`] (the control API's
//! operations) and render Docker's answer with [`crate::convert`].

mod logs;
mod networks;
mod nodes;
mod secrets;
mod services;
mod system;
mod tasks;

use std::collections::HashMap;

use axum::body::Bytes;
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;

use crate::backend::Backend;
use crate::error::{ApiError, ApiResult};

/// Query parameters, as given.
pub(crate) type Query = axum::extract::Query<HashMap<String, String>>;

/// All routes (without the `/vX.Y` prefix, which [`crate::version`] strips).
pub fn router(backend: Backend) -> Router {
    Router::new()
        .route("/_ping", get(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/swarm", get(system::swarm))
        .route("/distribution/{*image}", get(system::distribution))
        .route("/nodes", get(nodes::list))
        .route("/nodes/{id}", get(nodes::inspect).delete(nodes::remove))
        .route("/nodes/{id}/update", post(nodes::update))
        .route("/services", get(services::list))
        .route("/services/create", post(services::create))
        .route(
            "/services/{id}",
            get(services::inspect).delete(services::remove),
        )
        .route("/services/{id}/update", post(services::update))
        .route("/services/{id}/logs", get(logs::service))
        .route("/tasks", get(tasks::list))
        .route("/tasks/{id}", get(tasks::inspect))
        .route("/tasks/{id}/logs", get(logs::task))
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route(
            "/networks/{id}",
            get(networks::inspect).delete(networks::remove),
        )
        .route("/secrets", get(secrets::list_secrets))
        .route("/secrets/create", post(secrets::create_secret))
        .route(
            "/secrets/{id}",
            get(secrets::inspect_secret).delete(secrets::remove_secret),
        )
        .route("/secrets/{id}/update", post(secrets::update))
        .route("/configs", get(secrets::list_configs))
        .route("/configs/create", post(secrets::create_config))
        .route(
            "/configs/{id}",
            get(secrets::inspect_config).delete(secrets::remove_config),
        )
        .route("/configs/{id}/update", post(secrets::update))
        .fallback(not_found)
        .with_state(backend)
}

/// What Docker answers for a path it does not serve.
async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "page not found: {} is not part of Swarmlet's Engine API subset",
        uri.path()
    ))
}

/// A JSON request body, or Docker's 400.
pub(crate) fn json_body(body: &Bytes) -> ApiResult<Value> {
    if body.is_empty() {
        return Err(ApiError::bad_request("request body is empty"));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

/// A boolean query parameter as Docker reads one (`1`, `true`, …).
pub(crate) fn flag(q: &HashMap<String, String>, name: &str) -> bool {
    q.get(name)
        .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "True" | "TRUE"))
}

/// The `Labels` object of a request (values that are not strings read as
/// empty).
pub(crate) fn labels_of(req: &Value) -> HashMap<String, String> {
    req.get("Labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}
