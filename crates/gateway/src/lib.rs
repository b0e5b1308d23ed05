//! trove-gateway: the reverse proxy and TLS terminator that plays Apache httpd's part.
//!
//! `config` reads our TOML or an Apache httpd.conf into one validated `GatewayConfig`;
//! `server::Gateway` binds and serves it. The pure parts (routing, rewriting, header rules,
//! access, framing guard) are public for tests and benchmarks. Certificates and keys come from
//! the `trove-tls` crate; `tls` only serves them.

pub mod access;
pub mod balancer;
pub mod config;
pub mod forward;
pub mod guard;
mod h1;
pub mod log;
pub mod metrics;
mod parked;
pub mod proxy;
mod reqtimeout;
pub mod rewrite;
pub mod routing;
pub mod server;
mod splice;
pub mod tls;
pub mod tls_setup;
pub mod upstream;

pub use config::{ConfigError, Diagnostic, Diagnostics, GatewayConfig, Severity};
pub use server::{Current, Gateway, GatewayError};
