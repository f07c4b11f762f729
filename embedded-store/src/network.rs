//! The client side of Raft between replicas: openraft's RPCs over gRPC
//! (`proto/raft.proto`), plus [`Peers::forward`], which hands a follower's write or
//! membership change to the leader.
//!
//! openraft's requests and responses are serde types; they travel as JSON, except
//! snapshot chunk bytes, which travel raw. Transport failures are reported as
//! [`Unreachable`] so openraft backs off from the peer; an error the peer's Raft
//! answered is a [`RemoteError`].
//!
//! A single-replica store has no peers and never calls any of this.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meridian_grpc_client::ChannelConfig;
use meridian_proto::raft::RaftMessage;
use meridian_proto::raft::raft_client::RaftClient;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::Channel;

use crate::cluster::RaftTls;
use crate::forward::{ForwardError, ForwardRequest, ForwardResponse};
use crate::types::{NodeId, TypeConfig};

/// The largest Raft message either side accepts: a snapshot chunk (openraft's
/// default 3 MiB) or a batch of log entries, with room to spare.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Why an RPC to a peer failed before its Raft answered.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// No channel could be set up for the address.
    #[error("Raft peer {target} at {addr}: {reason}")]
    Channel {
        /// The peer.
        target: NodeId,
        /// The address dialled.
        addr: String,
        /// What was wrong.
        reason: String,
    },
    /// The call failed (connection refused, reset, timeout, …).
    #[error("Raft peer {target}: {status}")]
    Call {
        /// The peer.
        target: NodeId,
        /// The gRPC status.
        status: tonic::Status,
    },
    /// The answer was not what the protocol says.
    #[error("Raft peer {target} answered something unreadable: {reason}")]
    Decode {
        /// The peer.
        target: NodeId,
        /// What was wrong.
        reason: String,
    },
}

/// The replicas this one talks to: its address book and one lazily connected
/// channel per peer. Cheap to clone.
#[derive(Clone)]
pub struct Peers {
    inner: Arc<PeersInner>,
}

struct PeersInner {
    /// Addresses from this replica's own configuration; they win over the
    /// membership's, so an operator can route around a changed address.
    book: BTreeMap<NodeId, String>,
    tls: Option<RaftTls>,
    channels: Mutex<BTreeMap<NodeId, (String, Channel)>>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers")
            .field("book", &self.inner.book)
            .finish_non_exhaustive()
    }
}

impl Peers {
    /// Peers reached at the addresses in `book` (or, for others, the membership's),
    /// with mutual TLS when `tls` is given.
    pub fn new(book: BTreeMap<NodeId, String>, tls: Option<RaftTls>) -> Self {
        Peers {
            inner: Arc::new(PeersInner {
                book,
                tls,
                channels: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// The address to dial for `target`.
    pub fn address(&self, target: NodeId, node: &BasicNode) -> String {
        self.inner
            .book
            .get(&target)
            .cloned()
            .unwrap_or_else(|| node.addr.clone())
    }

    /// A gRPC client for `target` at `addr`, reusing the channel while the address
    /// stays the same.
    fn client(&self, target: NodeId, addr: &str) -> Result<RaftClient<Channel>, TransportError> {
        let mut channels = self
            .inner
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let channel = match channels.get(&target) {
            Some((known, channel)) if known == addr => channel.clone(),
            _ => {
                let channel = self.channel(target, addr)?;
                channels.insert(target, (addr.to_owned(), channel.clone()));
                channel
            }
        };
        Ok(RaftClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    fn channel(&self, target: NodeId, addr: &str) -> Result<Channel, TransportError> {
        let scheme = if self.inner.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let bad = |reason: String| TransportError::Channel {
            target,
            addr: addr.to_owned(),
            reason,
        };
        let mut dial = ChannelConfig::new(format!("{scheme}://{addr}"))
            .connect_timeout(Duration::from_secs(2))
            .keep_alive(Duration::from_secs(5), Duration::from_secs(5));
        if let Some(tls) = &self.inner.tls {
            dial = dial
                .trust(Some(&tls.ca_pem))
                .identity(&tls.cert_pem, &tls.key_pem);
        }
        dial.connect_lazy().map_err(|e| bad(e.to_string()))
    }

    /// Sends one RPC and decodes the peer's `Result`.
    async fn call<Req, Resp, E>(
        &self,
        target: NodeId,
        addr: &str,
        method: Method,
        request: &Req,
        data: Vec<u8>,
        ttl: Duration,
    ) -> Result<Result<Resp, E>, TransportError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: DeserializeOwned,
    {
        let mut client = self.client(target, addr)?;
        let json = serde_json::to_vec(request).map_err(|e| TransportError::Decode {
            target,
            reason: format!("encoding the request: {e}"),
        })?;
        let mut message = tonic::Request::new(RaftMessage { json, data });
        message.set_timeout(ttl);
        let answer = match method {
            Method::AppendEntries => client.append_entries(message).await,
            Method::Vote => client.vote(message).await,
            Method::InstallSnapshot => client.install_snapshot(message).await,
            Method::Forward => client.forward(message).await,
        }
        .map_err(|status| TransportError::Call { target, status })?;
        serde_json::from_slice(&answer.into_inner().json).map_err(|e| TransportError::Decode {
            target,
            reason: e.to_string(),
        })
    }

    /// Hands `request` to the replica `leader` believes it leads and returns its
    /// answer; the caller retries elsewhere if that replica no longer leads.
    pub async fn forward(
        &self,
        leader: NodeId,
        node: &BasicNode,
        request: &ForwardRequest,
        ttl: Duration,
    ) -> Result<Result<ForwardResponse, ForwardError>, TransportError> {
        let addr = self.address(leader, node);
        self.call(leader, &addr, Method::Forward, request, Vec::new(), ttl)
            .await
    }
}

#[derive(Debug, Clone, Copy)]
enum Method {
    AppendEntries,
    Vote,
    InstallSnapshot,
    Forward,
}

impl RaftNetworkFactory<TypeConfig> for Peers {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            addr: self.address(target, node),
            peers: self.clone(),
        }
    }
}

/// openraft's connection to one peer.
#[derive(Debug)]
pub struct PeerClient {
    target: NodeId,
    addr: String,
    peers: Peers,
}

impl PeerClient {
    async fn rpc<Req: Serialize, Resp: DeserializeOwned, E>(
        &self,
        method: Method,
        request: &Req,
        data: Vec<u8>,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, E>>
    where
        E: std::error::Error + DeserializeOwned,
    {
        match self
            .peers
            .call::<Req, Resp, E>(
                self.target,
                &self.addr,
                method,
                request,
                data,
                option.hard_ttl(),
            )
            .await
        {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(self.target, remote))),
            Err(error @ TransportError::Decode { .. }) => {
                Err(RPCError::Network(NetworkError::new(&error)))
            }
            Err(error) => Err(RPCError::Unreachable(Unreachable::new(&error))),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.rpc(Method::AppendEntries, &rpc, Vec::new(), &option)
            .await
    }

    async fn install_snapshot(
        &mut self,
        mut rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        // The chunk's bytes travel raw beside the JSON.
        let data = std::mem::take(&mut rpc.data);
        self.rpc(Method::InstallSnapshot, &rpc, data, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.rpc(Method::Vote, &rpc, Vec::new(), &option).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_peer_nobody_serves_is_unreachable_with_its_address() {
        // Bind then drop a listener: the port is (almost certainly) closed.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        let mut peers = Peers::new(BTreeMap::from([(2, addr.to_string())]), None);
        let mut client = peers.new_client(2, &BasicNode::default()).await;
        let err = client
            .vote(
                VoteRequest::new(openraft::Vote::new(1, 1), None),
                RPCOption::new(Duration::from_secs(2)),
            )
            .await
            .err();
        let Some(err) = err else {
            panic!("vote to a closed port succeeded");
        };
        assert!(matches!(err, RPCError::Unreachable(_)), "{err}");
        assert!(err.to_string().contains("Raft peer 2"), "{err}");
    }
}
