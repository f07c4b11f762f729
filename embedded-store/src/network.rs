//! The Raft network of a single-node group: there is nobody to talk to.
//!
//! openraft only sends RPCs to other members; a single-voter group has none, so these
//! are never called in normal operation. Should a membership ever name another node
//! (a misconfiguration until the multi-node issue lands), every RPC fails with
//! [`Unreachable`] and a message saying why, which openraft treats as a peer to back
//! off from — never a panic. The gRPC transport of the three-node group replaces this
//! module.

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};

use crate::types::{NodeId, TypeConfig};

/// Why an RPC to another node cannot be sent.
#[derive(Debug, thiserror::Error)]
#[error(
    "the embedded store runs a single-node Raft group and has no network: cannot reach node {target}"
)]
pub struct NoNetwork {
    /// The node an RPC was addressed to.
    pub target: NodeId,
}

/// Builds [`SingleNodeClient`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleNodeNetwork;

/// A "client" for another node that answers every RPC with [`Unreachable`].
#[derive(Debug, Clone, Copy)]
pub struct SingleNodeClient {
    target: NodeId,
}

impl SingleNodeClient {
    fn unreachable<E: std::error::Error>(&self) -> RPCError<NodeId, BasicNode, E> {
        RPCError::Unreachable(Unreachable::new(&NoNetwork {
            target: self.target,
        }))
    }
}

impl RaftNetworkFactory<TypeConfig> for SingleNodeNetwork {
    type Network = SingleNodeClient;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> SingleNodeClient {
        tracing::warn!(
            target,
            "Raft asked for a connection to another node; the embedded store is single-node"
        );
        SingleNodeClient { target }
    }
}

impl RaftNetwork<TypeConfig> for SingleNodeClient {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(self.unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(self.unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(self.unreachable())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_rpc_is_unreachable_with_a_reason() {
        let mut client = SingleNodeNetwork.new_client(2, &BasicNode::default()).await;
        let err = client
            .vote(
                VoteRequest::new(openraft::Vote::new(1, 1), None),
                RPCOption::new(std::time::Duration::from_secs(1)),
            )
            .await
            .err();
        let Some(err) = err else {
            panic!("vote to another node succeeded");
        };
        assert!(matches!(err, RPCError::Unreachable(_)));
        assert!(err.to_string().contains("single-node"), "{err}");
    }
}
