//! HTTP pieces that the gateway, the server, the store and the CLI share, so each exists once:
//! the one URL type ([`HttpUrl`]) and HTTP/2 lingering reads of unread request bodies
//! (`linger`, behind the feature of that name).

mod http_url;
#[cfg(feature = "linger")]
pub mod linger;

pub use http_url::{HttpUrl, UrlError};
