//! TLS building blocks against the real thing: keys made by the `openssl` CLI, handshakes over
//! loopback with `curl` and `openssl s_client`. Missing tools fail the tests, never skip them.

#[path = "tls/common.rs"]
mod common;
#[path = "tls/generate.rs"]
mod generate;
#[path = "tls/handshake.rs"]
mod handshake;
#[path = "tls/keys.rs"]
mod keys;
#[path = "tls/reload.rs"]
mod reload;
#[path = "tls/testssl.rs"]
mod testssl;
