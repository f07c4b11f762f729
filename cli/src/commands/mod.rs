//! One module per `meridian` subcommand.

pub mod apply;
pub mod delete;
pub mod get;
pub mod global_cp;
pub mod zone_cp;
