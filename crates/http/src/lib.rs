//! HTTP pieces that the gateway, the server, the store and the CLI share, so each exists once:
//! the one URL type ([`HttpUrl`]), HTTP/2 lingering reads of unread request bodies
//! (`linger`, behind the feature of that name), and Prometheus's text format (`prometheus`).

mod http_url;
#[cfg(feature = "linger")]
pub mod linger;
pub mod prometheus;

pub use http_url::{HttpUrl, UrlError};
