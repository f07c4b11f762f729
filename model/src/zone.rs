//! The `Zone` resource as global knows it: only whether sync to the zone is
//! enabled. Connection state lives in zone insights, not here.

use crate::error::{Validate, Violations};

/// The body of a `Zone`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ZoneSpec {
    /// `false` stops sync to and from the zone; absent means enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

impl ZoneSpec {
    /// Whether the zone may sync (absent = enabled, as in Kuma).
    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }
}

impl Validate for ZoneSpec {
    fn validate(&self, _path: &str, _v: &mut Violations) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enabled_defaults_to_true() {
        let cases = [(None, true), (Some(true), true), (Some(false), false)];
        for (enabled, want) in cases {
            assert_eq!(ZoneSpec { enabled }.is_enabled(), want);
        }
    }
}
