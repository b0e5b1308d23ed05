//! Certificates and keys against the real thing: keys in every form the `openssl` CLI writes,
//! certificates trove makes checked by `openssl verify`. Missing tools fail the tests, never skip them.

#[path = "certs/common.rs"]
mod common;
#[path = "certs/generate.rs"]
mod generate;
#[path = "certs/keys.rs"]
mod keys;
