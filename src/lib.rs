//! sorcha-peer: a node of the Sorcha blueprint-distribution network.
//!
//! Code map:
//! - [`register`]: the system register's rules (entries, hash chain, genesis, validation,
//!   the chain and integrity checks, subscription filters, publisher signatures, hub
//!   checkpoints) and the Register (store + notifier) that everything reads and writes, page
//!   by page through its read budget.
//! - [`store`]: the `RegisterStore` interface, its embedded SQLite and MongoDB backends and
//!   the conformance suite both pass.
//! - [`protocol`]: the hub–peer protocol's messages in domain types; [`wire`]: the gRPC
//!   contract's generated types and their conversion.
//! - [`link`]: the peer's port to a hub ([`link::HubLink`], [`link::Dialer`]) in domain types
//!   (typed ids, `Option` for what may be absent);
//!   [`hub_client`] implements it over gRPC; `hub::link` implements it in process.
//! - [`hub`]: peer sessions, heartbeats, sync streams (`hub::sync_stream`) and push streams;
//!   [`peer`]: the replica's connection state machine, session loop and sync client, run by
//!   its own `PeerSettings`.
//! - [`error_code`]: the failure kinds, the `Classified` trait each domain error implements
//!   beside its definition, and what a caller is told; [`error_table`]: each kind's HTTP
//!   status, problem type and gRPC status.
//! - [`api`]: thin inbound transport adapters (REST, SSE, gRPC) on one axum router; the REST
//!   views of domain values (and their OpenAPI schemas) live there, not in the domain;
//!   [`serve`]: the listener loop under it (connection limits, timeouts, graceful stop);
//!   [`tls`]: its certificates.
//! - [`keys`]: Ed25519 signing and verifier keys in the C2SP signed-note encodings
//!   (publisher signatures: `register::signature`).
//! - [`app`]: composition root; [`config`] (checked once into `config::Settings`), [`auth`],
//!   [`role`], [`clock`]: its inputs;
//!   [`metrics`] and [`telemetry`]: what it reports.
//! - [`cli`]: the client subcommands.

pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error_code;
pub mod error_table;
pub mod hub;
pub mod hub_client;
pub mod keys;
pub mod link;
pub mod metrics;
pub mod peer;
pub mod protocol;
pub mod register;
pub mod role;
pub mod serve;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod wire;

/// This node's software, as peers name it to their hubs and the node reports it.
pub const SOFTWARE_VERSION: &str = concat!("sorcha-peer ", env!("CARGO_PKG_VERSION"));
