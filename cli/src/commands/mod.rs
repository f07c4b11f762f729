//! One module per `meridian` subcommand.

pub mod apply;
pub mod delete;
pub mod demo_echo;
pub mod dp;
pub mod get;
pub mod global_cp;
pub mod probe;
pub mod raft;
pub mod raft_flags;
pub mod up;
pub mod zone_cp;
pub mod zone_cp_link;
pub mod zone_egress;
pub mod zone_ingress;
