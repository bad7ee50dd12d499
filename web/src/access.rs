//! Who may see the page. Bound to loopback, anyone on the host may (as
//! with the metrics endpoint); bound beyond it, a browser must present the
//! cluster's web token (`swarmctl cluster web-token`): once as `?token=` in
//! the address, which sets an HttpOnly cookie, then with the cookie.

/// The cookie that carries the token.
pub const COOKIE: &str = "swarmlet_web";

/// How requests are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Loopback only: no token.
    Loopback,
    /// Beyond loopback: the cluster's web token is required.
    Token,
}

impl Access {
    /// What serving on `addr` requires.
    pub fn for_addr(addr: &std::net::SocketAddr) -> Access {
        if addr.ip().is_loopback() {
            Access::Loopback
        } else {
            Access::Token
        }
    }
}

/// The token a request presents: `?token=` or the cookie.
pub fn presented(query: Option<&str>, cookie_header: Option<&str>) -> Option<String> {
    let from_query = query.and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| v.to_string())
    });
    from_query.or_else(|| {
        cookie_header.and_then(|h| {
            h.split(';')
                .filter_map(|kv| kv.trim().split_once('='))
                .find(|(k, _)| *k == COOKIE)
                .map(|(_, v)| v.to_string())
        })
    })
}

/// Compares two tokens in time independent of where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    if a.len() != b.len() || a.is_empty() {
        return false;
    }
    a.bytes()
        .zip(b.bytes())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_needs_no_token() {
        let l: std::net::SocketAddr = "127.0.0.1:9000".parse().expect("addr");
        let any: std::net::SocketAddr = "0.0.0.0:9000".parse().expect("addr");
        assert_eq!(Access::for_addr(&l), Access::Loopback);
        assert_eq!(Access::for_addr(&any), Access::Token);
    }

    #[test]
    fn token_from_query_or_cookie() {
        assert_eq!(
            presented(Some("a=1&token=SWMWEB-1-x"), None).as_deref(),
            Some("SWMWEB-1-x")
        );
        assert_eq!(
            presented(None, Some("other=1; swarmlet_web=SWMWEB-1-y")).as_deref(),
            Some("SWMWEB-1-y")
        );
        assert_eq!(presented(None, None), None);
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("", ""));
    }
}
