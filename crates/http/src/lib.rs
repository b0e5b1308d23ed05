//! HTTP pieces that the gateway and the server (and the CLI and store) share, so each exists
//! once: HTTP/2 lingering reads of unread request bodies (feature `linger`).

#[cfg(feature = "linger")]
pub mod linger;
