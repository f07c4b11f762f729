//! Syntax of names, labels and tags.
//!
//! - Resource names are DNS-1123 subdomains and mesh names DNS-1123 labels, as
//!   in Kuma and Kubernetes, because they end up in SNI names and SPIFFE IDs.
//! - Labels follow Kubernetes label syntax (optional DNS prefix, e.g.
//!   `kuma.io/origin`).
//! - Dataplane tags follow Kuma's tag character set, which is wider than DNS
//!   (`backend_kuma-demo_svc_3001` is a valid `kuma.io/service` value).

/// Validates a resource name: a DNS-1123 subdomain (lower-case alphanumerics,
/// `-` and `.`, starting and ending with an alphanumeric, at most 253 characters).
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 253 {
        return Err(format!(
            "must be at most 253 characters (got {})",
            name.len()
        ));
    }
    for part in name.split('.') {
        check_dns_label(part).map_err(|e| {
            format!("{e}: a name must consist of lower-case alphanumeric characters, '-' or '.', and start and end with an alphanumeric character")
        })?;
    }
    Ok(())
}

/// Validates a mesh name: a DNS-1123 label (like a name, but at most 63
/// characters and without dots).
pub fn validate_mesh_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 63 {
        return Err(format!(
            "must be at most 63 characters (got {})",
            name.len()
        ));
    }
    check_dns_label(name).map_err(|e| {
        format!("{e}: a mesh name must consist of lower-case alphanumeric characters or '-', and start and end with an alphanumeric character")
    })
}

fn check_dns_label(s: &str) -> Result<(), &'static str> {
    let bytes = s.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(&f), Some(&l)) if alnum(f) && alnum(l) => {}
        (None, _) | (_, None) => return Err("empty segment"),
        _ => return Err("invalid first or last character"),
    }
    if bytes.len() > 63 {
        return Err("segment longer than 63 characters");
    }
    if bytes.iter().all(|&b| alnum(b) || b == b'-') {
        Ok(())
    } else {
        Err("invalid character")
    }
}

/// Validates a Kubernetes-style label key: `[prefix/]name`, prefix a DNS
/// subdomain, name at most 63 of `[A-Za-z0-9._-]` starting and ending alphanumeric.
pub(crate) fn validate_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        validate_name(p).map_err(|e| format!("invalid prefix {p:?}: {e}"))?;
    }
    check_label_name(name).map_err(|e| format!("invalid key {key:?}: {e}"))
}

/// Validates a Kubernetes-style label value: empty, or like a label name.
pub(crate) fn validate_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    check_label_name(value).map_err(|e| format!("invalid value {value:?}: {e}"))
}

fn check_label_name(s: &str) -> Result<(), &'static str> {
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return Err("must not be empty");
    }
    if bytes.len() > 63 {
        return Err("must be at most 63 characters");
    }
    let first_last_ok = bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric);
    if !first_last_ok {
        return Err("must start and end with an alphanumeric character");
    }
    if bytes
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        Ok(())
    } else {
        Err("may only contain alphanumerics, '-', '_' or '.'")
    }
}

/// Validates a Kuma tag key: non-empty, `[A-Za-z0-9.\-_:/]`.
pub(crate) fn validate_tag_key(key: &str) -> Result<(), String> {
    check_tag(key, true).map_err(|e| format!("invalid tag key {key:?}: {e}"))
}

/// Validates a Kuma tag value: non-empty, `[A-Za-z0-9.\-_:]`.
pub(crate) fn validate_tag_value(value: &str) -> Result<(), String> {
    check_tag(value, false).map_err(|e| format!("invalid tag value {value:?}: {e}"))
}

fn check_tag(s: &str, slash: bool) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("must not be empty");
    }
    if s.len() > 253 {
        return Err("must be at most 253 characters");
    }
    let ok = s.bytes().all(|b| {
        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':') || (slash && b == b'/')
    });
    if ok {
        Ok(())
    } else if slash {
        Err("may only contain alphanumerics, '.', '-', '_', ':' or '/'")
    } else {
        Err("may only contain alphanumerics, '.', '-', '_' or ':'")
    }
}

/// Validates a host: an IP address or a DNS name (case-insensitive).
pub(crate) fn validate_host(host: &str) -> Result<(), String> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    validate_name(&host.to_ascii_lowercase())
        .map_err(|e| format!("must be an IP address or a DNS name: {e}"))
}

/// Validates a TCP port number held in a wider integer so out-of-range values
/// get a clear reason rather than a type error.
pub(crate) fn validate_port(port: u32) -> Result<(), String> {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(format!("must be in 1..=65535 (got {port})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let long = "a".repeat(254);
        let label64 = "a".repeat(64);
        let cases: &[(&str, bool, bool)] = &[
            // name, valid name, valid mesh name
            ("default", true, true),
            ("tcp-route-1", true, true),
            ("a.b.c", true, false),
            ("a", true, true),
            ("", false, false),
            ("-a", false, false),
            ("a-", false, false),
            ("A", false, false),
            ("a_b", false, false),
            ("a..b", false, false),
            (".a", false, false),
            ("a/b", false, false),
            ("ünï", false, false),
            (&long, false, false),
            (&label64, false, false),
        ];
        for &(name, ok, mesh_ok) in cases {
            assert_eq!(validate_name(name).is_ok(), ok, "name {name:?}");
            assert_eq!(validate_mesh_name(name).is_ok(), mesh_ok, "mesh {name:?}");
        }
    }

    #[test]
    fn labels() {
        let cases = [
            ("kuma.io/origin", "zone", true),
            ("app", "", true),
            ("team_x", "A.b-c_d", true),
            ("Kuma.io/origin", "zone", false),
            ("/x", "y", false),
            ("x/", "y", false),
            ("a", "-b", false),
            ("a", "b c", false),
        ];
        for (k, v, ok) in cases {
            let got = validate_label_key(k)
                .and_then(|_| validate_label_value(v))
                .is_ok();
            assert_eq!(got, ok, "{k}={v}");
        }
    }

    #[test]
    fn tags_hosts_ports() {
        assert!(validate_tag_key("kuma.io/service").is_ok());
        assert!(validate_tag_value("backend_kuma-demo_svc_3001").is_ok());
        assert!(validate_tag_value("a/b").is_err());
        assert!(validate_tag_value("").is_err());
        assert!(validate_tag_key("a b").is_err());
        assert!(validate_host("10.0.0.1").is_ok());
        assert!(validate_host("::1").is_ok());
        assert!(validate_host("Backend.svc").is_ok());
        assert!(validate_host("bad host").is_err());
        assert!(validate_port(0).is_err());
        assert!(validate_port(65536).is_err());
        assert!(validate_port(8080).is_ok());
    }
}
