//! The admin token that guards writes (and, optionally, reads).
//!
//! Only the token's SHA-256 is kept: in the store when Meridian generated the token
//! (so every replica sharing the store accepts it), in memory when the operator passed
//! one. Comparison is constant-time.

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use meridian_store::{Store, StoreError};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::problem::Problem;

const TOKEN_HASH_SETTING: &str = "admin_token_sha256";

/// Checks bearer tokens against the admin token.
#[derive(Clone)]
pub struct AdminAuth {
    token_sha256: [u8; 32],
    reads_need_token: bool,
}

/// How the admin token was set up at start.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenOrigin {
    /// The operator gave it (flag or environment).
    Configured,
    /// Meridian generated it now; it must be shown to the operator once.
    Generated(String),
    /// Meridian generated it at an earlier start; only its hash is known.
    Stored,
}

impl AdminAuth {
    /// Sets up the admin token: `configured` if given, otherwise the one generated at
    /// first start (generating and storing its hash now if there is none).
    pub async fn init(
        store: &dyn Store,
        configured: Option<&str>,
        reads_need_token: bool,
    ) -> Result<(Self, TokenOrigin), StoreError> {
        if let Some(token) = configured {
            let auth = AdminAuth {
                token_sha256: sha256(token),
                reads_need_token,
            };
            return Ok((auth, TokenOrigin::Configured));
        }
        let candidate = generate_token();
        let candidate_hash = hex(&sha256(&candidate));
        let stored_hash = store
            .setting_or_insert(TOKEN_HASH_SETTING, &candidate_hash)
            .await?;
        let origin = if stored_hash == candidate_hash {
            TokenOrigin::Generated(candidate)
        } else {
            TokenOrigin::Stored
        };
        let token_sha256 = unhex(&stored_hash).ok_or_else(|| {
            StoreError::Backend(format!(
                "setting {TOKEN_HASH_SETTING} is not a SHA-256 hex digest"
            ))
        })?;
        Ok((
            AdminAuth {
                token_sha256,
                reads_need_token,
            },
            origin,
        ))
    }

    /// Whether `token` is the admin token.
    pub fn accepts(&self, token: &str) -> bool {
        bool::from(sha256(token).ct_eq(&self.token_sha256))
    }

    fn check(&self, request: &Request) -> Result<(), Problem> {
        let safe = matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::OPTIONS
        );
        if safe && !self.reads_need_token {
            return Ok(());
        }
        let header = request
            .headers()
            .get(header::AUTHORIZATION)
            .ok_or_else(|| {
                Problem::unauthorized(
                    "this request needs the admin token: send `Authorization: Bearer <token>`",
                )
            })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                Problem::unauthorized("the Authorization header must be `Bearer <token>`")
            })?;
        if self.accepts(token.trim()) {
            Ok(())
        } else {
            Err(Problem::unauthorized("the admin token is not valid"))
        }
    }
}

/// Middleware: refuses requests without a valid token where one is needed.
pub async fn require_token(
    State(auth): State<AdminAuth>,
    request: Request,
    next: Next,
) -> Result<Response, Problem> {
    auth.check(&request)?;
    Ok(next.run(request).await)
}

fn generate_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "mrd_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        let digest = sha256("x");
        assert_eq!(unhex(&hex(&digest)), Some(digest));
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex(&"g".repeat(64)), None);
    }

    #[test]
    fn generated_tokens_are_distinct_and_prefixed() {
        let (a, b) = (generate_token(), generate_token());
        assert_ne!(a, b);
        assert!(a.starts_with("mrd_") && a.len() > 40);
    }

    #[test]
    fn accepts_only_the_token() {
        let auth = AdminAuth {
            token_sha256: sha256("secret"),
            reads_need_token: false,
        };
        assert!(auth.accepts("secret"));
        assert!(!auth.accepts("secret "));
        assert!(!auth.accepts(""));
    }
}
