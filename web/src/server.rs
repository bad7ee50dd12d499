//! The page's routes: `/` (the page), `/app.js` and `/app.css` (compiled
//! in), `/api/view` (the current [`crate::view::View`] as JSON) and
//! `/api/events` (server-sent events: `view` with a fresh view whenever the
//! cluster changed, at most every 200 ms, and at least every 5 s; `change`
//! with each cluster event as `swarmctl events` shows it).
//!
//! Every route is read-only and answers from the control API's own service
//! called in-process, so a follower asks the leader as `swarmctl` does. A
//! node that is no manager answers every route with a page naming the
//! managers. Content-Security-Policy keeps the page to its own origin.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use swarmlet_manager::api::grpc::control::ControlService;
use swarmlet_manager::api::grpc::ManagerSlot;
use swarmlet_proto::common::Empty;
use swarmlet_proto::control::control_server::Control;
use swarmlet_proto::control::{EventsRequest, ListTasksRequest, WebTokenRequest};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::access::{presented, same_token, Access, COOKIE};
use crate::view::{build, ClusterView, View};

const INDEX: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");

/// No other origin: scripts, styles, connections and images from the page's
/// own server only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// How often a changed cluster is sent again, at most.
const THROTTLE: Duration = Duration::from_millis(200);
/// How often the view is sent when nothing changed (and without events).
const REFRESH: Duration = Duration::from_secs(5);

#[derive(Clone)]
struct App {
    slot: ManagerSlot,
    control: Arc<ControlService>,
    access: Access,
}

/// Serves the page on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    slot: ManagerSlot,
    access: Access,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = App {
        control: Arc::new(ControlService::new(slot.clone(), true)),
        slot,
        access,
    };
    let router = Router::new()
        .route(
            "/",
            get(|| async { asset(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route("/api/view", get(view_json))
        .route("/api/events", get(events))
        .layer(axum::middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert("Content-Security-Policy", HeaderValue::from_static(CSP));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title></head><body><h1>{}</h1><p>{}</p></body></html>",
        escape(title),
        escape(title),
        escape(text)
    );
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r.headers_mut()
        .insert("Content-Security-Policy", HeaderValue::from_static(CSP));
    r
}

/// Checks the caller (token beyond loopback) and that this node is a
/// manager, before any route.
async fn guard(State(app): State<App>, request: Request, next: Next) -> Response {
    if let Err(e) = app.slot.get() {
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Swarmlet: no cluster view here",
            e.message(),
        );
    }
    if app.access == Access::Token {
        let query = request.uri().query().map(str::to_string);
        let cookie = request
            .headers()
            .get(header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let Some(given) = presented(query.as_deref(), cookie.as_deref()) else {
            return page(
                StatusCode::UNAUTHORIZED,
                "Swarmlet: token required",
                "Open this page as /?token=TOKEN; `swarmctl cluster web-token` prints the token.",
            );
        };
        let token = match app
            .control
            .get_web_token(tonic::Request::new(WebTokenRequest { rotate: false }))
            .await
        {
            Ok(r) => r.into_inner().token,
            Err(e) => {
                return page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Swarmlet: cluster unavailable",
                    e.message(),
                )
            }
        };
        if !same_token(&given, &token) {
            return page(
                StatusCode::UNAUTHORIZED,
                "Swarmlet: wrong token",
                "The token is not this cluster's current web token.",
            );
        }
        if query.as_deref().is_some_and(|q| q.contains("token=")) {
            // Keep the token out of the address bar and history.
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::SEE_OTHER;
            let cookie = format!("{COOKIE}={given}; HttpOnly; SameSite=Strict; Path=/");
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            if let Ok(v) = HeaderValue::from_str(request.uri().path()) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            return r;
        }
    }
    next.run(request).await
}

/// The current view, from the control API.
async fn current_view(app: &App) -> Result<View, Status> {
    let c = &app.control;
    let empty = || tonic::Request::new(Empty {});
    let nodes = c.list_nodes(empty()).await?.into_inner().nodes;
    let services = c.list_services(empty()).await?.into_inner().services;
    let tasks = c
        .list_tasks(tonic::Request::new(ListTasksRequest::default()))
        .await?
        .into_inner()
        .tasks;
    let networks = c.list_networks(empty()).await?.into_inner().networks;
    let cluster = c.get_cluster(empty()).await?.into_inner();
    Ok(build(
        &nodes,
        &services,
        &tasks,
        &networks,
        ClusterView {
            id: cluster.id,
            leader: cluster.leader_node_id,
        },
        swarmlet_common::clock::now_ms(),
    ))
}

async fn view_json(State(app): State<App>) -> Response {
    match current_view(&app).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.message().to_string()).into_response(),
    }
}

async fn events(
    State(app): State<App>,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(pump(app, tx));
    Sse::new(ReceiverStream::new(rx).map(Ok)).keep_alive(KeepAlive::default())
}

/// Feeds one page: the view, then each change and a fresh view after it.
async fn pump(app: App, tx: tokio::sync::mpsc::Sender<Event>) {
    // Subscribed before the first view, so that no change falls between.
    let mut changes = app
        .control
        .events(tonic::Request::new(EventsRequest { since_ms: 0 }))
        .await
        .ok()
        .map(|r| r.into_inner());
    let mut dirty = true;
    let mut last_sent = Instant::now() - REFRESH;
    let mut tick = tokio::time::interval(THROTTLE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tx.closed() => return,
            change = async {
                match changes.as_mut() {
                    Some(s) => s.next().await,
                    None => std::future::pending().await,
                }
            } => match change {
                Some(Ok(e)) => {
                    let data = serde_json::json!({
                        "time_ms": e.time_ms,
                        "type": e.r#type,
                        "action": e.action,
                        "id": e.id,
                        "attributes": e.attributes,
                    });
                    if tx.send(Event::default().event("change").data(data.to_string())).await.is_err() {
                        return;
                    }
                    dirty = true;
                }
                // The stream ended (this manager stopped leading or
                // stopped): refresh every second instead.
                _ => changes = None,
            },
            _ = tick.tick() => {
                let due = last_sent.elapsed() >= if changes.is_some() { REFRESH } else { Duration::from_secs(1) };
                if dirty || due {
                    let event = match current_view(&app).await {
                        Ok(v) => match serde_json::to_string(&v) {
                            Ok(json) => Event::default().event("view").data(json),
                            Err(e) => Event::default().event("trouble").data(e.to_string()),
                        },
                        Err(e) => Event::default().event("trouble").data(e.message()),
                    };
                    if tx.send(event).await.is_err() {
                        return;
                    }
                    dirty = false;
                    last_sent = Instant::now();
                }
            }
        }
    }
}
