//! Zone tokens: what a zone presents on KDS to prove its name. They live beside the
//! KDS code that checks them; `meridian_api::zone_token` re-exports this module for
//! the REST endpoints that issue and revoke them.
//!
//! A token is `mrdz_<payload>.<mac>`: the payload is base64url JSON
//! `{"zone": NAME, "iat": SECONDS, "exp": SECONDS, "jti": ID}` and the MAC is
//! HMAC-SHA256 over the payload with a key generated once per installation and kept
//! in the store, so every global replica verifies every token. The `mrdz_` prefix
//! keeps zone tokens from ever being mistaken for admin tokens (`mrd_`).
//!
//! Tokens can be taken back two ways, both recorded in the store's settings so every
//! replica sharing it honours them:
//!
//! - **Revocation** of one token by its id (`jti`, 128 random bits in hex): the
//!   setting `zone_token.revoked.<jti>` marks it. Revocations are a few dozen bytes
//!   each and are kept.
//! - **Rotation** of the signing key: a new key replaces the setting
//!   `zone_token_hmac_key`, which invalidates every token signed before.
//!
//! Each change also writes a fresh random `zone_token.epoch`. A replica polls that
//! one setting ([`ZoneTokens::run_refresher`]); when it changed, the replica reloads
//! the key and wakes [`ZoneTokens::changes`], on which KDS sessions re-check the token
//! they were admitted with and end if it no longer holds. A change made through this
//! replica wakes its sessions at once. Neither the key nor a token is ever logged.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use meridian_store::{Store, StoreError, WriteOp};
use ring::hmac;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, watch};

const PREFIX: &str = "mrdz_";
const KEY_SETTING: &str = "zone_token_hmac_key";
const EPOCH_SETTING: &str = "zone_token.epoch";
const REVOKED_PREFIX: &str = "zone_token.revoked.";
/// Hex digits of a token id (128 bits).
const ID_HEX_LEN: usize = 32;

/// How often replicas look for revocations and key rotations made elsewhere, unless
/// configured otherwise.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// A token whose signature does not match makes the replica reload the key (it may
/// have been rotated through another replica), at most once per this interval, so a
/// flood of forged tokens cannot turn into a flood of store reads.
const RELOAD_ON_FAILURE_EVERY: Duration = Duration::from_millis(250);

/// Issues, verifies and takes back zone tokens. Clones share one state.
#[derive(Clone)]
pub struct ZoneTokens {
    shared: Arc<Shared>,
}

struct Shared {
    key: RwLock<hmac::Key>,
    /// The epoch this replica last loaded; serialises refreshes.
    epoch: Mutex<Option<String>>,
    /// When the store was last read for the epoch.
    refreshed_at: std::sync::Mutex<Option<Instant>>,
    /// Bumped whenever the key or the revocations may have changed.
    changes: watch::Sender<u64>,
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneClaims {
    /// The zone the token was issued for.
    pub zone: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: u64,
    /// The token's unique id (32 hex digits), by which it is revoked. Empty for
    /// tokens issued before ids existed: only a key rotation takes those back.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jti: String,
}

/// Why a token was refused. The messages are safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a zone token at all.
    #[error("not a Meridian zone token")]
    Malformed,
    /// The signature does not match: forged, signed with a key since rotated, or
    /// from another installation.
    #[error(
        "the zone token's signature is not valid (forged, signed with a key that was since rotated, or issued by another global control plane)"
    )]
    BadSignature,
    /// Past its expiry.
    #[error("the zone token for {zone:?} expired")]
    Expired {
        /// The zone it was for.
        zone: String,
    },
    /// Valid, but for another zone than the one claimed.
    #[error("the zone token is for zone {token_zone:?}, not {claimed:?}")]
    WrongZone {
        /// The zone in the token.
        token_zone: String,
        /// The zone the caller claimed.
        claimed: String,
    },
    /// Revoked by an operator (`POST /tokens/zone/revoke`).
    #[error("zone token revoked")]
    Revoked,
}

impl TokenError {
    /// A short label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired { .. } => "expired",
            TokenError::WrongZone { .. } => "wrong_zone",
            TokenError::Revoked => "revoked",
        }
    }
}

/// A token check that could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The token is not (or no longer) valid.
    #[error(transparent)]
    Refused(#[from] TokenError),
    /// The store could not be read to check revocations or reload the key.
    #[error("checking the zone token: {0}")]
    Store(#[from] StoreError),
}

/// A token id that is not 32 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a zone token id is 32 lowercase hex digits (the `id` that `POST /tokens/zone` answered)")]
pub struct InvalidTokenId;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn random_hex<const N: usize>() -> String {
    let bytes: [u8; N] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_key(stored: &str) -> Result<hmac::Key, StoreError> {
    let key = URL_SAFE_NO_PAD
        .decode(stored)
        .map_err(|e| StoreError::Backend(format!("setting {KEY_SETTING} is not base64: {e}")))?;
    Ok(hmac::Key::new(hmac::HMAC_SHA256, &key))
}

/// Whether `id` has the shape of a token id.
pub fn validate_token_id(id: &str) -> Result<(), InvalidTokenId> {
    let hex = id.len() == ID_HEX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if hex { Ok(()) } else { Err(InvalidTokenId) }
}

impl ZoneTokens {
    fn with_key(key: hmac::Key, epoch: Option<String>) -> Self {
        ZoneTokens {
            shared: Arc::new(Shared {
                key: RwLock::new(key),
                epoch: Mutex::new(epoch),
                refreshed_at: std::sync::Mutex::new(None),
                changes: watch::channel(0).0,
            }),
        }
    }

    /// Loads the signing key from the store, generating it at the first start.
    pub async fn init(store: &dyn Store) -> Result<Self, StoreError> {
        let epoch = store.setting(EPOCH_SETTING).await?;
        let candidate: [u8; 32] = rand::random();
        let stored = store
            .setting_or_insert(KEY_SETTING, &URL_SAFE_NO_PAD.encode(candidate))
            .await?;
        Ok(Self::with_key(decode_key(&stored)?, epoch))
    }

    fn key(&self) -> hmac::Key {
        // A poisoned lock still holds a whole key: writers only replace it.
        self.shared
            .key
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_key(&self, key: hmac::Key) {
        *self
            .shared
            .key
            .write()
            .unwrap_or_else(PoisonError::into_inner) = key;
    }

    /// Issues a token for `zone`, valid for `valid_for` from now, with a fresh id.
    pub fn issue(&self, zone: &str, valid_for: Duration) -> (String, ZoneClaims) {
        let iat = now_secs();
        let claims = ZoneClaims {
            zone: zone.to_owned(),
            iat,
            exp: iat.saturating_add(valid_for.as_secs()),
            jti: random_hex::<16>(),
        };
        // Serialising a struct of strings and integers cannot fail.
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let mac = URL_SAFE_NO_PAD.encode(hmac::sign(&self.key(), payload.as_bytes()));
        (format!("{PREFIX}{payload}.{mac}"), claims)
    }

    /// Verifies a token's signature (with the key this replica holds), expiry, and
    /// that it was issued for `claimed_zone`. Revocations are not consulted: see
    /// [`ZoneTokens::check`].
    pub fn verify(&self, token: &str, claimed_zone: &str) -> Result<ZoneClaims, TokenError> {
        let (payload, mac) = token
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('.'))
            .ok_or(TokenError::Malformed)?;
        let mac = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| TokenError::Malformed)?;
        hmac::verify(&self.key(), payload.as_bytes(), &mac)
            .map_err(|_| TokenError::BadSignature)?;
        let claims: ZoneClaims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(TokenError::Malformed)?;
        if claims.exp <= now_secs() {
            return Err(TokenError::Expired { zone: claims.zone });
        }
        if claims.zone != claimed_zone {
            return Err(TokenError::WrongZone {
                token_zone: claims.zone,
                claimed: claimed_zone.to_owned(),
            });
        }
        Ok(claims)
    }

    /// Everything a KDS admission needs: [`ZoneTokens::verify`], reloading the key
    /// from the store once if the signature does not match (it may have been rotated
    /// through another replica), and the token's revocation in the store.
    pub async fn check(
        &self,
        store: &dyn Store,
        token: &str,
        claimed_zone: &str,
    ) -> Result<ZoneClaims, CheckError> {
        let claims = match self.verify(token, claimed_zone) {
            Err(TokenError::BadSignature) if self.may_reload() => {
                self.refresh(store).await?;
                self.verify(token, claimed_zone)?
            }
            other => other?,
        };
        if !claims.jti.is_empty() && self.is_revoked(store, &claims.jti).await? {
            return Err(TokenError::Revoked.into());
        }
        Ok(claims)
    }

    /// Whether the last look at the store is older than [`RELOAD_ON_FAILURE_EVERY`].
    fn may_reload(&self) -> bool {
        let refreshed_at = *self
            .shared
            .refreshed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        refreshed_at.is_none_or(|at| at.elapsed() >= RELOAD_ON_FAILURE_EVERY)
    }

    /// Whether the token with id `jti` was revoked.
    pub async fn is_revoked(&self, store: &dyn Store, jti: &str) -> Result<bool, StoreError> {
        Ok(store
            .setting(&format!("{REVOKED_PREFIX}{jti}"))
            .await?
            .is_some())
    }

    /// Revokes the token with id `jti` for every replica on `store`, and wakes this
    /// replica's sessions at once (others notice within their refresh interval).
    pub async fn revoke(&self, store: &dyn Store, jti: &str) -> Result<(), RevokeError> {
        validate_token_id(jti)?;
        let revoked = WriteOp::SetSetting {
            key: format!("{REVOKED_PREFIX}{jti}"),
            value: chrono::Utc::now().to_rfc3339(),
        };
        self.change(store, revoked, None).await?;
        Ok(())
    }

    /// Replaces the signing key for every replica on `store`: every token issued
    /// before is refused from now on, and this replica's sessions are woken at once
    /// to end those admitted with them.
    pub async fn rotate_key(&self, store: &dyn Store) -> Result<(), StoreError> {
        let candidate: [u8; 32] = rand::random();
        let encoded = URL_SAFE_NO_PAD.encode(candidate);
        let new_key = decode_key(&encoded)?;
        let write = WriteOp::SetSetting {
            key: KEY_SETTING.to_owned(),
            value: encoded,
        };
        self.change(store, write, Some(new_key)).await
    }

    /// Writes `op` with a fresh epoch in one batch, then takes `new_key` and wakes
    /// the sessions. Holding the epoch lock throughout keeps a concurrent
    /// [`ZoneTokens::refresh`] from loading the state from before the write.
    async fn change(
        &self,
        store: &dyn Store,
        op: WriteOp,
        new_key: Option<hmac::Key>,
    ) -> Result<(), StoreError> {
        let mut known = self.shared.epoch.lock().await;
        let epoch = random_hex::<16>();
        store
            .apply(vec![
                op,
                WriteOp::SetSetting {
                    key: EPOCH_SETTING.to_owned(),
                    value: epoch.clone(),
                },
            ])
            .await?;
        if let Some(key) = new_key {
            self.set_key(key);
        }
        *known = Some(epoch);
        drop(known);
        self.shared.changes.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Reloads the key if another replica revoked a token or rotated the key since
    /// the last look; wakes [`ZoneTokens::changes`] then. Returns whether anything
    /// changed.
    pub async fn refresh(&self, store: &dyn Store) -> Result<bool, StoreError> {
        let mut known = self.shared.epoch.lock().await;
        let epoch = store.setting(EPOCH_SETTING).await?;
        *self
            .shared
            .refreshed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        if epoch == *known {
            return Ok(false);
        }
        if let Some(stored) = store.setting(KEY_SETTING).await? {
            self.set_key(decode_key(&stored)?);
        }
        *known = epoch;
        drop(known);
        self.shared.changes.send_modify(|n| *n += 1);
        Ok(true)
    }

    /// Wakes whenever a token may have been revoked or the key rotated; a session
    /// then re-checks its token with [`ZoneTokens::check`].
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    /// Calls [`ZoneTokens::refresh`] every `interval`, forever (run it as a task on
    /// every replica that serves KDS).
    pub async fn run_refresher(self, store: Arc<dyn Store>, interval: Duration) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match self.refresh(store.as_ref()).await {
                Ok(true) => tracing::info!(
                    "zone tokens changed (a revocation or key rotation); re-checking live KDS sessions"
                ),
                Ok(false) => {}
                Err(error) => {
                    tracing::debug!(%error, "could not look for zone token revocations")
                }
            }
        }
    }
}

/// Why a revocation failed.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    /// The id is not a token id.
    #[error(transparent)]
    InvalidId(#[from] InvalidTokenId),
    /// The store refused the write.
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> ZoneTokens {
        ZoneTokens::with_key(
            hmac::Key::new(hmac::HMAC_SHA256, b"test key of the installation"),
            None,
        )
    }

    #[test]
    fn a_token_verifies_for_its_zone_only() {
        let tokens = tokens();
        let (token, claims) = tokens.issue("zone-1", Duration::from_secs(3600));
        assert!(token.starts_with("mrdz_"));
        assert_eq!(tokens.verify(&token, "zone-1"), Ok(claims));
        assert!(matches!(
            tokens.verify(&token, "zone-2"),
            Err(TokenError::WrongZone { .. })
        ));
    }

    #[test]
    fn every_token_gets_its_own_id() {
        let tokens = tokens();
        let (_, a) = tokens.issue("zone-1", Duration::from_secs(60));
        let (_, b) = tokens.issue("zone-1", Duration::from_secs(60));
        assert_ne!(a.jti, b.jti);
        assert_eq!(validate_token_id(&a.jti), Ok(()));
        for bad in ["", "abc", &"g".repeat(32), &"A".repeat(32), &"a".repeat(33)] {
            assert_eq!(validate_token_id(bad), Err(InvalidTokenId), "{bad}");
        }
    }

    #[test]
    fn tokens_without_an_id_still_verify() {
        let tokens = tokens();
        let payload = URL_SAFE_NO_PAD.encode(br#"{"zone":"zone-1","iat":0,"exp":99999999999}"#);
        let mac = URL_SAFE_NO_PAD.encode(hmac::sign(&tokens.key(), payload.as_bytes()));
        let claims = tokens
            .verify(&format!("mrdz_{payload}.{mac}"), "zone-1")
            .unwrap();
        assert!(claims.jti.is_empty());
    }

    #[test]
    fn a_new_key_refuses_tokens_of_the_old_one() {
        let tokens = tokens();
        let (old, _) = tokens.issue("zone-1", Duration::from_secs(3600));
        tokens.set_key(hmac::Key::new(hmac::HMAC_SHA256, b"rotated"));
        assert_eq!(tokens.verify(&old, "zone-1"), Err(TokenError::BadSignature));
        let (new, _) = tokens.issue("zone-1", Duration::from_secs(3600));
        assert!(tokens.verify(&new, "zone-1").is_ok());
    }

    #[test]
    fn forged_expired_and_garbage_tokens_are_refused() {
        let tokens = tokens();
        let other = ZoneTokens::with_key(
            hmac::Key::new(hmac::HMAC_SHA256, b"another installation"),
            None,
        );
        let (foreign, _) = other.issue("zone-1", Duration::from_secs(3600));
        assert_eq!(
            tokens.verify(&foreign, "zone-1"),
            Err(TokenError::BadSignature)
        );

        // Re-sign a payload claiming another zone with a wrong MAC: refused.
        let (token, _) = tokens.issue("zone-1", Duration::from_secs(3600));
        let (_, mac) = token.rsplit_once('.').unwrap();
        let forged_payload =
            URL_SAFE_NO_PAD.encode(br#"{"zone":"zone-2","iat":0,"exp":99999999999}"#);
        let forged = format!("mrdz_{forged_payload}.{mac}");
        assert_eq!(
            tokens.verify(&forged, "zone-2"),
            Err(TokenError::BadSignature)
        );

        let (expired, _) = tokens.issue("zone-1", Duration::ZERO);
        assert!(matches!(
            tokens.verify(&expired, "zone-1"),
            Err(TokenError::Expired { .. })
        ));

        for garbage in ["", "mrdz_", "mrd_abc", "mrdz_a.b", "mrdz_%%%.###"] {
            assert!(tokens.verify(garbage, "zone-1").is_err(), "{garbage}");
        }
    }
}
