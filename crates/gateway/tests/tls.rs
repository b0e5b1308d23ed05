//! TLS serving against the real thing: handshakes over loopback with `curl`, `git`,
//! `openssl s_client` and `testssl.sh`, certificate reloads. Missing tools fail the tests, never
//! skip them. (Certificates and keys themselves are tested in `crates/tls/tests`.)

#[path = "tls/common.rs"]
mod common;
#[path = "tls/handshake.rs"]
mod handshake;
#[path = "tls/reload.rs"]
mod reload;
#[path = "tls/testssl.rs"]
mod testssl;
