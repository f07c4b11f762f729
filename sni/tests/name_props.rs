//! Property tests of the SNI name format: any input gives a valid DNS name
//! that passes the quick check, and distinct targets give distinct names.

use std::collections::{BTreeMap, HashMap};

use meridian_sni::{SniTarget, is_valid_dns_name, looks_like_meridian_sni};
use proptest::prelude::*;

/// Any strings, including unicode, control characters and very long ones.
fn any_target() -> impl Strategy<Value = SniTarget> {
    (
        any::<String>(),
        prop_oneof![any::<String>(), "[a-zA-Z0-9_.-]{0,300}"],
        prop::collection::btree_map(any::<String>(), any::<String>(), 0..20),
    )
        .prop_map(|(mesh, service, subset)| SniTarget {
            mesh,
            service,
            subset,
        })
}

/// Targets from a tiny alphabet, so that slugs collide often and only the hash
/// can tell the names apart.
fn near_target() -> impl Strategy<Value = SniTarget> {
    (
        "[aA._-]{0,4}",
        "[aA._-]{0,4}",
        prop::collection::btree_map("[a._-]{0,2}", "[a._-]{0,2}", 0..3),
    )
        .prop_map(|(mesh, service, subset)| SniTarget {
            mesh,
            service,
            subset,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn always_a_valid_dns_name(target in any_target()) {
        let sni = target.to_sni();
        prop_assert!(is_valid_dns_name(&sni), "{sni:?} from {target:?}");
        prop_assert!(sni.len() <= 253);
        prop_assert!(sni.split('.').all(|l| (1..=63).contains(&l.len())));
        prop_assert!(sni.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'));
        prop_assert!(looks_like_meridian_sni(&sni), "{sni:?}");
        prop_assert_eq!(sni.clone(), target.clone().to_sni(), "deterministic");
        prop_assert_eq!(sni.split('.').count(), if target.subset.is_empty() { 4 } else { 5 });
    }

    #[test]
    fn distinct_targets_distinct_names(a in near_target(), b in near_target()) {
        if a != b {
            prop_assert_ne!(a.to_sni(), b.to_sni(), "{:?} vs {:?}", a, b);
        } else {
            prop_assert_eq!(a.to_sni(), b.to_sni());
        }
    }

    #[test]
    fn readable_service_and_mesh(mesh in "[a-z][a-z0-9]{0,20}", service in "[a-z][a-z0-9]{0,20}") {
        let sni = SniTarget::new(mesh.clone(), service.clone()).to_sni();
        let expected_suffix = format!(".{mesh}.mesh.meridian");
        prop_assert!(sni.starts_with(&format!("{service}-")), "{}", sni);
        prop_assert!(sni.ends_with(&expected_suffix), "{}", sni);
    }

    #[test]
    fn random_strings_are_rejected(s in any::<String>()) {
        // Almost no string is a Meridian name; those that pass must at least be
        // valid DNS names of the right shape.
        if looks_like_meridian_sni(&s) {
            prop_assert!(is_valid_dns_name(&s));
            prop_assert!(s.to_ascii_lowercase().ends_with(".mesh.meridian"));
        }
    }
}

/// Every target of a small exhaustive space, where slugs collide massively,
/// has its own name.
#[test]
fn exhaustive_small_space_has_no_collisions() {
    let parts = [
        "", "a", "A", "a.b", "a_b", "a-b", "b", "a.", ".a", "ab", "é",
    ];
    let subsets: Vec<BTreeMap<String, String>> = vec![
        BTreeMap::new(),
        BTreeMap::from([("v".into(), "1".into())]),
        BTreeMap::from([("v".into(), "".into())]),
        BTreeMap::from([("".into(), "v".into())]),
        BTreeMap::from([("v-1".into(), "".into())]),
        BTreeMap::from([("v".into(), "1".into()), ("w".into(), "".into())]),
    ];
    let mut seen: HashMap<String, SniTarget> = HashMap::new();
    for mesh in parts {
        for service in parts {
            for subset in &subsets {
                let target = SniTarget {
                    mesh: mesh.into(),
                    service: service.into(),
                    subset: subset.clone(),
                };
                let sni = target.to_sni();
                assert!(is_valid_dns_name(&sni), "{sni}");
                if let Some(other) = seen.insert(sni.clone(), target.clone()) {
                    panic!("{sni} for both {other:?} and {target:?}");
                }
            }
        }
    }
    assert_eq!(seen.len(), parts.len() * parts.len() * subsets.len());
}
