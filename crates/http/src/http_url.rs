//! `HttpUrl`: an absolute `http` or `https` URL, parsed once by the `url` crate (the WHATWG URL
//! Standard) and checked for what a URL of a web server may hold, with the port and path kept
//! as written where a caller must echo them (a gateway forwards the path it was given).
//!
//! The gateway's origin URLs, the server's base URL and `trove doctor`'s URLs all go through
//! it; each caller adds its own rules (only `http`, no query, a context path) and says what is
//! wrong in its own words, matching on [`UrlError`].

use std::fmt;

/// Why a text is not an absolute `http`/`https` URL. Checked in this order, so a text with
/// several faults is refused for the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlError {
    /// Whitespace or a control character anywhere (the `url` crate would silently drop tabs
    /// and newlines and trim spaces, so `http://exa mple` is refused here instead).
    Whitespace,
    /// No `scheme://`.
    NoScheme,
    /// A scheme other than `http` or `https` (in any case).
    Scheme,
    /// `user@` or `user:password@` before the host.
    Userinfo,
    /// `[` with no closing `]`.
    Ipv6Unclosed,
    /// Something other than `:port` after an IPv6 address's `]`.
    AfterIpv6,
    /// A `:` with no port, or a port that is not a number up to 65535.
    Port,
    /// No host: `http://`, `http://:80`, `http:///x`.
    NoHost,
    /// A host the URL Standard refuses: a character a host cannot hold, a bad IPv4 or IPv6
    /// address, a name that is not ASCII (see the crate's IDNA note in `Cargo.toml`).
    Host,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UrlError::Whitespace => "it contains whitespace or a control character",
            UrlError::NoScheme => "it has no `http://` or `https://`",
            UrlError::Scheme => "the scheme is not `http` or `https`",
            UrlError::Userinfo => "it has a user name in it",
            UrlError::Ipv6Unclosed => "an IPv6 address has no closing `]`",
            UrlError::AfterIpv6 => "something other than a port follows the IPv6 address",
            UrlError::Port => "the port is not a number from 0 to 65535",
            UrlError::NoHost => "it has no host name",
            UrlError::Host => "the host is not a valid host name or IP address",
        })
    }
}

impl std::error::Error for UrlError {}

/// An absolute `http` or `https` URL with a host (see the module's documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    url: url::Url,
    /// The port as written, the scheme's default included (`url` forgets an explicit `:443`).
    port: Option<u16>,
    /// The path as written, without query or fragment: `` for `http://h`, `/` for `http://h/`.
    path: String,
}

impl HttpUrl {
    pub fn parse(input: &str) -> Result<HttpUrl, UrlError> {
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UrlError::Whitespace);
        }
        // The URL Standard also reads `http:host` and `http:/host`; a URL of ours is written
        // with `//` (RFC 3986 §3.2: the authority follows `//`).
        let (scheme, rest) = input.split_once("://").ok_or(UrlError::NoScheme)?;
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(UrlError::Scheme);
        }
        // Where the authority ends, as the URL Standard reads special schemes (`\` is `/`).
        let end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.contains('@') {
            return Err(UrlError::Userinfo);
        }
        let port = match authority.strip_prefix('[') {
            Some(v6) => {
                let close = v6.find(']').ok_or(UrlError::Ipv6Unclosed)?;
                match &v6[close + 1..] {
                    "" => None,
                    after => Some(after.strip_prefix(':').ok_or(UrlError::AfterIpv6)?),
                }
            }
            None => authority.split_once(':').map(|(_, p)| p),
        };
        // `url` reads `http://h:` as no port, and `+80` never reaches it as a number here.
        let port = match port {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse::<u16>().map_err(|_| UrlError::Port)?),
            Some(_) => return Err(UrlError::Port),
            None => None,
        };
        // `http:///x` is host `x` to the URL Standard (it skips extra slashes).
        if authority.is_empty() || authority.starts_with(':') {
            return Err(UrlError::NoHost);
        }
        let url = url::Url::parse(input).map_err(|e| match e {
            url::ParseError::EmptyHost => UrlError::NoHost,
            url::ParseError::InvalidPort => UrlError::Port,
            _ => UrlError::Host,
        })?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(UrlError::NoHost);
        }
        let path = &tail[..tail.find(['?', '#']).unwrap_or(tail.len())];
        Ok(HttpUrl { url, port, path: path.to_owned() })
    }

    /// `http` or `https`, lower-case.
    pub fn scheme(&self) -> &str {
        self.url.scheme()
    }

    /// The host as the URL Standard serializes it: a name in lower case, an IPv4 address in
    /// dotted decimal, an IPv6 address compressed and in brackets (`[::1]`).
    pub fn host(&self) -> &str {
        self.url.host_str().unwrap_or_default()
    }

    /// The port as written (`Some(443)` for `https://h:443`), `None` when none is.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The port as written, else the scheme's (80 for `http`, 443 for `https`).
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(if self.scheme() == "https" { 443 } else { 80 })
    }

    /// `host` or `host:port`, the port as written (so `:443` stays when given).
    pub fn authority(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host()),
            None => self.host().to_owned(),
        }
    }

    /// The path as written, without query or fragment: `` for `http://h`, `/a/` for `http://h/a/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether a `?` (even an empty query) follows the path.
    pub fn has_query(&self) -> bool {
        self.url.query().is_some()
    }

    /// Whether a `#` follows the path or query.
    pub fn has_fragment(&self) -> bool {
        self.url.fragment().is_some()
    }
}

#[cfg(test)]
mod tests;
