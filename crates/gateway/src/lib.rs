//! trove-gateway: the reverse proxy and TLS terminator that plays Apache httpd's part.
