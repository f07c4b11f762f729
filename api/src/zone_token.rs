//! Zone tokens: what a zone presents on KDS to prove its name.
//!
//! A token is `mrdz_<payload>.<mac>`: the payload is base64url JSON
//! `{"zone": NAME, "iat": SECONDS, "exp": SECONDS}` and the MAC is HMAC-SHA256 over
//! the payload with a key generated once per installation and kept in the store, so
//! every global replica verifies every token. The `mrdz_` prefix keeps zone tokens
//! from ever being mistaken for admin tokens (`mrd_`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use meridian_store::{Store, StoreError};
use ring::hmac;
use serde::{Deserialize, Serialize};

const PREFIX: &str = "mrdz_";
const KEY_SETTING: &str = "zone_token_hmac_key";

/// Issues and verifies zone tokens.
#[derive(Clone)]
pub struct ZoneTokens {
    key: hmac::Key,
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
}

/// Why a token was refused. The messages are safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a zone token at all.
    #[error("not a Meridian zone token")]
    Malformed,
    /// The signature does not match: forged or from another installation.
    #[error(
        "the zone token's signature is not valid (forged, or issued by another global control plane)"
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
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ZoneTokens {
    /// Loads the signing key from the store, generating it at the first start.
    pub async fn init(store: &dyn Store) -> Result<Self, StoreError> {
        let candidate: [u8; 32] = rand::random();
        let stored = store
            .setting_or_insert(KEY_SETTING, &URL_SAFE_NO_PAD.encode(candidate))
            .await?;
        let key = URL_SAFE_NO_PAD.decode(stored).map_err(|e| {
            StoreError::Backend(format!("setting {KEY_SETTING} is not base64: {e}"))
        })?;
        Ok(ZoneTokens {
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
        })
    }

    /// Issues a token for `zone`, valid for `valid_for` from now.
    pub fn issue(&self, zone: &str, valid_for: Duration) -> (String, ZoneClaims) {
        let iat = now_secs();
        let claims = ZoneClaims {
            zone: zone.to_owned(),
            iat,
            exp: iat.saturating_add(valid_for.as_secs()),
        };
        // Serialising a struct of strings and integers cannot fail.
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let mac = URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, payload.as_bytes()));
        (format!("{PREFIX}{payload}.{mac}"), claims)
    }

    /// Verifies a token and that it was issued for `claimed_zone`.
    pub fn verify(&self, token: &str, claimed_zone: &str) -> Result<ZoneClaims, TokenError> {
        let (payload, mac) = token
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('.'))
            .ok_or(TokenError::Malformed)?;
        let mac = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| TokenError::Malformed)?;
        hmac::verify(&self.key, payload.as_bytes(), &mac).map_err(|_| TokenError::BadSignature)?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> ZoneTokens {
        ZoneTokens {
            key: hmac::Key::new(hmac::HMAC_SHA256, b"test key of the installation"),
        }
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
    fn forged_expired_and_garbage_tokens_are_refused() {
        let tokens = tokens();
        let other = ZoneTokens {
            key: hmac::Key::new(hmac::HMAC_SHA256, b"another installation"),
        };
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
