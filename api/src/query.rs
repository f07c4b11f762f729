//! List query parameters: paging (`size`, `offset`) and label filters
//! (`filter[labels.KEY]=VALUE`, as Kuma's API spells them).

use std::collections::BTreeMap;

use meridian_model::FieldViolation;

use crate::problem::Problem;

/// Page size when the request gives none.
pub const DEFAULT_PAGE_SIZE: u64 = 100;
/// The largest page a client may ask for.
pub const MAX_PAGE_SIZE: u64 = 1000;
/// Largest accepted offset (far beyond any real listing, and exact in JSON).
pub const MAX_OFFSET: u64 = 1_000_000_000;

/// A parsed list query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListParams {
    /// Items per page.
    pub size: u64,
    /// Items to skip.
    pub offset: u64,
    /// Required labels.
    pub labels: BTreeMap<String, String>,
}

impl ListParams {
    /// Parses raw query pairs, reporting every bad or unknown parameter.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, Problem> {
        let mut params = ListParams {
            size: DEFAULT_PAGE_SIZE,
            offset: 0,
            labels: BTreeMap::new(),
        };
        let mut violations = Vec::new();
        for (key, value) in pairs {
            match key.as_str() {
                "size" => match value.parse::<u64>() {
                    Ok(size) if (1..=MAX_PAGE_SIZE).contains(&size) => params.size = size,
                    _ => violations.push(violation(
                        "size",
                        format!("must be an integer from 1 to {MAX_PAGE_SIZE}, got {value:?}"),
                    )),
                },
                "offset" => match value.parse::<u64>() {
                    Ok(offset) if offset <= MAX_OFFSET => params.offset = offset,
                    _ => violations.push(violation(
                        "offset",
                        format!("must be an integer from 0 to {MAX_OFFSET}, got {value:?}"),
                    )),
                },
                other => match other
                    .strip_prefix("filter[labels.")
                    .and_then(|rest| rest.strip_suffix(']'))
                {
                    Some(label) if !label.is_empty() => {
                        params.labels.insert(label.to_owned(), value.clone());
                    }
                    _ => violations.push(violation(
                        other,
                        "unknown query parameter; expected size, offset or filter[labels.KEY]"
                            .to_owned(),
                    )),
                },
            }
        }
        if violations.is_empty() {
            Ok(params)
        } else {
            Err(Problem {
                detail: "invalid query parameters".to_owned(),
                ..Problem::invalid(violations)
            })
        }
    }

    /// The query string of the page after this one.
    pub fn next_page_query(&self) -> String {
        let mut pairs: Vec<(String, String)> = vec![
            (
                "offset".into(),
                self.offset.saturating_add(self.size).to_string(),
            ),
            ("size".into(), self.size.to_string()),
        ];
        pairs.extend(
            self.labels
                .iter()
                .map(|(k, v)| (format!("filter[labels.{k}]"), v.clone())),
        );
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }
}

fn violation(field: &str, reason: String) -> FieldViolation {
    FieldViolation {
        field: field.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_and_filters() {
        let params = ListParams::parse(&pairs(&[("filter[labels.kuma.io/zone]", "z1")])).unwrap();
        assert_eq!(params.size, DEFAULT_PAGE_SIZE);
        assert_eq!(params.offset, 0);
        assert_eq!(params.labels["kuma.io/zone"], "z1");
    }

    #[test]
    fn the_next_page_of_the_last_offset_does_not_overflow() {
        let params = ListParams::parse(&pairs(&[
            ("offset", &MAX_OFFSET.to_string()),
            ("size", "1000"),
        ]))
        .expect("valid");
        assert!(
            params
                .next_page_query()
                .contains(&format!("offset={}", MAX_OFFSET + 1000))
        );
        assert!(ListParams::parse(&pairs(&[("offset", &u64::MAX.to_string())])).is_err());
    }

    #[test]
    fn reports_every_bad_parameter() {
        let err = ListParams::parse(&pairs(&[
            ("size", "0"),
            ("offset", "-1"),
            ("colour", "red"),
        ]))
        .unwrap_err();
        let fields: Vec<_> = err
            .invalid_parameters
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["size", "offset", "colour"]);
    }

    #[test]
    fn next_page_keeps_filters() {
        let params = ListParams::parse(&pairs(&[
            ("size", "2"),
            ("offset", "4"),
            ("filter[labels.team]", "a b"),
        ]))
        .unwrap();
        assert_eq!(
            params.next_page_query(),
            "offset=6&size=2&filter%5Blabels.team%5D=a+b"
        );
    }
}
