//! Tables for `meridian get`: a few columns per kind that say what a person checks
//! first (what a policy targets, where a dataplane runs, whether a zone is enabled).

use chrono::{DateTime, Utc};
use comfy_table::{Table, presets};
use meridian_model::ResourceKind;
use serde_json::Value;

/// Renders `items` of `kind` as a table; `now` is the reference for the AGE column.
pub fn render(kind: ResourceKind, items: &[Value], now: DateTime<Utc>) -> String {
    if items.is_empty() {
        return format!("no {} found\n", kind.plural());
    }
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    let header: Vec<&str> = match kind {
        ResourceKind::Mesh => vec!["NAME", "MTLS", "ZONE EGRESS", "AGE"],
        ResourceKind::Zone => vec!["NAME", "ENABLED", "AGE"],
        ResourceKind::Dataplane => vec!["MESH", "NAME", "ZONE", "ADDRESS", "SERVICES", "AGE"],
        ResourceKind::ZoneIngress | ResourceKind::ZoneEgress => {
            vec!["NAME", "ZONE", "ADDRESS", "AGE"]
        }
        ResourceKind::MeshService => {
            vec!["MESH", "NAME", "ZONE", "SELECTOR", "PORTS", "STATE", "AGE"]
        }
        ResourceKind::MeshMultiZoneService => vec!["MESH", "NAME", "SELECTOR", "PORTS", "AGE"],
        _ => vec!["MESH", "NAME", "TARGETREF", "TO", "FROM", "AGE"],
    };
    table.set_header(header);
    for item in items {
        let text = |pointer: &str| item.pointer(pointer).map(display).unwrap_or_default();
        let age = age(item, now);
        let row: Vec<String> = match kind {
            ResourceKind::Mesh => vec![
                text("/name"),
                item.pointer("/mtls/enabledBackend")
                    .map_or_else(|| "off".to_owned(), display),
                item.pointer("/routing/zoneEgress")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    .to_string(),
                age,
            ],
            ResourceKind::Zone => vec![
                text("/name"),
                item.get("enabled")
                    .and_then(Value::as_bool)
                    .unwrap_or(true)
                    .to_string(),
                age,
            ],
            ResourceKind::Dataplane => vec![
                text("/mesh"),
                text("/name"),
                text("/labels/kuma.io~1zone"),
                text("/networking/address"),
                dataplane_services(item),
                age,
            ],
            ResourceKind::ZoneIngress | ResourceKind::ZoneEgress => vec![
                text("/name"),
                text("/zone"),
                format!(
                    "{}:{}",
                    text("/networking/address"),
                    text("/networking/port")
                ),
                age,
            ],
            ResourceKind::MeshService => vec![
                text("/mesh"),
                text("/name"),
                text("/labels/kuma.io~1zone"),
                selector(item.pointer("/spec/selector")),
                ports(item),
                item.pointer("/spec/state")
                    .map_or_else(|| "-".to_owned(), display),
                age,
            ],
            ResourceKind::MeshMultiZoneService => vec![
                text("/mesh"),
                text("/name"),
                pairs(item.pointer("/spec/selector/meshService/matchLabels")),
                ports(item),
                age,
            ],
            _ => vec![
                text("/mesh"),
                text("/name"),
                item.pointer("/spec/targetRef")
                    .map(target_ref)
                    .unwrap_or_default(),
                entries(item, "/spec/to"),
                entries(item, "/spec/from"),
                age,
            ],
        };
        table.add_row(row);
    }
    format!("{table}\n")
}

fn display(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `MeshService backend`, `MeshSubset app=frontend`, `Mesh`.
fn target_ref(target: &Value) -> String {
    let mut parts = vec![target.get("kind").map(display).unwrap_or_default()];
    if let Some(name) = target.get("name") {
        parts.push(display(name));
    }
    if let Some(tags) = target.get("tags").and_then(Value::as_object) {
        let tags: Vec<String> = tags
            .iter()
            .map(|(k, v)| format!("{k}={}", display(v)))
            .collect();
        parts.push(tags.join(","));
    }
    parts.join(" ")
}

fn entries(item: &Value, pointer: &str) -> String {
    item.pointer(pointer)
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .filter_map(|e| e.get("targetRef").map(target_ref))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_else(|| "-".to_owned())
}

/// `k=v,k2=v2` of a string map, `-` when absent.
fn pairs(map: Option<&Value>) -> String {
    match map.and_then(Value::as_object) {
        Some(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", display(v)))
            .collect::<Vec<_>>()
            .join(","),
        None => "-".to_owned(),
    }
}

/// A MeshService selector: `tags k=v`, `dataplane NAME` or `labels k=v`.
fn selector(selector: Option<&Value>) -> String {
    let Some(s) = selector else {
        return "-".to_owned();
    };
    if let Some(tags) = s.get("dataplaneTags") {
        format!("tags {}", pairs(Some(tags)))
    } else if let Some(r) = s.get("dataplaneRef") {
        format!(
            "dataplane {}",
            r.get("name").map(display).unwrap_or_default()
        )
    } else if let Some(l) = s.get("dataplaneLabels") {
        format!("labels {}", pairs(l.get("matchLabels")))
    } else {
        "-".to_owned()
    }
}

/// `6379/tcp,8080/http`: each port with its protocol.
fn ports(item: &Value) -> String {
    item.pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ports| {
            ports
                .iter()
                .map(|p| {
                    let port = p.get("port").map(display).unwrap_or_default();
                    match p.get("appProtocol") {
                        Some(proto) => format!("{port}/{}", display(proto)),
                        None => port,
                    }
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_else(|| "-".to_owned())
}

fn dataplane_services(item: &Value) -> String {
    item.pointer("/networking/inbound")
        .and_then(Value::as_array)
        .map(|inbounds| {
            inbounds
                .iter()
                .filter_map(|i| i.pointer("/tags/kuma.io~1service").map(display))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn age(item: &Value, now: DateTime<Utc>) -> String {
    let Some(created) = item
        .get("creationTime")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
    else {
        return "-".to_owned();
    };
    let seconds = (now - created.with_timezone(&Utc)).num_seconds().max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn policy_rows_show_target_and_destinations() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T01:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let route = json!({
            "type": "MeshTCPRoute", "mesh": "default", "name": "tcp-route-1",
            "creationTime": "2026-01-01T00:30:00Z",
            "spec": {"targetRef": {"kind": "MeshSubset", "tags": {"app": "frontend"}},
                     "to": [{"targetRef": {"kind": "MeshService", "name": "backend"}}]}
        });
        let out = render(ResourceKind::MeshTcpRoute, &[route], now);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].contains("TARGETREF"), "{out}");
        assert!(lines[1].contains("tcp-route-1"), "{out}");
        assert!(lines[1].contains("MeshSubset app=frontend"), "{out}");
        assert!(lines[1].contains("MeshService backend"), "{out}");
        assert!(lines[1].trim_end().ends_with("30m"), "{out}");
    }

    #[test]
    fn mesh_services_show_zone_selector_and_ports() {
        let now = Utc::now();
        let service = json!({"mesh": "default", "name": "redis.zone-1",
            "labels": {"kuma.io/zone": "zone-1"},
            "spec": {"selector": {"dataplaneTags": {"kuma.io/service": "redis"}},
                     "ports": [{"port": 6379, "appProtocol": "tcp"}, {"port": 8080}],
                     "state": "Available"}});
        let out = render(ResourceKind::MeshService, &[service], now);
        let row = out.lines().nth(1).expect("a row");
        for want in [
            "redis.zone-1",
            "zone-1",
            "tags kuma.io/service=redis",
            "6379/tcp,8080",
            "Available",
        ] {
            assert!(row.contains(want), "{want} in {out}");
        }
        let multi = json!({"mesh": "default", "name": "redis",
            "spec": {"selector": {"meshService": {"matchLabels": {"app": "redis"}}},
                     "ports": [{"port": 6379, "appProtocol": "tcp"}]}});
        let out = render(ResourceKind::MeshMultiZoneService, &[multi], now);
        assert!(
            out.contains("app=redis") && out.contains("6379/tcp"),
            "{out}"
        );
    }

    #[test]
    fn empty_lists_say_so() {
        assert_eq!(
            render(ResourceKind::Zone, &[], Utc::now()),
            "no zones found\n"
        );
    }

    #[test]
    fn meshes_show_mtls_backend_or_off() {
        let out = render(
            ResourceKind::Mesh,
            &[
                json!({"name": "a", "mtls": {"enabledBackend": "ca-1"}}),
                json!({"name": "b"}),
            ],
            Utc::now(),
        );
        assert!(out.lines().nth(1).unwrap().contains("ca-1"), "{out}");
        assert!(out.lines().nth(2).unwrap().contains("off"), "{out}");
    }
}
