//! Running a router: both control planes start their REST API with [`serve`], the
//! one HTTP server of `meridian-telemetry` (which the proxies' admin server uses too).

pub use meridian_telemetry::server::{BindError, HttpServer as ApiServer, serve};
