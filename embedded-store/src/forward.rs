//! What a replica may ask the leader to do on its behalf, and how the leader does it.
//!
//! Clients (REST, the data-plane stream, KDS) may talk to any replica. A write or a
//! membership change that reaches a follower is forwarded to the leader
//! ([`crate::network::Peers::forward`]), executed there with [`execute`], and answered
//! with the log index it committed at, so the follower can wait until it has applied
//! that index before answering its own client (read-your-writes on every replica).

use std::collections::BTreeSet;

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use serde::{Deserialize, Serialize};

use crate::types::{Command, CommandResponse, NodeId, Raft};

/// A request a follower hands to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardRequest {
    /// Propose a state-machine command.
    Write(Command),
    /// Add a non-voting replica that starts receiving the log.
    AddLearner {
        /// Its node id.
        id: NodeId,
        /// The address replicas dial to reach it.
        addr: String,
    },
    /// Make a learner a voter.
    Promote {
        /// The learner's id.
        id: NodeId,
    },
    /// Remove a voter or learner from the group.
    Remove {
        /// Its id.
        id: NodeId,
    },
}

/// The leader's answer to a [`ForwardRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForwardResponse {
    /// The log index the request committed at.
    pub index: u64,
    /// The state machine's answer (for writes; membership changes answer
    /// [`CommandResponse::Empty`]).
    pub response: CommandResponse,
}

/// Why the leader did not carry a request out.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum ForwardError {
    /// The replica asked does not lead (any more); try `leader`.
    #[error("this replica is not the Raft leader (leader: {})", leader.map_or_else(|| "unknown".to_owned(), |l| l.to_string()))]
    NotLeader {
        /// The leader it knows of, and how to reach it.
        leader: Option<NodeId>,
        /// That leader's membership record.
        node: Option<BasicNode>,
    },
    /// The request was refused or failed; the message says why.
    #[error("{0}")]
    Failed(String),
    /// The Raft node has stopped.
    #[error("the Raft node stopped: {0}")]
    Stopped(String),
}

/// Carries `request` out on this replica, which must be the leader.
pub async fn execute(
    raft: &Raft,
    request: ForwardRequest,
) -> Result<ForwardResponse, ForwardError> {
    match request {
        ForwardRequest::Write(command) => match raft.client_write(command).await {
            Ok(written) => Ok(ForwardResponse {
                index: written.log_id.index,
                response: written.data,
            }),
            Err(error) => Err(from_write_error(error)),
        },
        ForwardRequest::AddLearner { id, addr } => {
            let added = raft
                .add_learner(id, BasicNode { addr }, true)
                .await
                .map_err(from_write_error)?;
            Ok(ForwardResponse {
                index: added.log_id.index,
                response: CommandResponse::Empty,
            })
        }
        ForwardRequest::Promote { id } => {
            change(raft, ChangeMembers::AddVoterIds(BTreeSet::from([id]))).await
        }
        ForwardRequest::Remove { id } => {
            let voter = raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == id);
            let change_members = if voter {
                ChangeMembers::RemoveVoters(BTreeSet::from([id]))
            } else {
                ChangeMembers::RemoveNodes(BTreeSet::from([id]))
            };
            change(raft, change_members).await
        }
    }
}

async fn change(
    raft: &Raft,
    members: ChangeMembers<NodeId, BasicNode>,
) -> Result<ForwardResponse, ForwardError> {
    // `retain: false`: a removed voter leaves the group instead of staying a learner.
    let changed = raft
        .change_membership(members, false)
        .await
        .map_err(from_write_error)?;
    Ok(ForwardResponse {
        index: changed.log_id.index,
        response: CommandResponse::Empty,
    })
}

fn from_write_error(error: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> ForwardError {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
            ForwardError::NotLeader {
                leader: forward.leader_id,
                node: forward.leader_node,
            }
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(
            ChangeMembershipError::LearnerNotFound(missing),
        )) => ForwardError::Failed(format!(
            "node {} is not a learner of the group: add it as a learner first",
            missing.node_id
        )),
        RaftError::APIError(other) => ForwardError::Failed(other.to_string()),
        RaftError::Fatal(fatal) => ForwardError::Stopped(fatal.to_string()),
    }
}
