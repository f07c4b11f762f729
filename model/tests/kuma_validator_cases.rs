//! Kuma's own validator test cases, run against Meridian's validator.
//!
//! The data in `tests/fixtures/kuma-validator/<Kind>.yaml` is ported from the
//! Ginkgo tables of Kuma's `pkg/plugins/policies/<kind>/api/v1alpha1/validator_test.go`
//! (and, for MeshService and MeshMultiZoneService, of
//! `pkg/core/resources/apis/<kind>/api/v1alpha1/validator_test.go`)
//! (kumahq/kuma, tag v2.14.3; each file's header names its source): one item
//! per Kuma `Entry`, with Kuma's verdict (`valid`), Kuma's expected violations
//! for invalid cases, and the input spec. Only the data was taken, no Kuma code.
//!
//! For every policy case the spec is parsed with [`SpecBody::parse`]; the
//! MeshService and MeshMultiZoneService cases (not policies: their rules read
//! the resource's name too) are wrapped into a whole document and parsed with
//! [`parse_document`]. Only the verdict is compared: Kuma valid ⇔ Meridian `Ok`. Messages and fields are not
//! compared. Every disagreement must be listed in
//! `tests/fixtures/kuma-validator/known-differences.yaml` with the reason, and
//! every listed one must still disagree, so that list is exactly what Meridian
//! does differently from Kuma on these cases. The test prints
//! `N cases, M agree (P %)` per kind and overall (`-- --nocapture` to see it).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use meridian_model::{ResourceKind, SpecBody, parse_document};
use serde_json::Value;

/// The file of known disagreements, next to the case files.
const KNOWN_DIFFERENCES: &str = "known-differences.yaml";

/// A verdict on a spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Valid,
    Invalid,
}

impl Verdict {
    fn of(valid: bool) -> Self {
        if valid { Self::Valid } else { Self::Invalid }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Valid => "valid",
            Self::Invalid => "invalid",
        })
    }
}

/// One Kuma test case.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// The Ginkgo `Entry` description (unique within its file).
    name: String,
    /// Kuma's verdict.
    valid: bool,
    /// Kuma's expected violations (invalid cases only).
    #[serde(default)]
    violations: Vec<KumaViolation>,
    /// Extra context Kuma's case set (origin, labels, namespace…), verbatim.
    #[serde(default)]
    context: Option<BTreeMap<String, Value>>,
    /// The resource's name, for kinds whose rules read it (MeshService).
    #[serde(default)]
    resource_name: Option<String>,
    /// The resource's spec.
    spec: Value,
}

/// The kinds whose cases are whole documents (spec under `spec`, plus a name)
/// rather than a policy spec.
fn is_document_kind(kind: ResourceKind) -> bool {
    matches!(
        kind,
        ResourceKind::MeshService | ResourceKind::MeshMultiZoneService
    )
}

/// Meridian's verdict on a case: `Err` carries what it said.
fn meridian_parse(kind: ResourceKind, case: &Case) -> Result<(), String> {
    if is_document_kind(kind) {
        let doc = serde_json::json!({
            "type": kind.type_name(),
            "mesh": "default",
            "name": case.resource_name.as_deref().unwrap_or("case"),
            "spec": case.spec.clone(),
        });
        parse_document(doc).map(drop).map_err(|e| e.to_string())
    } else {
        assert!(
            case.resource_name.is_none(),
            "{kind} / {}: resource_name is only read for MeshService and MeshMultiZoneService",
            case.name
        );
        SpecBody::parse(kind, case.spec.clone())
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// A violation as Kuma's test expects it.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KumaViolation {
    field: String,
    message: String,
}

/// A disagreement known and explained.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KnownDifference {
    kind: String,
    name: String,
    kuma: Verdict,
    meridian: Verdict,
    reason: String,
}

/// A case on which Meridian's verdict differs from Kuma's.
#[derive(Debug)]
struct Disagreement {
    kind: ResourceKind,
    name: String,
    kuma: Verdict,
    meridian: Verdict,
    /// What each side said, for the failure message.
    detail: String,
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kuma-validator")
}

fn read_yaml<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_norway::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not a valid fixture: {e}", path.display()))
}

/// The case files, sorted, with the kind each is named after.
fn case_files() -> Vec<(ResourceKind, PathBuf)> {
    let mut files: Vec<(ResourceKind, PathBuf)> = std::fs::read_dir(fixture_dir())
        .expect("fixture directory exists")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "yaml")
                && p.file_name().is_some_and(|n| n != KNOWN_DIFFERENCES)
        })
        .map(|p| {
            let stem = p
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("UTF-8 file name");
            let kind: ResourceKind = stem
                .parse()
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert_eq!(
                kind.type_name(),
                stem,
                "{}: name the file after the exact type name",
                p.display()
            );
            assert!(
                kind.is_policy() || is_document_kind(kind),
                "{}: neither a policy kind nor MeshService/MeshMultiZoneService",
                p.display()
            );
            (kind, p)
        })
        .collect();
    files.sort();
    files
}

fn describe_kuma(case: &Case) -> String {
    if case.violations.is_empty() {
        return "Kuma: valid".to_owned();
    }
    let list: Vec<String> = case
        .violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.message))
        .collect();
    format!("Kuma: {}", list.join("; "))
}

/// Runs every case of one file; returns its cases and the disagreements.
fn run_file(kind: ResourceKind, path: &Path) -> (Vec<Case>, Vec<Disagreement>) {
    let cases: Vec<Case> = read_yaml(path);
    assert!(!cases.is_empty(), "{}: no cases", path.display());
    let mut names = BTreeSet::new();
    let mut disagreements = Vec::new();
    for case in &cases {
        assert!(
            names.insert(case.name.as_str()),
            "{}: case name {:?} is used twice",
            path.display(),
            case.name
        );
        assert_eq!(
            case.valid,
            case.violations.is_empty(),
            "{} / {}: a valid case lists no violations, an invalid one at least one",
            kind,
            case.name
        );
        let kuma = Verdict::of(case.valid);
        let result = meridian_parse(kind, case);
        let meridian = Verdict::of(result.is_ok());
        if kuma != meridian {
            let said = match result {
                Ok(()) => "Meridian: valid".to_owned(),
                Err(e) => format!("Meridian: {e}"),
            };
            let context = case
                .context
                .as_ref()
                .map(|c| format!("\n      context: {c:?}"))
                .unwrap_or_default();
            disagreements.push(Disagreement {
                kind,
                name: case.name.clone(),
                kuma,
                meridian,
                detail: format!("{}\n      {said}{context}", describe_kuma(case)),
            });
        }
    }
    (cases, disagreements)
}

fn summary(cases: usize, agree: usize) -> String {
    let percent = if cases == 0 {
        100.0
    } else {
        agree as f64 * 100.0 / cases as f64
    };
    format!("{cases} cases, {agree} agree ({percent:.1} %)")
}

#[test]
fn meridian_agrees_with_kuma_on_kumas_validator_cases() {
    let files = case_files();
    assert!(!files.is_empty(), "no case files");
    let mut total = (0, 0);
    let mut found: Vec<Disagreement> = Vec::new();
    let mut lines = Vec::new();
    let mut all_cases: BTreeMap<(String, String), Verdict> = BTreeMap::new();
    for (kind, path) in &files {
        let (cases, d) = run_file(*kind, path);
        let (n, agree) = (cases.len(), cases.len() - d.len());
        for c in cases {
            all_cases.insert((kind.type_name().to_owned(), c.name), Verdict::of(c.valid));
        }
        lines.push(format!("{:<26} {}", kind.type_name(), summary(n, agree)));
        total.0 += n;
        total.1 += agree;
        found.extend(d);
    }
    lines.push(format!("{:<26} {}", "overall", summary(total.0, total.1)));
    let report = lines.join("\n");
    println!("{report}");

    let known: Vec<KnownDifference> = read_yaml(&fixture_dir().join(KNOWN_DIFFERENCES));
    let mut problems = Vec::new();
    let mut listed: BTreeMap<(String, String), &KnownDifference> = BTreeMap::new();
    for k in &known {
        let key = (k.kind.clone(), k.name.clone());
        if listed.insert(key.clone(), k).is_some() {
            problems.push(format!("listed twice: {} / {}", k.kind, k.name));
        }
        if k.reason.trim().is_empty() {
            problems.push(format!("no reason given: {} / {}", k.kind, k.name));
        }
        match all_cases.get(&key) {
            None => problems.push(format!("listed but no such case: {} / {}", k.kind, k.name)),
            Some(v) if *v != k.kuma => problems.push(format!(
                "listed with kuma: {} but the case says {v}: {} / {}",
                k.kuma, k.kind, k.name
            )),
            Some(_) => {}
        }
    }
    let mut seen = BTreeSet::new();
    for d in &found {
        let key = (d.kind.type_name().to_owned(), d.name.clone());
        seen.insert(key.clone());
        match listed.get(&key) {
            None => problems.push(format!(
                "not listed: {} / {} (kuma: {}, meridian: {})\n      {}",
                d.kind, d.name, d.kuma, d.meridian, d.detail
            )),
            Some(k) if k.meridian != d.meridian => problems.push(format!(
                "listed with meridian: {} but Meridian says {}: {} / {}",
                k.meridian, d.meridian, d.kind, d.name
            )),
            Some(_) => {}
        }
    }
    for (key, k) in &listed {
        if all_cases.contains_key(key) && !seen.contains(key) {
            problems.push(format!(
                "listed but Meridian now agrees with Kuma (remove it): {} / {}",
                k.kind, k.name
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{report}\n\n{} problem(s) with {KNOWN_DIFFERENCES}:\n  - {}",
        problems.len(),
        problems.join("\n  - ")
    );
}
