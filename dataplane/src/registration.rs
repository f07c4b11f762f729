//! The `Dataplane` a sidecar registers with, built from `meridian dp` flags or
//! read from `--dataplane-file`.
//!
//! Flags map onto Kuma's universal document:
//! - `--inbound PUBLIC_ADDR=APP_ADDR`: `networking.inbound[]` with `port` (the
//!   public port), `servicePort`/`serviceAddress` (the app) and the tags
//!   `kuma.io/service: <--service>` plus every `--tag KEY=VALUE`;
//!   `networking.address` is the first inbound's public IP, and an inbound on
//!   another IP gets its own `address`;
//! - `--outbound LOCAL_ADDR=SERVICE[:PORT]`: `networking.outbound[]` with
//!   `port`, `address` and `kuma.io/service: SERVICE`. `LOCAL_ADDR` may be a
//!   bare port (on 127.0.0.1). `:PORT`, the destination's port, is checked but
//!   only informative: the zone CP resolves a service's endpoints itself.
//!
//! Every document is validated with the model's own parser before it is sent,
//! so a bad flag fails at start-up with the field at fault, not at the CP.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::str::FromStr;

use meridian_model::{ResourceKind, SERVICE_TAG, parse_document};
use meridian_proxy_api::{ProxyKind, Registration};
use serde_json::{Value, json};

use crate::error::DataplaneError;

/// `--inbound PUBLIC_ADDR=APP_ADDR`: where other proxies reach the inbound,
/// and where the app listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundFlag {
    /// The public (mesh-facing) address.
    pub public: SocketAddr,
    /// The app's address.
    pub app: SocketAddr,
}

/// `--outbound LOCAL_ADDR=SERVICE[:PORT]`: a local port for a mesh service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundFlag {
    /// Where the app connects.
    pub local: SocketAddr,
    /// The destination service (`kuma.io/service`).
    pub service: String,
    /// The destination's port, when given (informative).
    pub port: Option<u16>,
}

/// `--tag KEY=VALUE`: an extra tag on every inbound (e.g. `version=v2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagFlag {
    /// The tag key.
    pub key: String,
    /// The tag value.
    pub value: String,
}

fn flag_error(flag: &'static str, value: &str, reason: impl Into<String>) -> DataplaneError {
    DataplaneError::Flag {
        flag,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

fn split_pair<'a>(
    flag: &'static str,
    s: &'a str,
    shape: &str,
) -> Result<(&'a str, &'a str), DataplaneError> {
    match s.split_once('=') {
        Some((l, r)) if !l.is_empty() && !r.is_empty() => Ok((l, r)),
        _ => Err(flag_error(flag, s, format!("expected {shape}"))),
    }
}

fn socket_addr(
    flag: &'static str,
    whole: &str,
    part: &str,
    what: &str,
) -> Result<SocketAddr, DataplaneError> {
    part.parse().map_err(|_| {
        flag_error(
            flag,
            whole,
            format!("{what} {part:?} is not an IP:PORT address (e.g. 127.0.0.1:8080, [::1]:8080)"),
        )
    })
}

impl FromStr for InboundFlag {
    type Err = DataplaneError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (public, app) = split_pair("--inbound", s, "PUBLIC_ADDR=APP_ADDR")?;
        let public = socket_addr("--inbound", s, public, "PUBLIC_ADDR")?;
        let app = socket_addr("--inbound", s, app, "APP_ADDR")?;
        if public.port() == 0 || app.port() == 0 {
            return Err(flag_error("--inbound", s, "ports must not be 0"));
        }
        if public == app {
            return Err(flag_error(
                "--inbound",
                s,
                "the public address and the app's address must differ",
            ));
        }
        Ok(Self { public, app })
    }
}

impl FromStr for OutboundFlag {
    type Err = DataplaneError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (local, target) = split_pair("--outbound", s, "LOCAL_ADDR=SERVICE[:PORT]")?;
        let local = match local.parse::<u16>() {
            Ok(port) => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            Err(_) => socket_addr("--outbound", s, local, "LOCAL_ADDR")?,
        };
        if local.port() == 0 {
            return Err(flag_error("--outbound", s, "the local port must not be 0"));
        }
        let (service, port) = match target.rsplit_once(':') {
            Some((service, port)) => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| {
                        flag_error(
                            "--outbound",
                            s,
                            format!("PORT {port:?} is not a port (1-65535)"),
                        )
                    })?;
                (service, Some(port))
            }
            None => (target, None),
        };
        if service.is_empty() {
            return Err(flag_error("--outbound", s, "SERVICE is empty"));
        }
        Ok(Self {
            local,
            service: service.to_owned(),
            port,
        })
    }
}

impl FromStr for TagFlag {
    type Err = DataplaneError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (key, value) = split_pair("--tag", s, "KEY=VALUE")?;
        if key == SERVICE_TAG {
            return Err(flag_error(
                "--tag",
                s,
                format!("{SERVICE_TAG} is set by --service"),
            ));
        }
        Ok(Self {
            key: key.to_owned(),
            value: value.to_owned(),
        })
    }
}

/// The Dataplane document (Kuma universal JSON) for `meridian dp` flags. Not
/// validated here; [`registration_from_flags`] validates it.
pub fn dataplane_from_flags(
    mesh: &str,
    name: &str,
    service: &str,
    inbounds: &[(SocketAddr, SocketAddr)],
    outbounds: &[(SocketAddr, String)],
    extra_tags: &BTreeMap<String, String>,
) -> Value {
    let address = inbounds.first().map_or_else(
        || "127.0.0.1".to_owned(),
        |(public, _)| public.ip().to_string(),
    );
    let mut tags = extra_tags.clone();
    tags.insert(SERVICE_TAG.to_owned(), service.to_owned());
    let inbound: Vec<Value> = inbounds
        .iter()
        .map(|(public, app)| {
            let mut inbound = json!({
                "port": public.port(),
                "servicePort": app.port(),
                "serviceAddress": app.ip().to_string(),
                "tags": tags,
            });
            if public.ip().to_string() != address {
                inbound["address"] = json!(public.ip().to_string());
            }
            inbound
        })
        .collect();
    let mut networking = json!({ "address": address, "inbound": inbound });
    if !outbounds.is_empty() {
        let outbound: Vec<Value> = outbounds
            .iter()
            .map(|(local, svc)| {
                json!({
                    "port": local.port(),
                    "address": local.ip().to_string(),
                    "tags": { SERVICE_TAG: svc },
                })
            })
            .collect();
        networking["outbound"] = json!(outbound);
    }
    json!({
        "type": "Dataplane",
        "mesh": mesh,
        "name": name,
        "networking": networking,
    })
}

/// What `meridian dp` was told about the sidecar, flags already parsed.
#[derive(Debug, Clone, Default)]
pub struct DataplaneFlags {
    /// `--mesh`.
    pub mesh: String,
    /// `--name`.
    pub name: String,
    /// `--service`.
    pub service: String,
    /// `--inbound`.
    pub inbounds: Vec<InboundFlag>,
    /// `--outbound`.
    pub outbounds: Vec<OutboundFlag>,
    /// `--tag`.
    pub tags: Vec<TagFlag>,
}

impl DataplaneFlags {
    /// The Dataplane document these flags describe (unvalidated).
    pub fn document(&self) -> Value {
        let inbounds: Vec<(SocketAddr, SocketAddr)> =
            self.inbounds.iter().map(|i| (i.public, i.app)).collect();
        let outbounds: Vec<(SocketAddr, String)> = self
            .outbounds
            .iter()
            .map(|o| (o.local, o.service.clone()))
            .collect();
        let tags = self
            .tags
            .iter()
            .map(|t| (t.key.clone(), t.value.clone()))
            .collect();
        dataplane_from_flags(
            &self.mesh,
            &self.name,
            &self.service,
            &inbounds,
            &outbounds,
            &tags,
        )
    }
}

/// The sidecar [`Registration`] for `flags`, validated as a Dataplane.
///
/// # Errors
/// [`DataplaneError::InvalidFlags`] with every violation (field path and
/// reason) when the document does not validate, e.g. no `--inbound`.
pub fn registration_from_flags(flags: &DataplaneFlags) -> Result<Registration, DataplaneError> {
    if flags.inbounds.is_empty() {
        return Err(DataplaneError::InvalidFlags(
            "at least one --inbound PUBLIC_ADDR=APP_ADDR is required".to_owned(),
        ));
    }
    let document = flags.document();
    registration(document).map_err(DataplaneError::InvalidFlags)
}

/// The sidecar [`Registration`] for a `--dataplane-file` (YAML or JSON).
///
/// # Errors
/// [`DataplaneError::ReadFile`] when the file cannot be read,
/// [`DataplaneError::InvalidFile`] when it is not one valid Dataplane document.
pub fn registration_from_file(path: &Path) -> Result<Registration, DataplaneError> {
    let text = std::fs::read_to_string(path).map_err(|source| DataplaneError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    let invalid = |reason: String| DataplaneError::InvalidFile {
        path: path.to_owned(),
        reason,
    };
    // YAML is a superset of JSON: one parser reads both.
    let document: Value =
        serde_norway::from_str(&text).map_err(|e| invalid(format!("not YAML or JSON: {e}")))?;
    registration(document).map_err(invalid)
}

/// Validates `document` as a Dataplane and wraps it in a sidecar registration.
fn registration(document: Value) -> Result<Registration, String> {
    let resource = parse_document(document.clone()).map_err(|e| e.to_string())?;
    if resource.meta.kind != ResourceKind::Dataplane {
        return Err(format!(
            "a sidecar registers a Dataplane, not a {}",
            resource.meta.kind
        ));
    }
    Ok(Registration {
        kind: ProxyKind::Sidecar,
        mesh: resource.meta.mesh.unwrap_or_default(),
        name: resource.meta.name,
        resource: document,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_model::Spec;

    #[test]
    fn inbound_flags() {
        let f: InboundFlag = "10.0.0.5:10001=127.0.0.1:8080".parse().unwrap();
        assert_eq!(f.public, "10.0.0.5:10001".parse().unwrap());
        assert_eq!(f.app, "127.0.0.1:8080".parse().unwrap());
        let v6: InboundFlag = "[::1]:10001=[::1]:8080".parse().unwrap();
        assert!(v6.public.is_ipv6());
        for (bad, says) in [
            ("10.0.0.5:10001", "expected PUBLIC_ADDR=APP_ADDR"),
            ("=127.0.0.1:8080", "expected PUBLIC_ADDR=APP_ADDR"),
            ("10.0.0.5=127.0.0.1:8080", "PUBLIC_ADDR \"10.0.0.5\" is not"),
            (
                "10.0.0.5:1=localhost:8080",
                "APP_ADDR \"localhost:8080\" is not",
            ),
            ("10.0.0.5:0=127.0.0.1:8080", "must not be 0"),
            ("127.0.0.1:80=127.0.0.1:80", "must differ"),
        ] {
            let e = bad.parse::<InboundFlag>().unwrap_err().to_string();
            assert!(e.starts_with("--inbound"), "{e}");
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn outbound_flags() {
        let f: OutboundFlag = "127.0.0.1:33033=backend".parse().unwrap();
        assert_eq!(
            f,
            OutboundFlag {
                local: "127.0.0.1:33033".parse().unwrap(),
                service: "backend".into(),
                port: None
            }
        );
        let f: OutboundFlag = "33034=backend:8080".parse().unwrap();
        assert_eq!(f.local, "127.0.0.1:33034".parse().unwrap());
        assert_eq!((f.service.as_str(), f.port), ("backend", Some(8080)));
        for (bad, says) in [
            ("backend", "expected LOCAL_ADDR=SERVICE[:PORT]"),
            ("127.0.0.1:1=", "expected"),
            ("nowhere=backend", "LOCAL_ADDR \"nowhere\" is not"),
            ("127.0.0.1:1=backend:http", "PORT \"http\" is not a port"),
            ("127.0.0.1:1=backend:0", "is not a port"),
            ("127.0.0.1:1=:80", "SERVICE is empty"),
            ("0=backend", "must not be 0"),
        ] {
            let e = bad.parse::<OutboundFlag>().unwrap_err().to_string();
            assert!(e.starts_with("--outbound"), "{e}");
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn tag_flags() {
        let t: TagFlag = "version=v2".parse().unwrap();
        assert_eq!((t.key.as_str(), t.value.as_str()), ("version", "v2"));
        assert!("version".parse::<TagFlag>().is_err());
        assert!("kuma.io/service=x".parse::<TagFlag>().is_err());
    }

    #[test]
    fn document_from_flags_is_kuma_universal_and_validates() {
        let doc = dataplane_from_flags(
            "default",
            "backend-1",
            "backend",
            &[
                (
                    "10.0.0.5:10001".parse().unwrap(),
                    "127.0.0.1:8080".parse().unwrap(),
                ),
                (
                    "10.0.0.6:10002".parse().unwrap(),
                    "127.0.0.2:9090".parse().unwrap(),
                ),
            ],
            &[("127.0.0.1:33033".parse().unwrap(), "db".into())],
            &BTreeMap::from([("version".to_owned(), "v2".to_owned())]),
        );
        assert_eq!(
            doc,
            json!({
                "type": "Dataplane", "mesh": "default", "name": "backend-1",
                "networking": {
                    "address": "10.0.0.5",
                    "inbound": [
                        {"port": 10001, "servicePort": 8080, "serviceAddress": "127.0.0.1",
                         "tags": {"kuma.io/service": "backend", "version": "v2"}},
                        {"port": 10002, "servicePort": 9090, "serviceAddress": "127.0.0.2",
                         "address": "10.0.0.6",
                         "tags": {"kuma.io/service": "backend", "version": "v2"}}
                    ],
                    "outbound": [
                        {"port": 33033, "address": "127.0.0.1", "tags": {"kuma.io/service": "db"}}
                    ]
                }
            })
        );
        let resource = parse_document(doc).unwrap();
        let Spec::Dataplane(dp) = resource.spec else {
            panic!("not a Dataplane")
        };
        assert_eq!(dp.services(), ["backend"]);
        assert_eq!(dp.networking.inbound[0].effective_service_port(), 8080);
        assert_eq!(dp.outbounds()[0].service(), "db");
        assert_eq!(resource.meta.mesh.as_deref(), Some("default"));
    }

    #[test]
    fn registration_checks_the_document() {
        let mut flags = DataplaneFlags {
            mesh: "default".into(),
            name: "web-1".into(),
            service: "web".into(),
            inbounds: vec!["127.0.0.1:10001=127.0.0.1:8080".parse().unwrap()],
            outbounds: vec![],
            tags: vec![],
        };
        let reg = registration_from_flags(&flags).unwrap();
        assert_eq!(reg.kind, ProxyKind::Sidecar);
        assert_eq!((reg.mesh.as_str(), reg.name.as_str()), ("default", "web-1"));
        assert!(
            reg.resource
                .get("networking")
                .unwrap()
                .get("outbound")
                .is_none()
        );

        flags.name = "Not A Name".into();
        let e = registration_from_flags(&flags).unwrap_err().to_string();
        assert!(e.contains("name"), "{e}");
        flags.name = "web-1".into();
        flags.tags = vec!["bad key!=x".parse().unwrap()];
        let e = registration_from_flags(&flags).unwrap_err().to_string();
        assert!(e.contains("bad key!"), "{e}");
        flags.tags.clear();
        flags.inbounds.clear();
        let e = registration_from_flags(&flags).unwrap_err().to_string();
        assert!(e.contains("--inbound"), "{e}");
    }

    #[test]
    fn registration_from_yaml_and_json_files() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = dir.path().join("dp.yaml");
        std::fs::write(
            &yaml,
            "type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: 10001\n    servicePort: 8080\n    tags:\n      kuma.io/service: web\n",
        )
        .unwrap();
        let reg = registration_from_file(&yaml).unwrap();
        assert_eq!((reg.mesh.as_str(), reg.name.as_str()), ("default", "web-1"));
        assert_eq!(reg.resource["networking"]["inbound"][0]["port"], 10001);

        let json_file = dir.path().join("dp.json");
        std::fs::write(&json_file, serde_json::to_string(&reg.resource).unwrap()).unwrap();
        assert_eq!(
            registration_from_file(&json_file).unwrap().resource,
            reg.resource
        );

        let mesh = dir.path().join("mesh.yaml");
        std::fs::write(&mesh, "type: Mesh\nname: default\n").unwrap();
        let e = registration_from_file(&mesh).unwrap_err().to_string();
        assert!(e.contains("not a Mesh"), "{e}");

        let unknown = dir.path().join("bad.yaml");
        std::fs::write(
            &unknown,
            "type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: 10.0.0.1\n  inbound: []\n  bogus: 1\n",
        )
        .unwrap();
        let e = registration_from_file(&unknown).unwrap_err().to_string();
        assert!(e.contains("bad.yaml") && e.contains("bogus"), "{e}");

        let missing = dir.path().join("missing.yaml");
        let e = registration_from_file(&missing).unwrap_err().to_string();
        assert!(e.contains("reading the dataplane file"), "{e}");
    }
}
