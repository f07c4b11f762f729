//! Fuzzes resource documents as the REST API reads them: the request body parsed
//! as JSON (`serde_json`) and as YAML (`serde_norway`), exactly as
//! `meridian_api::body::parse_document` does for the two content types, then
//! `meridian_model::parse_document` (meta fields, labels, and the kind's spec), and
//! `Spec::from_value` for every kind on both the whole document and its `spec`
//! field (the stored-spec path that KDS and the store use). Checked:
//!
//! - nothing panics, whatever the bytes;
//! - an accepted document round-trips: its rendering (`Resource::to_document`)
//!   parses back to the same resource;
//! - an accepted spec is canonical: `Spec::from_value(kind, spec.to_value())` gives
//!   the same spec back, and its value again (the documented `to_value` contract);
//! - every rejection renders (violations are returned to the client).
//!
//! Seeds: the universal-format examples of the seed pages and the test fixtures,
//! in YAML and JSON (`examples/seed_corpus.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_model::{ResourceKind, Spec, parse_document};
use serde_json::Value;

fn check_spec(kind: ResourceKind, value: Value) {
    match Spec::from_value(kind, value) {
        Ok(spec) => {
            assert_eq!(spec.kind(), kind);
            let canonical = spec.to_value();
            let again = Spec::from_value(kind, canonical.clone()).unwrap_or_else(|e| {
                panic!("{kind}: the canonical spec {canonical} is refused: {e}")
            });
            assert_eq!(
                again, spec,
                "{kind}: the canonical spec parses to another spec"
            );
            assert_eq!(
                again.to_value(),
                canonical,
                "{kind}: to_value is not stable"
            );
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
}

fn check_value(value: Value) {
    for kind in ResourceKind::ALL {
        check_spec(kind, value.clone());
        if let Some(spec) = value.get("spec") {
            check_spec(kind, spec.clone());
        }
    }
    match parse_document(value) {
        Ok(resource) => {
            let document = resource.to_document();
            let again = parse_document(document.clone())
                .unwrap_or_else(|e| panic!("the rendered document {document} is refused: {e}"));
            assert_eq!(
                again, resource,
                "the rendered document parses to another resource"
            );
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        check_value(value);
    }
    if let Ok(value) = serde_norway::from_slice::<Value>(data) {
        check_value(value);
    }
});
