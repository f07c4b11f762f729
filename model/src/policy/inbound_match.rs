//! `matches` of inbound `rules` (Kuma 2.10+'s `common_api.Match`): which
//! incoming connections a rule applies to, by the client's SPIFFE ID and the
//! SNI the client sent.
//!
//! A match with both `spiffeID` and `sni` needs both; a list of matches needs
//! any one. The SPIFFE ID syntax is go-spiffe's (what Kuma checks with
//! `spiffeid.FromString`), hand-written here because no maintained Rust crate
//! exposes just the parser; the SNI must be a DNS-1123 subdomain.

use crate::error::{Validate, Violations, join};

/// Conditions on an incoming connection.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Match {
    /// The client's SPIFFE ID (from its certificate).
    #[serde(rename = "spiffeID", default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(rename = "spiffeID"))]
    pub spiffe_id: Option<SpiffeIdMatch>,
    /// The SNI of the client's TLS handshake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<SniMatch>,
}

/// A condition on the client's SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SpiffeIdMatch {
    /// `Exact` or `Prefix`.
    #[serde(rename = "type")]
    pub type_: SpiffeIdMatchType,
    /// A SPIFFE ID (`spiffe://<trust domain>[/<path>]`).
    #[serde(default)]
    pub value: String,
}

/// How a SPIFFE ID is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum SpiffeIdMatchType {
    /// The whole ID.
    Exact,
    /// The ID starts with the value.
    Prefix,
}

/// A condition on the SNI.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SniMatch {
    /// Only `Exact`.
    #[serde(rename = "type")]
    pub type_: SniMatchType,
    /// The server name (a DNS-1123 subdomain).
    #[serde(default)]
    pub value: String,
}

/// How an SNI is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum SniMatchType {
    /// The whole name.
    Exact,
}

/// What an inbound knows of a client when it evaluates `matches` and `from`.
#[derive(Clone, Copy)]
pub struct ClientView<'a> {
    /// The client's service (its SPIFFE ID's path), what `from` refs select.
    pub service: &'a str,
    /// The client's SPIFFE ID as its certificate states it.
    pub spiffe_id: &'a str,
    /// The SNI the client sent, if any.
    pub sni: Option<&'a str>,
    /// Whether the client's certificate states tag `key` = `value`.
    pub has_tag: &'a (dyn Fn(&str, &str) -> bool + Sync),
}

impl std::fmt::Debug for ClientView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientView")
            .field("service", &self.service)
            .field("spiffe_id", &self.spiffe_id)
            .field("sni", &self.sni)
            .finish_non_exhaustive()
    }
}

impl Match {
    /// Whether the client meets every condition; a match without any
    /// condition meets none (Kuma skips it).
    pub fn matches(&self, client: &ClientView<'_>) -> bool {
        if self.spiffe_id.is_none() && self.sni.is_none() {
            return false;
        }
        let spiffe_ok = self.spiffe_id.as_ref().is_none_or(|m| match m.type_ {
            SpiffeIdMatchType::Exact => client.spiffe_id == m.value,
            SpiffeIdMatchType::Prefix => client.spiffe_id.starts_with(&m.value),
        });
        let sni_ok = self
            .sni
            .as_ref()
            .is_none_or(|m| client.sni == Some(m.value.as_str()));
        spiffe_ok && sni_ok
    }

    /// Whether any of `matches` holds for the client.
    pub fn any(matches: &[Match], client: &ClientView<'_>) -> bool {
        matches.iter().any(|m| m.matches(client))
    }
}

impl Validate for Match {
    fn validate(&self, path: &str, v: &mut Violations) {
        if let Some(id) = &self.spiffe_id
            && let Err(e) = validate_spiffe_id(&id.value)
        {
            v.add(
                join(path, "spiffeID"),
                format!("must be a valid Spiffe ID: {e} (got {:?})", id.value),
            );
        }
        if let Some(sni) = &self.sni {
            if sni.value.is_empty() {
                v.add(join(path, "sni.value"), "must be set");
            } else if let Err(e) = crate::name::validate_name(&sni.value) {
                v.add(
                    join(path, "sni.value"),
                    format!("must be a lower-case RFC 1123 subdomain: {e}"),
                );
            }
        }
    }
}

/// Validates every match of a list at `path[i]`.
pub(crate) fn validate_matches(path: &str, matches: Option<&[Match]>, v: &mut Violations) {
    for (i, m) in matches.into_iter().flatten().enumerate() {
        m.validate(&crate::error::index(path, i), v);
    }
}

/// go-spiffe's `spiffeid.FromString` rules (and its messages).
fn validate_spiffe_id(id: &str) -> Result<(), &'static str> {
    let rest = id
        .strip_prefix("spiffe://")
        .ok_or("scheme is missing or invalid")?;
    let (trust_domain, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    if trust_domain.is_empty() {
        return Err("trust domain is missing");
    }
    if !trust_domain
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
    {
        return Err(
            "trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores",
        );
    }
    if path.is_empty() {
        return Ok(());
    }
    if path.ends_with('/') {
        return Err("path cannot have a trailing slash");
    }
    for segment in path[1..].split('/') {
        match segment {
            "" => return Err("path cannot contain empty segments"),
            "." | ".." => return Err("path cannot contain dot segments"),
            s if !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) =>
            {
                return Err(
                    "path segment characters are limited to letters, numbers, dots, dashes, and underscores",
                );
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_id_syntax() {
        let cases = [
            ("spiffe://trust.domain", Ok(())),
            ("spiffe://default/ns/backend-ns/sa/backend", Ok(())),
            ("spiffe://default/web", Ok(())),
            ("some-service", Err("scheme is missing or invalid")),
            ("spiffe://", Err("trust domain is missing")),
            ("spiffe:///path", Err("trust domain is missing")),
            (
                "spiffe://Default/web",
                Err(
                    "trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores",
                ),
            ),
            (
                "spiffe://default/ns/",
                Err("path cannot have a trailing slash"),
            ),
            (
                "spiffe://default//web",
                Err("path cannot contain empty segments"),
            ),
            (
                "spiffe://default/../web",
                Err("path cannot contain dot segments"),
            ),
            (
                "spiffe://default/a%2Fb",
                Err(
                    "path segment characters are limited to letters, numbers, dots, dashes, and underscores",
                ),
            ),
        ];
        for (id, want) in cases {
            assert_eq!(validate_spiffe_id(id), want, "{id}");
        }
    }

    #[test]
    fn matching_needs_every_condition_of_a_match() {
        let no_tags = |_: &str, _: &str| false;
        let client = ClientView {
            service: "web",
            spiffe_id: "spiffe://default/web",
            sni: Some("backend.default"),
            has_tag: &no_tags,
        };
        let m: Vec<Match> = serde_json::from_value(serde_json::json!([
            {"spiffeID": {"type": "Exact", "value": "spiffe://default/web"}},
            {"spiffeID": {"type": "Prefix", "value": "spiffe://default/"}},
            {"spiffeID": {"type": "Prefix", "value": "spiffe://other"}},
            {"sni": {"type": "Exact", "value": "backend.default"}},
            {"spiffeID": {"type": "Exact", "value": "spiffe://default/web"},
             "sni": {"type": "Exact", "value": "other.default"}},
            {}
        ]))
        .expect("parse");
        let got: Vec<bool> = m.iter().map(|m| m.matches(&client)).collect();
        assert_eq!(got, [true, true, false, true, false, false]);
        assert!(Match::any(&m, &client));
        assert!(!Match::any(&m[2..3], &client));
    }
}
