//! Integration tests: the real `git` CLI (and dulwich) against a real server on 127.0.0.1.

mod access_matrix;
mod api_clients;
mod auth;
mod bodies;
mod clone_fetch;
mod cluster;
mod context_path;
mod dulwich;
mod git_session;
mod h2;
mod http;
mod ls_remote;
mod metrics;
mod push;
mod shutdown;
mod support;
mod web_ui;
