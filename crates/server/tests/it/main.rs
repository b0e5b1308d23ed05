//! Integration tests: the real `git` CLI (and dulwich) against a real server on 127.0.0.1.

mod api_clients;
mod auth;
mod clone_fetch;
mod context_path;
mod dulwich;
mod h2;
mod http;
mod ls_remote;
mod push;
mod support;
mod web_ui;
