//! The one integration-test binary: every module drives the node through its real interfaces
//! (sockets, the store file, child processes).

#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

mod alerts;
mod api_guide;
mod bench;
mod browser;
mod checkpoints;
mod cli;
mod conditional;
mod corruption;
mod crash;
mod cross_origin;
mod dashboard;
mod docs;
mod faults;
mod fleet;
mod genesis;
mod grpc;
mod grpc_web;
mod idempotency;
mod memory;
mod mongo;
mod network_faults;
mod node_ids;
mod observability;
mod one_port;
mod otel;
mod peer;
mod properties;
mod quickstart;
mod relay;
mod rest;
mod robustness;
mod schema;
mod security;
mod signatures;
mod sim;
mod spread;
mod sse;
mod store;
mod store_calls;
mod support;
mod tls;
mod trust;
