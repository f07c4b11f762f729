//! The tokens that guard the REST API: the admin token, which may do everything, and
//! read-only tokens, which may only read.
//!
//! | request | no token | read-only token | admin token | anything else |
//! |---|---|---|---|---|
//! | GET, HEAD | allowed, or 401 with `--reads-need-token` | allowed | allowed | 401 |
//! | PUT, POST, DELETE | 401 | 403 "this token may only read" | allowed | 401 |
//!
//! Only the tokens' SHA-256 digests are kept: the admin token's in the store when
//! Meridian generated it (so every replica sharing the store accepts it), in memory
//! when the operator passed one; read-only tokens' in memory, from
//! `--read-token-file`. A presented token is hashed and compared with every digest in
//! constant time ([`subtle`]), without stopping at the first match, so the timing
//! tells nothing about which digest, or how much of one, matched. Zone tokens
//! (`mrdz_…`) are neither: they only open KDS.

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

/// Checks bearer tokens against the admin token and the read-only tokens.
#[derive(Clone)]
pub struct AdminAuth {
    token_sha256: [u8; 32],
    read_tokens: ReadTokens,
    reads_need_token: bool,
}

/// Read-only tokens (their SHA-256 digests): accepted for GET and HEAD, refused with
/// 403 on writes. `Debug` shows only how many there are.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ReadTokens {
    sha256: Vec<[u8; 32]>,
}

impl std::fmt::Debug for ReadTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReadTokens(<{} tokens>)", self.sha256.len())
    }
}

impl ReadTokens {
    /// The tokens of a read-token file's text: one per line, surrounding whitespace
    /// trimmed; blank lines and lines starting with `#` are ignored.
    pub fn parse(text: &str) -> Self {
        ReadTokens {
            sha256: text
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                .map(sha256)
                .collect(),
        }
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.sha256.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.sha256.is_empty()
    }

    /// Whether the digest `presented` is one of the tokens, compared with every one
    /// in constant time.
    fn contains(&self, presented: &[u8; 32]) -> bool {
        let found = self
            .sha256
            .iter()
            .fold(subtle::Choice::from(0), |found, digest| {
                found | digest.ct_eq(presented)
            });
        bool::from(found)
    }
}

/// What a presented bearer token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The admin token: everything.
    Admin,
    /// A read-only token: GET and HEAD.
    Read,
    /// Not a token of this API.
    None,
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
                read_tokens: ReadTokens::default(),
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
                read_tokens: ReadTokens::default(),
                reads_need_token,
            },
            origin,
        ))
    }

    /// Also accepts `read_tokens` for reads.
    pub fn with_read_tokens(mut self, read_tokens: ReadTokens) -> Self {
        self.read_tokens = read_tokens;
        self
    }

    /// Whether `token` is the admin token.
    pub fn accepts(&self, token: &str) -> bool {
        self.access(token) == Access::Admin
    }

    /// What `token` may do. Both comparisons always run, in constant time.
    pub fn access(&self, token: &str) -> Access {
        let presented = sha256(token);
        let admin = bool::from(presented.ct_eq(&self.token_sha256));
        let read = self.read_tokens.contains(&presented);
        match (admin, read) {
            (true, _) => Access::Admin,
            (false, true) => Access::Read,
            (false, false) => Access::None,
        }
    }

    fn check(&self, request: &Request) -> Result<(), Problem> {
        let read = matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::OPTIONS
        );
        if read && !self.reads_need_token {
            return Ok(());
        }
        let header = request
            .headers()
            .get(header::AUTHORIZATION)
            .ok_or_else(|| {
                Problem::unauthorized(if read {
                    "this request needs a token: send `Authorization: Bearer <token>`"
                } else {
                    "this request needs the admin token: send `Authorization: Bearer <token>`"
                })
            })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                Problem::unauthorized("the Authorization header must be `Bearer <token>`")
            })?;
        match (self.access(token.trim()), read) {
            (Access::Admin, _) | (Access::Read, true) => Ok(()),
            (Access::Read, false) => Err(Problem::forbidden("this token may only read")),
            (Access::None, _) => Err(Problem::unauthorized("the token is not valid")),
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
            read_tokens: ReadTokens::default(),
            reads_need_token: false,
        };
        assert!(auth.accepts("secret"));
        assert!(!auth.accepts("secret "));
        assert!(!auth.accepts(""));
    }

    #[test]
    fn read_tokens_read_only() {
        let read_tokens = ReadTokens::parse("# viewers\n\n  reader-1  \nreader-2\n#reader-3\n");
        assert_eq!(read_tokens.len(), 2);
        let auth = AdminAuth {
            token_sha256: sha256("admin"),
            read_tokens,
            reads_need_token: true,
        };
        assert_eq!(auth.access("admin"), Access::Admin);
        assert_eq!(auth.access("reader-1"), Access::Read);
        assert_eq!(auth.access("reader-2"), Access::Read);
        assert_eq!(auth.access("#reader-3"), Access::None);
        assert_eq!(auth.access("reader"), Access::None);
        assert!(!auth.accepts("reader-1"));
        assert_eq!(format!("{:?}", auth.read_tokens), "ReadTokens(<2 tokens>)");
    }
}
