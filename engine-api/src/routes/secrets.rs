//! `/secrets` and `/configs` (the same shape): list (filters `id`, `name`,
//! `names`, `label`), create with base64 `Data`, inspect, update and
//! remove. Bytes are never shown back.
//!
//! Update: as Docker, only the labels change (the `Data` an update carries,
//! as `docker stack deploy` sends it, is not compared: Swarmlet never shows
//! a secret's bytes back, so it does not judge them either).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use swarmlet_proto::control::{CreateSecretRequest, UpdateSecretLabelsRequest};

use super::{json_body, labels_of, Query};
use crate::backend::Backend;
use crate::convert::objects;
use crate::error::{ApiError, ApiResult};
use crate::filters::Filters;

async fn list(b: &Backend, q: &Query, config: bool) -> ApiResult<Json<Vec<Value>>> {
    let f = Filters::parse(
        q.get("filters").map(String::as_str),
        &["id", "name", "names", "label"],
    )?;
    let items = b.secrets(config).await?;
    Ok(Json(
        items
            .iter()
            .filter(|s| {
                f.accepts_prefix("id", &s.id)
                    && f.accepts_prefix("name", &s.name)
                    && f.accepts("names", &s.name)
                    && f.accepts_labels(&s.labels)
            })
            .map(objects::secret)
            .collect(),
    ))
}

async fn create(b: &Backend, body: &Bytes, config: bool) -> ApiResult<(StatusCode, Json<Value>)> {
    use base64::Engine;
    let req = json_body(body)?;
    let kind = if config { "config" } else { "secret" };
    if req
        .get("Driver")
        .and_then(|d| d.get("Name"))
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty())
    {
        return Err(ApiError::bad_request(format!(
            "{kind} drivers are not supported by Swarmlet: give the {kind}'s data"
        )));
    }
    if req.get("Templating").is_some_and(|t| !t.is_null()) {
        return Err(ApiError::bad_request(format!(
            "{kind} templating is not supported by Swarmlet"
        )));
    }
    let data = req.get("Data").and_then(Value::as_str).unwrap_or_default();
    let data = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| ApiError::bad_request(format!("invalid {kind} data (base64): {e}")))?;
    let labels = labels_of(&req).into_iter().collect();
    let info = b
        .create_secret(CreateSecretRequest {
            config,
            name: req
                .get("Name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            data,
            labels,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"ID": info.id}))))
}

/// `GET /secrets`.
pub async fn list_secrets(State(b): State<Backend>, q: Query) -> ApiResult<Json<Vec<Value>>> {
    list(&b, &q, false).await
}

/// `GET /configs`.
pub async fn list_configs(State(b): State<Backend>, q: Query) -> ApiResult<Json<Vec<Value>>> {
    list(&b, &q, true).await
}

/// `POST /secrets/create`.
pub async fn create_secret(
    State(b): State<Backend>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    create(&b, &body, false).await
}

/// `POST /configs/create`.
pub async fn create_config(
    State(b): State<Backend>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    create(&b, &body, true).await
}

/// `GET /secrets/{id}`.
pub async fn inspect_secret(
    State(b): State<Backend>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(objects::secret(&b.secret(false, &id).await?)))
}

/// `GET /configs/{id}`.
pub async fn inspect_config(
    State(b): State<Backend>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(objects::secret(&b.secret(true, &id).await?)))
}

/// `DELETE /secrets/{id}`: 204.
pub async fn remove_secret(
    State(b): State<Backend>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    b.remove_secret(false, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /configs/{id}`: 204.
pub async fn remove_config(
    State(b): State<Backend>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    b.remove_secret(true, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /secrets/{id}/update` and `/configs/{id}/update`.
pub async fn update(
    State(b): State<Backend>,
    Path(id): Path<String>,
    uri: axum::http::Uri,
    body: Bytes,
) -> ApiResult<()> {
    let config = uri.path().starts_with("/configs/");
    let current = b.secret(config, &id).await?;
    let req = json_body(&body)?;
    let labels: std::collections::HashMap<String, String> = labels_of(&req).into_iter().collect();
    let now: std::collections::HashMap<String, String> = current
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if labels != now {
        b.update_secret_labels(UpdateSecretLabelsRequest {
            config,
            secret: current.id,
            labels: labels.into_iter().collect(),
        })
        .await?;
    }
    Ok(())
}
