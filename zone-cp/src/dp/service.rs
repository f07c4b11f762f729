//! The `meridian.dp.v1.DataplaneConfig` service: one session per proxy stream.
//!
//! A session validates the proxy's Hello, claims its name (one live stream per
//! proxy), registers its resource in the zone's store, then forwards the
//! configs the reconciler publishes, records ACKs and NACKs, and signs CSRs
//! for the identity it registered. When the stream ends, the resource is
//! deleted (the proxy is gone; other zones stop counting it) and the name is
//! released.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meridian_identity::{DEFAULT_WORKLOAD_VALIDITY, MeshCa, WorkloadId, WorkloadTags};
use meridian_model::{
    DataplaneSpec, Health, NamedDataplane, ORIGIN_LABEL, ResourceKind, SERVICE_TAG, Spec, SpecBody,
    ZONE_LABEL, ca_cert_secret_name, ca_key_secret_name, parse_document,
};
use meridian_proto::dp::control_message::Message as ToProxy;
use meridian_proto::dp::dataplane_config_server::DataplaneConfig;
use meridian_proto::dp::proxy_message::Message as FromProxy;
use meridian_proto::dp::{
    Certificate, ClusterEndpoints, Config, ControlMessage, EndpointUpdate, Error, Hello, ProxyKind,
    ProxyMessage,
};
use meridian_proto::fragment;
use meridian_proxy_api::{ENDPOINT_UPDATES, ProxyConfig};
use meridian_store::{NewResource, Precondition, ResourceKey, Store};
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};

use super::compute::inbound_addr;
use super::registry::{Registry, VersionedConfig};
use super::state::CaView;
use super::stats::{DpStats, Part};

/// Label on resources registered by a config stream: they live as long as
/// the stream, and are purged at start (no stream survives a restart).
pub const REGISTERED_LABEL: &str = "meridian.io/registered-by";
/// Its value on a single-replica zone CP.
pub const REGISTERED_BY_STREAM: &str = "dp-stream";

/// The [`REGISTERED_LABEL`] value of registrations made by `replica` of a
/// multi-replica zone CP, so a restarting replica purges only its own.
pub fn registered_by(replica: Option<u64>) -> String {
    match replica {
        None => REGISTERED_BY_STREAM.to_owned(),
        Some(id) => format!("{REGISTERED_BY_STREAM}.replica-{id}"),
    }
}

/// Messages queued per stream before the session waits for the proxy.
const QUEUE: usize = 16;
/// A proxy that does not take a queued message within this time is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// The proxy must say Hello within this time of opening the stream.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

type ResponseStream = Pin<Box<dyn Stream<Item = Result<ControlMessage, Status>> + Send>>;

/// The service.
#[derive(Clone)]
pub struct DpService {
    store: Arc<dyn Store>,
    zone: String,
    /// The [`REGISTERED_LABEL`] value this replica stamps.
    registered_by: String,
    registry: Registry,
    ca: watch::Receiver<Arc<CaView>>,
    stats: Arc<DpStats>,
    sessions: TaskTracker,
    stop: CancellationToken,
}

/// What a sidecar's certificates say about it: its SPIFFE ID and the inbound tags
/// this zone CP registered (with `kuma.io/zone`), never what its CSR asks for.
struct SidecarIdentity {
    id: WorkloadId,
    tags: WorkloadTags,
}

/// A proxy that said a valid Hello.
struct Registered {
    kind: ProxyKind,
    key: ResourceKey,
    /// Sidecars: the identity its certificates carry.
    identity: Option<SidecarIdentity>,
    /// The labels it is stored with.
    labels: BTreeMap<String, String>,
    configs: watch::Receiver<Option<VersionedConfig>>,
    /// The proxy applies [`EndpointUpdate`]s (it said [`ENDPOINT_UPDATES`]).
    endpoint_updates: bool,
    /// Whether it reassembles fragments (large messages go cut, see
    /// [`meridian_proto::fragment`]).
    fragments: bool,
    /// Sidecars: the registered Dataplane and the inbounds registered as not
    /// ready, which become endpoints once the sidecar can serve them.
    readiness: Option<PendingReadiness>,
}

/// A sidecar is not an endpoint until it can serve: it has applied its config
/// (its listeners exist) and, in an mTLS mesh, holds a certificate. Until then
/// its inbounds are stored with `health.ready: false`, so no proxy in any zone
/// sends it traffic (and no ingress advertises it).
struct PendingReadiness {
    dataplane: DataplaneSpec,
    /// Inbounds whose health Meridian set (the document left it out).
    inbounds: Vec<usize>,
    acked: bool,
    mtls: Option<bool>,
    certified: bool,
}

impl PendingReadiness {
    fn can_serve(&self) -> bool {
        self.acked && (self.mtls == Some(false) || self.certified)
    }
}

impl DpService {
    /// A service for `zone` over `store`.
    pub fn new(
        store: Arc<dyn Store>,
        zone: String,
        registry: Registry,
        ca: watch::Receiver<Arc<CaView>>,
        stats: Arc<DpStats>,
        registered_by: String,
    ) -> Self {
        DpService {
            store,
            zone,
            registered_by,
            registry,
            ca,
            stats,
            sessions: TaskTracker::new(),
            stop: CancellationToken::new(),
        }
    }

    /// Ends every session (each deregisters its proxy) and waits for them.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.sessions.close();
        self.sessions.wait().await;
    }

    async fn register(&self, hello: Hello) -> Result<Registered, Status> {
        let kind = ProxyKind::try_from(hello.kind)
            .ok()
            .filter(|k| *k != ProxyKind::Unspecified)
            .ok_or_else(|| {
                Status::invalid_argument("Hello.kind: must be SIDECAR, INGRESS or EGRESS")
            })?;
        let value: serde_json::Value = serde_json::from_slice(&hello.resource)
            .map_err(|e| Status::invalid_argument(format!("Hello.resource: not JSON: {e}")))?;
        let resource = parse_document(value)
            .map_err(|e| Status::invalid_argument(format!("Hello.resource: {e}")))?;
        let want = match kind {
            ProxyKind::Sidecar => ResourceKind::Dataplane,
            ProxyKind::Ingress => ResourceKind::ZoneIngress,
            _ => ResourceKind::ZoneEgress,
        };
        if resource.meta.kind != want {
            return Err(Status::invalid_argument(format!(
                "Hello.resource: a {kind:?} proxy registers a {want}, not a {}",
                resource.meta.kind
            )));
        }
        if resource.meta.name != hello.name {
            return Err(Status::invalid_argument(format!(
                "Hello.name {:?} differs from the resource's name {:?}",
                hello.name, resource.meta.name
            )));
        }
        let labels = self.labels(&resource.meta.labels);
        let (key, spec, dataplane, identity) = match resource.spec {
            Spec::Dataplane(mut dp) => {
                let mesh = resource.meta.mesh.unwrap_or_default();
                // As in Kuma, inbounds carry their zone, so routes and
                // permissions can select instances by `kuma.io/zone`.
                for inbound in &mut dp.networking.inbound {
                    inbound
                        .tags
                        .entry(ZONE_LABEL.to_owned())
                        .or_insert_with(|| self.zone.clone());
                }
                // The mesh's `constraints` (Kuma's membership check), on the tags
                // as registered (with the zone). Read from the store, not a view
                // that may lag: a mesh that just got constraints applies them.
                let stored_mesh = self
                    .store
                    .get(&ResourceKey::global(ResourceKind::Mesh, mesh.clone()))
                    .await
                    .map_err(|e| Status::unavailable(format!("reading mesh {mesh:?}: {e}")))?;
                if let Some(Spec::Mesh(spec)) = stored_mesh.as_ref().map(|m| m.spec.spec())
                    && let Err(refused) = spec.admits(&mesh, dp.inbound_tags())
                {
                    return Err(Status::failed_precondition(format!(
                        "registering {}: {refused}",
                        hello.name
                    )));
                }
                let identity = sidecar_identity(&mesh, &dp)?;
                let mut pending = Vec::new();
                for (i, inbound) in dp.networking.inbound.iter_mut().enumerate() {
                    if inbound.health.is_none() {
                        inbound.health = Some(Health { ready: false });
                        pending.push(i);
                    }
                }
                let key = ResourceKey::in_mesh(ResourceKind::Dataplane, mesh, hello.name);
                (
                    key,
                    Spec::Dataplane(dp.clone()),
                    Some((dp, pending)),
                    Some(identity),
                )
            }
            Spec::ZoneIngress(mut ingress) => {
                ingress.zone = Some(self.zone.clone());
                ingress.available_services = None;
                let key = ResourceKey::global(ResourceKind::ZoneIngress, hello.name);
                (key, Spec::ZoneIngress(ingress), None, None)
            }
            Spec::ZoneEgress(mut egress) => {
                egress.zone = Some(self.zone.clone());
                let key = ResourceKey::global(ResourceKind::ZoneEgress, hello.name);
                (key, Spec::ZoneEgress(egress), None, None)
            }
            _ => {
                return Err(Status::invalid_argument(
                    "Hello.resource: not a proxy resource",
                ));
            }
        };
        let configs = self
            .registry
            .claim(
                kind,
                key.clone(),
                dataplane.as_ref().map(|(dp, _)| NamedDataplane {
                    name: key.name.clone(),
                    labels: labels.clone(),
                    spec: dp.clone(),
                }),
            )
            .map_err(|e| Status::already_exists(e.to_string()))?;
        if let Err(error) = self
            .store
            .put(
                self.registration(&key, spec, labels.clone()),
                Precondition::Any,
            )
            .await
        {
            self.registry.release(&key);
            return Err(match error {
                meridian_store::StoreError::MeshNotFound { .. } => {
                    Status::failed_precondition(format!("registering {key}: {error}"))
                }
                _ => Status::unavailable(format!("registering {key}: {error}")),
            });
        }
        tracing::info!(proxy = %key, kind = ?kind, version = %hello.version, "proxy registered");
        Ok(Registered {
            kind,
            key,
            identity,
            labels,
            configs,
            endpoint_updates: hello.features.iter().any(|f| f == ENDPOINT_UPDATES),
            fragments: hello.features.iter().any(|f| f == fragment::FEATURE),
            readiness: dataplane.map(|(dataplane, inbounds)| PendingReadiness {
                dataplane,
                inbounds,
                acked: false,
                mtls: None,
                certified: false,
            }),
        })
    }

    /// A registration's labels: the document's own (what `Dataplane` targetRefs
    /// with `labels` select, as in Kuma) with this zone CP's system labels over
    /// them (origin, zone, replica: a proxy cannot claim another's).
    fn labels(&self, document: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut labels = document.clone();
        for (k, v) in [
            (ORIGIN_LABEL, "zone"),
            (ZONE_LABEL, self.zone.as_str()),
            (REGISTERED_LABEL, self.registered_by.as_str()),
        ] {
            labels.insert(k.to_owned(), v.to_owned());
        }
        labels
    }

    /// The stored form of a proxy's registration.
    fn registration(
        &self,
        key: &ResourceKey,
        spec: Spec,
        labels: BTreeMap<String, String>,
    ) -> NewResource {
        NewResource {
            key: key.clone(),
            labels,
            spec: SpecBody::new(spec),
            zone: Some(self.zone.clone()),
        }
    }

    /// Marks a sidecar's pending inbounds ready once it can serve (once).
    async fn mark_ready_if_serving(&self, reg: &mut Registered) {
        let Some(pending) = reg.readiness.as_mut() else {
            return;
        };
        if !pending.can_serve() {
            return;
        }
        let mut dp = pending.dataplane.clone();
        for &i in &pending.inbounds {
            if let Some(inbound) = dp.networking.inbound.get_mut(i) {
                inbound.health = Some(Health { ready: true });
            }
        }
        let new = self.registration(&reg.key, Spec::Dataplane(dp), reg.labels.clone());
        match self.store.put(new, Precondition::Any).await {
            Ok(_) => {
                tracing::info!(proxy = %reg.key, "sidecar serving: its inbounds are endpoints now");
                reg.readiness = None;
            }
            // Retried on the next ACK or certificate.
            Err(error) => {
                tracing::warn!(proxy = %reg.key, %error, "marking the sidecar ready failed")
            }
        }
    }

    /// Signs `csr_pem` for the registered identity with the mesh CA.
    fn sign(
        &self,
        identity: Option<&SidecarIdentity>,
        csr_pem: &str,
    ) -> Result<Certificate, String> {
        let SidecarIdentity { id, tags } = identity.ok_or("only sidecars get certificates")?;
        let mesh = id.mesh();
        let view = self.ca.borrow().clone();
        let spec = view
            .meshes
            .get(mesh)
            .ok_or_else(|| format!("mesh {mesh:?} does not exist in this zone"))?;
        let mtls = spec.mtls.as_ref();
        let backend_name = mtls
            .and_then(|m| m.enabled_backend.as_deref())
            .ok_or_else(|| format!("mesh {mesh:?} has mTLS off"))?;
        let backend = mtls
            .and_then(|m| m.backends.iter().find(|b| b.name == backend_name))
            .ok_or_else(|| {
                format!("mesh {mesh:?}: enabled backend {backend_name:?} is not defined")
            })?;
        let missing = || format!("the CA of mesh {mesh:?} has not reached this zone yet");
        let cert = view
            .secret_text(mesh, &ca_cert_secret_name(backend_name))
            .ok_or_else(missing)?;
        let key = view
            .secret_text(mesh, &ca_key_secret_name(backend_name))
            .ok_or_else(missing)?;
        let ca = MeshCa::from_pem_for_mesh(mesh, cert, key).map_err(|e| e.to_string())?;
        let validity = backend
            .dp_cert
            .as_ref()
            .and_then(|d| d.rotation.as_ref())
            .map_or(DEFAULT_WORKLOAD_VALIDITY, |r| r.expiration.as_duration());
        let issued = ca
            .sign_csr(csr_pem, id, tags, &[], validity, SystemTime::now())
            .map_err(|e| e.to_string())?;
        let unix = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        };
        Ok(Certificate {
            cert_pem: issued.cert_chain_pem,
            ca_pem: ca.cert_pem().to_owned(),
            not_after_unix: unix(issued.not_after),
            issued_at_unix: unix(issued.issued_at),
        })
    }

    async fn session(
        self,
        mut reg: Registered,
        mut incoming: Streaming<ProxyMessage>,
        tx: mpsc::Sender<Result<ControlMessage, Status>>,
    ) {
        let fragments = reg.fragments;
        let send = |m: ToProxy| {
            let tx = tx.clone();
            async move {
                let msg = ControlMessage { message: Some(m) };
                let parts = if fragments {
                    fragment::split(msg)
                } else {
                    vec![msg]
                };
                for part in parts {
                    if tx.send_timeout(Ok(part), SEND_TIMEOUT).await.is_err() {
                        return false;
                    }
                }
                true
            }
        };
        // What the proxy was last sent, and the version of the last endpoint
        // update (a NACK of it is answered with the whole config).
        let mut sent: Option<VersionedConfig> = None;
        let mut delta_version: Option<u64> = None;
        loop {
            tokio::select! {
                changed = reg.configs.changed() => {
                    if changed.is_err() { break; }
                    let Some(v) = reg.configs.borrow_and_update().clone() else { continue };
                    if let (Some(pending), ProxyConfig::Sidecar(s)) = (reg.readiness.as_mut(), &*v.config) {
                        pending.mtls = Some(s.mtls);
                    }
                    let base = sent.as_ref().filter(|_| reg.endpoint_updates);
                    let message = match base.map(|b| (b, b.config.endpoint_changes(&v.config))) {
                        // Changed and back again before the session looked:
                        // the proxy already has it.
                        Some((_, Some(changes))) if changes.is_empty() => continue,
                        Some((b, Some(changes))) => {
                            delta_version = Some(v.version);
                            self.stats.pushed(Part::Endpoints);
                            endpoint_update(b.version, &v, changes)
                        }
                        _ => {
                            self.stats.pushed(Part::Config);
                            full_config(&v)
                        }
                    };
                    sent = Some(v);
                    if !send(message).await { break; }
                }
                msg = incoming.message() => match msg {
                    Ok(Some(msg)) => {
                        let reply = match msg.message {
                            Some(FromProxy::Ack(a)) => {
                                tracing::debug!(proxy = %reg.key, version = a.version, "config ACKed");
                                metrics::counter!("meridian_zone_proxy_config_replies_total", "result" => "ack").increment(1);
                                if let Some(pending) = reg.readiness.as_mut() {
                                    pending.acked = true;
                                }
                                None
                            }
                            Some(FromProxy::Nack(n)) => {
                                tracing::warn!(proxy = %reg.key, version = n.version, detail = %n.detail, "config NACKed");
                                metrics::counter!("meridian_zone_proxy_config_replies_total", "result" => "nack").increment(1);
                                // A refused endpoint update: the proxy's config
                                // is not the base it assumed, so send it whole.
                                if delta_version.take() == Some(n.version) {
                                    sent.clone_from(&*reg.configs.borrow());
                                    self.stats.pushed(Part::Config);
                                    sent.as_ref().map(full_config)
                                } else {
                                    None
                                }
                            }
                            Some(FromProxy::CertificateRequest(r)) => {
                                Some(match self.sign(reg.identity.as_ref(), &r.csr_pem) {
                                    Ok(cert) => {
                                        tracing::info!(proxy = %reg.key, "certificate issued");
                                        metrics::counter!("meridian_zone_certificates_issued_total").increment(1);
                                        if let Some(pending) = reg.readiness.as_mut() {
                                            pending.certified = true;
                                        }
                                        ToProxy::Certificate(cert)
                                    }
                                    Err(detail) => {
                                        tracing::warn!(proxy = %reg.key, %detail, "certificate refused");
                                        ToProxy::Error(Error { detail })
                                    }
                                })
                            }
                            Some(FromProxy::Hello(_)) | None => {
                                tracing::debug!(proxy = %reg.key, "unexpected message ignored");
                                None
                            }
                        };
                        if let Some(reply) = reply
                            && !send(reply).await
                        {
                            break;
                        }
                        self.mark_ready_if_serving(&mut reg).await;
                    }
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(proxy = %reg.key, %status, "proxy stream broke");
                        break;
                    }
                },
                () = self.stop.cancelled() => break,
            }
        }
        // Delete before releasing the name: a reconnect claiming it meanwhile
        // would otherwise have its fresh registration deleted.
        match self.store.delete(&reg.key, Precondition::Any).await {
            Ok(_) | Err(meridian_store::StoreError::NotFound(_)) => {}
            Err(error) => tracing::warn!(proxy = %reg.key, %error, "deregistering failed"),
        }
        self.registry.release(&reg.key);
        tracing::info!(proxy = %reg.key, kind = ?reg.kind, "proxy disconnected");
    }
}

/// The whole config `v`.
fn full_config(v: &VersionedConfig) -> ToProxy {
    ToProxy::Config(Config {
        version: v.version,
        config: serde_json::to_vec(&*v.config).unwrap_or_default(),
    })
}

/// The endpoint lists that changed from version `base` to `v`.
fn endpoint_update(
    base: u64,
    v: &VersionedConfig,
    changes: meridian_proxy_api::EndpointChanges,
) -> ToProxy {
    ToProxy::Endpoints(EndpointUpdate {
        version: v.version,
        base_version: base,
        clusters: changes
            .into_iter()
            .map(|(sni, endpoints)| ClusterEndpoints {
                sni,
                // Encoded once per list, whichever stream sends it first.
                endpoints: endpoints.json().get().as_bytes().to_vec(),
            })
            .collect(),
    })
}

/// The identity of a sidecar: its mesh and its first inbound's service, and the
/// tags of all its inbounds.
fn sidecar_identity(mesh: &str, dp: &DataplaneSpec) -> Result<SidecarIdentity, Status> {
    for (i, inbound) in dp.networking.inbound.iter().enumerate() {
        inbound_addr(dp, i, inbound)
            .map_err(|e| Status::invalid_argument(format!("Hello.resource: {e}")))?;
    }
    let service = dp
        .networking
        .inbound
        .first()
        .and_then(|i| i.tags.get(SERVICE_TAG))
        .ok_or_else(|| {
            Status::invalid_argument(
                "Hello.resource: networking.inbound[0] needs a kuma.io/service tag",
            )
        })?;
    let id = WorkloadId::new(mesh, service.clone())
        .map_err(|e| Status::invalid_argument(format!("Hello.resource: {e}")))?;
    let tags = WorkloadTags::from_maps(dp.networking.inbound.iter().map(|i| &i.tags));
    Ok(SidecarIdentity { id, tags })
}

#[tonic::async_trait]
impl DataplaneConfig for DpService {
    type StreamStream = ResponseStream;

    async fn stream(
        &self,
        request: Request<Streaming<ProxyMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let mut incoming = request.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, incoming.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no Hello within 10 s"))??;
        let Some(ProxyMessage {
            message: Some(FromProxy::Hello(hello)),
        }) = first
        else {
            return Err(Status::invalid_argument("the first message must be Hello"));
        };
        let reg = self.register(hello).await.inspect_err(|status| {
            tracing::warn!(%status, "proxy registration refused");
            metrics::counter!("meridian_zone_proxy_registrations_refused_total").increment(1);
        })?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let service = self.clone();
        self.sessions.spawn(service.session(reg, incoming, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
