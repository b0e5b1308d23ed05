//! trove-server: the Git server (smart HTTP, REST, web UI) that knows it lives behind a proxy.
