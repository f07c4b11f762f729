//! KDS on global: the gRPC server zones dial, over TLS, authenticated by zone tokens.
//!
//! ```text
//!  zone ──TLS──▶ KdsService::admit (token ↔ zone name, Zone enabled)
//!                ──▶ fencing (leader term: refuse older, supersede lower)
//!         GlobalToZone: Subscribe{since} ──▶ Outbound(GlobalToZone scope) ──▶ deltas, on every commit
//!                       (one Fanout per replica reads each commit once for every zone)
//!         ZoneToGlobal: Resume{since} ◀── ; deltas ──▶ Inbound(FromZone) ──▶ store (one txn each)
//!                                     └──▶ Insights ──▶ zone_insights (status)
//! ```

pub mod fencing;
pub mod insight;
pub mod service;
pub mod tls;

use std::future::Future;

use meridian_proto::kds::kds_server::KdsServer;
use tokio::net::TcpListener;
use tonic::transport::{Identity, Server, ServerTlsConfig};

/// Streams one connection may have open at once (a zone uses two).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 8;

/// Largest KDS message accepted; senders chunk well below it.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// Serves KDS on `listener` with TLS until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    identity: &tls::KdsIdentity,
    service: service::KdsService,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let tls =
        ServerTlsConfig::new().identity(Identity::from_pem(&identity.cert_pem, &identity.key_pem));
    Server::builder()
        .tls_config(tls)?
        // A zone needs two streams per connection; anything beyond a few is abuse.
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
        .add_service(
            KdsServer::new(service)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(meridian_grpc_client::nodelay_incoming(listener), shutdown)
        .await
}
