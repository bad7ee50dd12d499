//! `/services`: list (filters `id`, `name`, `label`, `mode`; `status=true`
//! adds `ServiceStatus`), create, inspect (`insertDefaults`), update
//! (`version`, `rollback=previous`) and remove.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};
use swarmlet_proto::control::{ServiceInfo, UpdateServiceRequest};
use swarmlet_proto::objects::{FailureAction, RestartPolicy, ServiceSpec, UpdateConfig};

use super::{flag, json_body, Query};
use crate::backend::Backend;
use crate::convert::{objects, spec};
use crate::error::{ApiError, ApiResult};
use crate::filters::Filters;

fn mode_name(spec: &ServiceSpec) -> &'static str {
    swarmlet_common::names::mode_name(spec.mode())
}

/// `GET /services`.
pub async fn list(State(b): State<Backend>, q: Query) -> ApiResult<Json<Vec<Value>>> {
    let f = Filters::parse(
        q.get("filters").map(String::as_str),
        &["id", "name", "label", "mode"],
    )?;
    let status = flag(&q, "status");
    let services = b.services().await?;
    let networks = b.networks().await?;
    Ok(Json(
        services
            .iter()
            .filter(|s| {
                let spec = s.spec.clone().unwrap_or_default();
                f.accepts_prefix("id", &s.id)
                    && f.accepts_prefix("name", &spec.name)
                    && f.accepts("mode", mode_name(&spec))
                    && f.accepts_labels(&spec.labels)
            })
            .map(|s| objects::service(s, &networks, status))
            .collect(),
    ))
}

/// Docker's defaults, filled in for `insertDefaults=true`.
fn with_defaults(mut info: ServiceInfo) -> ServiceInfo {
    if let Some(spec) = info.spec.as_mut() {
        let defaults = UpdateConfig {
            parallelism: 1,
            monitor_ms: 5_000,
            ..Default::default()
        };
        let mut update = defaults;
        update.set_failure_action(FailureAction::Pause);
        spec.update.get_or_insert(update);
        spec.rollback.get_or_insert(update);
        spec.restart.get_or_insert(RestartPolicy {
            delay_ms: 5_000,
            ..Default::default()
        });
        if spec.stop_grace_period_ms == 0 {
            spec.stop_grace_period_ms = 10_000;
        }
    }
    info
}

/// `GET /services/{id}`.
pub async fn inspect(
    State(b): State<Backend>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Json<Value>> {
    let mut info = b.service(&id).await?;
    if flag(&q, "insertDefaults") {
        info = with_defaults(info);
    }
    let networks = b.networks().await?;
    Ok(Json(objects::service(&info, &networks, false)))
}

/// A warning for registry credentials, which Swarmlet does not pass on
/// (nodes pull with their engine's own credentials, if they pull at all).
fn auth_warning(headers: &HeaderMap) -> Option<String> {
    use base64::Engine;
    let raw = headers.get("X-Registry-Auth")?.to_str().ok()?;
    let decoded = base64::engine::general_purpose::URL_SAFE
        .decode(raw.trim_end_matches('='))
        .or_else(|_| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw.trim_end_matches('='))
        })
        .ok()?;
    let v: Value = serde_json::from_slice(&decoded).ok()?;
    let has_credentials = [
        "username",
        "password",
        "auth",
        "identitytoken",
        "registrytoken",
    ]
    .iter()
    .any(|k| {
        v.get(*k)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    });
    has_credentials.then(|| {
        "registry credentials (X-Registry-Auth) are not passed on to the nodes by Swarmlet and were ignored".to_string()
    })
}

/// A random Docker-style name for a service created without one.
fn random_name() -> String {
    use rand::seq::SliceRandom;
    const LEFT: &[&str] = &[
        "brave", "calm", "eager", "fervent", "gentle", "happy", "keen", "lucid", "modest", "nifty",
        "quirky", "serene", "sharp", "tender", "vibrant", "zealous",
    ];
    const RIGHT: &[&str] = &[
        "babbage", "curie", "darwin", "euclid", "feynman", "galileo", "hopper", "kepler",
        "lovelace", "newton", "noether", "pascal", "ritchie", "turing", "wozniak", "yalow",
    ];
    let mut rng = rand::thread_rng();
    format!(
        "{}_{}",
        LEFT.choose(&mut rng).unwrap_or(&"calm"),
        RIGHT.choose(&mut rng).unwrap_or(&"turing")
    )
}

/// `POST /services/create`: 201 with the new ID and the warnings.
pub async fn create(
    State(b): State<Backend>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let raw = json_body(&body)?;
    let networks = b.networks().await?;
    let mut converted = spec::from_docker(&raw, &networks)?;
    if converted.spec.name.is_empty() {
        converted.spec.name = random_name();
    }
    converted.warnings.extend(auth_warning(&headers));
    let info = b.create_service(converted.spec).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"ID": info.id, "Warnings": warnings(converted.warnings)})),
    ))
}

fn warnings(w: Vec<String>) -> Value {
    if w.is_empty() {
        Value::Null
    } else {
        json!(w)
    }
}

/// `POST /services/{id}/update?version=N[&rollback=previous]` with the
/// whole new spec.
pub async fn update(
    State(b): State<Backend>,
    Path(id): Path<String>,
    q: Query,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let expect = match q.get("version") {
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request(format!("invalid version {v:?}")))?,
        None => return Err(ApiError::bad_request("the version parameter is required")),
    };
    let current = b.service(&id).await?;
    let mut warnings_out = Vec::new();
    let request = match q.get("rollback").map(String::as_str) {
        Some("previous") => UpdateServiceRequest {
            service: current.id.clone(),
            spec: None,
            expect_spec_version: expect,
            rollback: true,
        },
        Some("") | None => {
            let raw = json_body(&body)?;
            let networks = b.networks().await?;
            let mut converted = spec::from_docker(&raw, &networks)?;
            if converted.spec.name.is_empty() {
                converted.spec.name = current
                    .spec
                    .as_ref()
                    .map(|s| s.name.clone())
                    .unwrap_or_default();
            }
            warnings_out = converted.warnings;
            UpdateServiceRequest {
                service: current.id.clone(),
                spec: Some(converted.spec),
                expect_spec_version: expect,
                rollback: false,
            }
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid rollback parameter {other:?}: expected previous"
            )))
        }
    };
    warnings_out.extend(auth_warning(&headers));
    b.update_service(request).await.map_err(|e| {
        if e.status == StatusCode::CONFLICT && e.message.contains("changed since it was read") {
            ApiError::new(
                StatusCode::CONFLICT,
                "update out of sequence: the service changed since it was read; retry",
            )
        } else {
            e
        }
    })?;
    Ok(Json(json!({"Warnings": warnings(warnings_out)})))
}

/// `DELETE /services/{id}`.
pub async fn remove(State(b): State<Backend>, Path(id): Path<String>) -> ApiResult<()> {
    b.remove_service(&id).await
}
