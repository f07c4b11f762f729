//! The server side of Raft between replicas: the `meridian.raft.v1.Raft` gRPC service
//! handing peers' RPCs to the local openraft node, and executing writes and membership
//! changes forwarded by followers (see [`crate::forward`]).
//!
//! Peer input is JSON decoded into openraft's types; anything unreadable is answered
//! `INVALID_ARGUMENT` and changes nothing.

use std::net::SocketAddr;

use meridian_proto::raft::RaftMessage;
use meridian_proto::raft::raft_server::{Raft as RaftRpc, RaftServer};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

use crate::cluster::RaftTls;
use crate::error::EmbeddedStoreError;
use crate::forward::{self, ForwardRequest};
use crate::network::MAX_MESSAGE_BYTES;
use crate::types::{Raft, TypeConfig};

/// The gRPC service of one replica.
#[derive(Clone)]
pub struct RaftService {
    raft: Raft,
}

fn decode<T: DeserializeOwned>(message: &RaftMessage, what: &str) -> Result<T, Status> {
    serde_json::from_slice(&message.json)
        .map_err(|e| Status::invalid_argument(format!("unreadable {what}: {e}")))
}

fn answer<T: Serialize>(result: &T) -> Result<Response<RaftMessage>, Status> {
    let json = serde_json::to_vec(result)
        .map_err(|e| Status::internal(format!("encoding the answer: {e}")))?;
    Ok(Response::new(RaftMessage {
        json,
        data: Vec::new(),
    }))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> =
            decode(request.get_ref(), "AppendEntries request")?;
        answer(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc: VoteRequest<u64> = decode(request.get_ref(), "Vote request")?;
        answer(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let message = request.into_inner();
        let mut rpc: InstallSnapshotRequest<TypeConfig> =
            decode(&message, "InstallSnapshot request")?;
        rpc.data = message.data;
        answer(&self.raft.install_snapshot(rpc).await)
    }

    async fn forward(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let forwarded: ForwardRequest = decode(request.get_ref(), "forwarded request")?;
        answer(&forward::execute(&self.raft, forwarded).await)
    }
}

/// A running Raft server; stops when dropped or [`RaftServerHandle::stop`]ped.
#[derive(Debug)]
pub struct RaftServerHandle {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl RaftServerHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops serving peers (a replica being shut down must not keep voting).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for RaftServerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` and serves `raft` to peers, with mutual TLS when `tls` is given.
pub async fn serve(
    addr: SocketAddr,
    raft: Raft,
    tls: Option<&RaftTls>,
) -> Result<RaftServerHandle, EmbeddedStoreError> {
    let bind_error = |source: std::io::Error| EmbeddedStoreError::RaftBind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let local_addr = listener.local_addr().map_err(bind_error)?;
    // TCP_NODELAY comes with the accepted connections (`nodelay_incoming`): the
    // builder's own option does not reach a listener bound here.
    let mut builder = Server::builder()
        // Peers send at most a few RPCs at once (replication, votes, forwards).
        .max_concurrent_streams(Some(64));
    if let Some(tls) = tls {
        let config = ServerTlsConfig::new()
            .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem))
            .client_ca_root(Certificate::from_pem(&tls.ca_pem));
        builder = builder
            .tls_config(config)
            .map_err(|e| EmbeddedStoreError::Config(format!("Raft TLS: {e}")))?;
    }
    let service = RaftServer::new(RaftService { raft })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let router = builder.add_service(service);
    let task = tokio::spawn(async move {
        if let Err(error) = router
            .serve_with_incoming(meridian_grpc_client::nodelay_incoming(listener))
            .await
        {
            tracing::error!(%error, "Raft server stopped");
        }
    });
    tracing::info!(%local_addr, tls = tls.is_some(), "serving Raft to peers");
    Ok(RaftServerHandle { local_addr, task })
}
