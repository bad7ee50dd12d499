//! API versions: the `/vX.Y` prefix of a request is checked and stripped
//! before routing, as Docker's router does; every answer carries the
//! `Api-Version` and `Ostype` headers clients negotiate with.

use axum::body::Body;
use axum::http::{HeaderValue, Request, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The version this server speaks (the docker CLI 28 then talks 1.47; the
/// docker 29 client refuses servers below 1.44).
pub const API_VERSION: &str = "1.47";
/// The oldest version accepted (Debian's docker.io 20.10 client).
pub const MIN_API_VERSION: &str = "1.41";

/// A version as `(major, minor)`.
fn parse(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The `/vX.Y` prefix of `path`, if it has one, and the rest of the path.
fn split_prefix(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/v")?;
    let end = rest.find('/').unwrap_or(rest.len());
    let version = &rest[..end];
    parse(version)?;
    Some((version, &rest[end..]))
}

/// Why a requested version is refused, in Docker's words.
pub fn check(version: &str) -> Result<(), ApiError> {
    let (Some(asked), Some(max), Some(min)) =
        (parse(version), parse(API_VERSION), parse(MIN_API_VERSION))
    else {
        return Err(ApiError::bad_request(format!(
            "invalid API version {version:?}"
        )));
    };
    if asked > max {
        return Err(ApiError::bad_request(format!(
            "client version {version} is too new. Maximum supported API version is {API_VERSION}"
        )));
    }
    if asked < min {
        return Err(ApiError::bad_request(format!(
            "client version {version} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
        )));
    }
    Ok(())
}

/// Middleware around the whole router: checks and strips the version
/// prefix, and adds the version headers to the answer.
pub async fn negotiate(mut request: Request<Body>, next: Next) -> Response {
    let path = request.uri().path().to_string();
    if let Some((version, rest)) = split_prefix(&path) {
        if let Err(e) = check(version) {
            return with_headers(e.into_response());
        }
        let rest = if rest.is_empty() { "/" } else { rest };
        let path_and_query = match request.uri().query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest.to_string(),
        };
        match path_and_query.parse::<Uri>() {
            Ok(uri) => *request.uri_mut() = uri,
            Err(e) => {
                return with_headers(
                    ApiError::bad_request(format!("invalid path: {e}")).into_response(),
                )
            }
        }
    }
    with_headers(next.run(request).await)
}

fn with_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert("Server", HeaderValue::from_static("Swarmlet (linux)"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(split_prefix("/v1.41/services"), Some(("1.41", "/services")));
        assert_eq!(split_prefix("/v1.47/_ping"), Some(("1.47", "/_ping")));
        assert_eq!(split_prefix("/services"), None);
        assert_eq!(split_prefix("/volumes"), None);
    }

    #[test]
    fn versions_in_range() {
        assert!(check("1.41").is_ok());
        assert!(check("1.47").is_ok());
        let new = check("1.52").expect_err("refused");
        assert_eq!(new.status.as_u16(), 400);
        assert!(new.message.contains("too new"), "{}", new.message);
        assert!(check("1.24")
            .expect_err("refused")
            .message
            .contains("too old"));
    }
}
