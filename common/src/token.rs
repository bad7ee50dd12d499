//! Join tokens: `SWMTKN-1-<sha256 of the root CA certificate, hex>-<secret>`.
//!
//! The digest lets a joining node pin the cluster's root CA before it trusts
//! anything the manager says; the secret says which role the node gets.

use sha2::{Digest, Sha256};

const PREFIX: &str = "SWMTKN";
const VERSION: &str = "1";
const SECRET_LEN: usize = 25;

/// A parsed join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Hex SHA-256 of the root CA certificate (DER).
    pub root_digest: String,
    /// The role secret.
    pub secret: String,
}

/// Why a token string is not a valid join token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// The string does not have the `SWMTKN-1-<digest>-<secret>` shape.
    #[error("invalid join token: expected SWMTKN-1-<digest>-<secret>")]
    Malformed,
}

impl JoinToken {
    /// Parses a token string.
    pub fn parse(s: &str) -> Result<Self, TokenError> {
        let parts: Vec<&str> = s.trim().split('-').collect();
        match parts.as_slice() {
            [PREFIX, VERSION, digest, secret]
                if digest.len() == 64
                    && digest.bytes().all(|c| c.is_ascii_hexdigit())
                    && secret.len() == SECRET_LEN
                    && secret.bytes().all(|c| c.is_ascii_alphanumeric()) =>
            {
                Ok(JoinToken {
                    root_digest: digest.to_ascii_lowercase(),
                    secret: (*secret).to_string(),
                })
            }
            _ => Err(TokenError::Malformed),
        }
    }

    /// Formats a token for the given root certificate (DER) and secret.
    pub fn format(root_cert_der: &[u8], secret: &str) -> String {
        JoinToken {
            root_digest: root_digest(root_cert_der),
            secret: secret.to_string(),
        }
        .to_string()
    }
}

impl std::fmt::Display for JoinToken {
    /// The token string, as [`JoinToken::parse`] reads it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PREFIX}-{VERSION}-{}-{}", self.root_digest, self.secret)
    }
}

/// Hex SHA-256 of a certificate's DER bytes.
pub fn root_digest(cert_der: &[u8]) -> String {
    hex::encode(Sha256::digest(cert_der))
}

/// A new random token secret.
pub fn new_secret() -> String {
    crate::ids::random_base36(SECRET_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let secret = new_secret();
        let s = JoinToken::format(b"cert", &secret);
        let t = JoinToken::parse(&s).expect("valid token");
        assert_eq!(t.secret, secret);
        assert_eq!(t.root_digest, root_digest(b"cert"));
        assert_eq!(t.to_string(), s, "a parsed token prints as it was");
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in ["", "SWMTKN-1-abc-def", "XYZ-1-", "SWMTKN-2-00-11"] {
            assert_eq!(JoinToken::parse(bad), Err(TokenError::Malformed), "{bad}");
        }
        let s = JoinToken::format(b"c", &new_secret());
        assert!(JoinToken::parse(&format!("{s}x")).is_err());
    }
}
