//! Fuzzes the SNI name format of `meridian_sni::name`: [`SniTarget::to_sni`] on
//! arbitrary meshes, services and subsets, and the two checks a router runs on a
//! received server name, [`is_valid_dns_name`] and [`looks_like_meridian_sni`].
//!
//! Checked, for any input:
//!
//! - nothing panics;
//! - `to_sni` always gives a valid DNS name of at most 205 characters, all
//!   lowercase, that `looks_like_meridian_sni` accepts (also in upper case), and
//!   the same name every time (it is part of the wire format between zones);
//! - `looks_like_meridian_sni(s)` implies `is_valid_dns_name(s)` for any string `s`,
//!   and both ignore ASCII case.
//!
//! The input is decoded with `arbitrary` into `(mesh, service, subset, received)`.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use meridian_sni::{SniTarget, is_valid_dns_name, looks_like_meridian_sni};

fuzz_target!(
    |input: (String, String, BTreeMap<String, String>, String)| {
        let (mesh, service, subset, received) = input;

        let target = SniTarget {
            mesh,
            service,
            subset,
        };
        let sni = target.to_sni();
        assert!(is_valid_dns_name(&sni), "{sni:?} from {target:?}");
        assert!(looks_like_meridian_sni(&sni), "{sni:?} from {target:?}");
        assert!(sni.len() <= 205, "{} characters: {sni:?}", sni.len());
        assert_eq!(sni, sni.to_ascii_lowercase());
        assert!(looks_like_meridian_sni(&sni.to_ascii_uppercase()));
        assert_eq!(sni, target.to_sni(), "not deterministic");
        assert_eq!(sni, target.to_string());

        let looks = looks_like_meridian_sni(&received);
        let valid = is_valid_dns_name(&received);
        assert!(
            !looks || valid,
            "{received:?} looks like an SNI but is no DNS name"
        );
        assert_eq!(
            looks,
            looks_like_meridian_sni(&received.to_ascii_uppercase())
        );
        assert_eq!(valid, is_valid_dns_name(&received.to_ascii_lowercase()));
    }
);
