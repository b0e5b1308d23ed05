//! Integration tests: the real `git` CLI (and dulwich) against a real server on 127.0.0.1.

mod access_matrix;
mod api_clients;
mod archive;
mod audit;
mod auth;
mod bodies;
mod branch_permissions;
mod builds;
mod clone_fetch;
mod cluster;
mod context_path;
mod dulwich;
mod git_session;
mod h2;
mod http;
mod ls_remote;
mod metrics;
mod pull_requests;
mod push;
mod rest_refs;
mod shutdown;
mod ssh;
mod support;
mod web_ui;
mod webhooks;
