//! Validation errors: every problem found in a document, each named by the
//! path of the offending field as the user wrote it (e.g.
//! `spec.to[0].targetRef.name`), so the REST API can report them all at once.

use std::fmt;

/// One problem with one field of a resource.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldViolation {
    /// Path of the field as written in the document, e.g. `spec.to[0].targetRef.kind`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FieldViolation {
    /// A violation of `field` for `reason`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A resource failed validation; carries every violation found, not just the first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    /// The violations, in document order where possible.
    pub violations: Vec<FieldViolation>,
}

impl ValidationError {
    /// An error with a single violation.
    pub fn single(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            violations: vec![FieldViolation::new(field, reason)],
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid resource: ")?;
        for (i, v) in self.violations.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", v.field, v.reason)?;
        }
        Ok(())
    }
}

/// Collects violations while a spec is walked.
#[derive(Debug, Default)]
pub(crate) struct Violations(pub(crate) Vec<FieldViolation>);

impl Violations {
    /// Records a violation.
    pub(crate) fn add(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.0.push(FieldViolation::new(field, reason));
    }

    /// Appends the violations of another error.
    pub(crate) fn extend(&mut self, err: ValidationError) {
        self.0.extend(err.violations);
    }

    /// `Ok(value)` when nothing was recorded.
    pub(crate) fn into_result<T>(self, value: T) -> Result<T, ValidationError> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(ValidationError { violations: self.0 })
        }
    }
}

/// `path.field`, or `field` at the root.
pub(crate) fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// `path[i]`.
pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// How a JSON value's type reads in a message ("an array").
pub(crate) fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Semantic validation of an already-deserialized value.
pub(crate) trait Validate {
    /// Records every violation under `path`.
    fn validate(&self, path: &str, v: &mut Violations);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_lists_every_violation() {
        let err = ValidationError {
            violations: vec![
                FieldViolation::new(
                    "spec.to[0].targetRef.name",
                    "must be set for kind MeshService",
                ),
                FieldViolation::new("name", "must not be empty"),
            ],
        };
        assert_eq!(
            err.to_string(),
            "invalid resource: spec.to[0].targetRef.name: must be set for kind MeshService; name: must not be empty"
        );
    }

    #[test]
    fn paths() {
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("spec", "to"), "spec.to");
        assert_eq!(index("spec.to", 2), "spec.to[2]");
    }
}
