//! [`Destination`]: what one outbound of a proxy dials, in the terms `to`
//! targetRefs select.
//!
//! Two generations of Kuma's model name destinations differently:
//! - the 2.5 model: a `kuma.io/service` value and the outbound's tags
//!   ([`Destination::Service`]), selected by `MeshService`/`MeshServiceSubset`
//!   refs by `name` (the tag value);
//! - Kuma 2.x resources: one port of a MeshService or MeshMultiZoneService
//!   ([`Destination::MeshService`], [`Destination::MultiZone`]), selected by
//!   refs of the same kind by `name` (the resource's name in this zone's store),
//!   `labels` or `namespace`, narrowed to one port by `sectionName` (the port's
//!   name, or its number as text).
//!
//! The zone CP resolves an outbound to its destination (a `backendRef` needs
//! the zone's MeshServices); matching only compares.

use std::collections::BTreeMap;

use crate::dataplane::{Outbound, SERVICE_TAG};
use crate::target_ref::{NAMESPACE_LABEL, TargetRef, TargetRefKind};

/// One outbound's destination (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Destination {
    /// A `kuma.io/service` and the outbound's tags.
    Service {
        /// The `kuma.io/service` value.
        service: String,
        /// The outbound's tags (with `kuma.io/service`).
        tags: BTreeMap<String, String>,
    },
    /// One port of a MeshService of this zone's store (its own or another
    /// zone's, as synced).
    MeshService {
        /// The resource's name here.
        name: String,
        /// The resource's labels.
        labels: BTreeMap<String, String>,
        /// The port.
        port: u32,
        /// The port's name, when it has one.
        port_name: Option<String>,
    },
    /// One port of a MeshMultiZoneService.
    MultiZone {
        /// The resource's name.
        name: String,
        /// The resource's labels.
        labels: BTreeMap<String, String>,
        /// The port.
        port: u32,
        /// The port's name, when it has one.
        port_name: Option<String>,
    },
}

impl Destination {
    /// The destination of a tag-based outbound (2.5 model).
    pub fn of_tags(outbound: &Outbound) -> Self {
        Destination::Service {
            service: outbound.service().to_owned(),
            tags: outbound.tags.clone(),
        }
    }

    /// The destination of service `service` with no other tags.
    pub fn service(service: &str) -> Self {
        Destination::Service {
            service: service.to_owned(),
            tags: BTreeMap::from([(SERVICE_TAG.to_owned(), service.to_owned())]),
        }
    }

    /// The name a by-name `to` ref of it carries: the service, or the resource's name.
    pub fn name(&self) -> &str {
        match self {
            Destination::Service { service, .. } => service,
            Destination::MeshService { name, .. } | Destination::MultiZone { name, .. } => name,
        }
    }

    /// Whether a `to` targetRef selects this destination.
    pub fn selected_by(&self, t: &TargetRef) -> bool {
        match self {
            // A ref with a port, labels or a namespace means a resource
            // (Kuma's "real resource" refs), never a `kuma.io/service`.
            Destination::Service { service, tags } => {
                let resource_only = t.kind == TargetRefKind::MeshService
                    && (t.section_name.is_some() || t.labels.is_some() || t.namespace.is_some());
                !resource_only && t.selects(service, tags)
            }
            Destination::MeshService {
                name,
                labels,
                port,
                port_name,
            }
            | Destination::MultiZone {
                name,
                labels,
                port,
                port_name,
            } => {
                let kind = match self {
                    Destination::MeshService { .. } => TargetRefKind::MeshService,
                    _ => TargetRefKind::MeshMultiZoneService,
                };
                match t.kind {
                    TargetRefKind::Mesh => t.includes_sidecars(),
                    k if k == kind => {
                        resource_selected(t, name, labels)
                            && section_selected(t, *port, port_name.as_deref())
                    }
                    _ => false,
                }
            }
        }
    }
}

/// A ref to a resource by `name` (and `namespace`) or by `labels`.
fn resource_selected(t: &TargetRef, name: &str, labels: &BTreeMap<String, String>) -> bool {
    let namespace_ok = t
        .namespace
        .as_deref()
        .is_none_or(|ns| labels.get(NAMESPACE_LABEL).map(String::as_str) == Some(ns));
    match (&t.name, &t.labels) {
        (Some(n), _) => n == name && namespace_ok,
        (None, Some(selector)) => {
            namespace_ok && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        }
        (None, None) => false,
    }
}

/// `sectionName` names a port by its name or its number.
fn section_selected(t: &TargetRef, port: u32, port_name: Option<&str>) -> bool {
    t.section_name
        .as_deref()
        .is_none_or(|s| Some(s) == port_name || s == port.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(yaml: &str) -> TargetRef {
        serde_norway::from_str(yaml).expect("targetRef")
    }

    fn ms(name: &str, labels: &[(&str, &str)], port: u32, port_name: &str) -> Destination {
        Destination::MeshService {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            port,
            port_name: Some(port_name.into()),
        }
    }

    #[test]
    fn mesh_service_refs_select_by_name_labels_namespace_and_section() {
        let redis = ms(
            "redis.zone-1",
            &[
                ("kuma.io/display-name", "redis"),
                ("kuma.io/zone", "zone-1"),
            ],
            6379,
            "main",
        );
        let cases = [
            ("{kind: Mesh}", true),
            ("{kind: MeshService, name: redis.zone-1}", true),
            ("{kind: MeshService, name: redis}", false),
            (
                "{kind: MeshService, labels: {kuma.io/display-name: redis}}",
                true,
            ),
            (
                "{kind: MeshService, labels: {kuma.io/display-name: redis, kuma.io/zone: zone-2}}",
                false,
            ),
            (
                "{kind: MeshService, name: redis.zone-1, sectionName: main}",
                true,
            ),
            (
                "{kind: MeshService, name: redis.zone-1, sectionName: '6379'}",
                true,
            ),
            (
                "{kind: MeshService, name: redis.zone-1, sectionName: other}",
                false,
            ),
            (
                "{kind: MeshService, name: redis.zone-1, namespace: kuma-demo}",
                false,
            ),
            ("{kind: MeshMultiZoneService, name: redis.zone-1}", false),
            (
                "{kind: MeshServiceSubset, name: redis.zone-1, tags: {a: b}}",
                false,
            ),
        ];
        for (t, want) in cases {
            assert_eq!(redis.selected_by(&target(t)), want, "{t}");
        }
    }

    #[test]
    fn multizone_refs_select_only_multizone_destinations() {
        let mz = Destination::MultiZone {
            name: "redis-mz".into(),
            labels: BTreeMap::from([("team".into(), "data".into())]),
            port: 6379,
            port_name: None,
        };
        assert!(mz.selected_by(&target("{kind: MeshMultiZoneService, name: redis-mz}")));
        assert!(mz.selected_by(&target(
            "{kind: MeshMultiZoneService, labels: {team: data}, sectionName: '6379'}"
        )));
        assert!(!mz.selected_by(&target("{kind: MeshService, name: redis-mz}")));
        assert!(mz.selected_by(&target("{kind: Mesh}")));
    }

    #[test]
    fn service_destinations_keep_the_tag_meaning() {
        let d = Destination::service("backend");
        assert!(d.selected_by(&target("{kind: MeshService, name: backend}")));
        assert!(!d.selected_by(&target("{kind: MeshService, name: other}")));
        // One port, labels or a namespace: the resource, not the tag.
        for resource_ref in [
            "{kind: MeshService, name: backend, sectionName: http}",
            "{kind: MeshService, labels: {app: backend}}",
            "{kind: MeshService, name: backend, namespace: ns}",
        ] {
            assert!(!d.selected_by(&target(resource_ref)), "{resource_ref}");
        }
        assert_eq!(d.name(), "backend");
    }
}
