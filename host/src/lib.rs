//! # Tenantry
//!
//! Multi-tenant database routing for Rust applications: every query reaches the right
//! database with the right isolation, and the database — not the caller's memory of a
//! `WHERE` clause — enforces it.
//!
//! The flow is one-way:
//!
//! ```text
//! ids (OrgId, TenantId) ─▶ plugin (sandboxed org-resolver / tenant-policy calls)
//!                        ─▶ slots (hot-swappable plugins) ─▶ Host
//! ```
//!
//! * [`id`]: validated [`OrgId`] / [`TenantId`]; nothing unvalidated reaches a URL, a path
//!   or SQL.
//! * [`plugin`]: WebAssembly components implementing the `tenantry:plugin` WIT contract
//!   (see `wit/plugin.wit`), run under wasmtime with fuel, deadlines and memory caps, with
//!   no ambient filesystem, environment, clock or network access.
//! * [`redact`]: secrets in URLs never reach logs, errors or output.
//! * [`config`]: environment-first configuration plus an optional TOML file.
//! * [`Host`]: the embeddable entry point, [`Host::load`].
//! * Scoped data access ([`Host::get`], [`Host::tenant`], [`Host::org`], [`Host::app`]) hands
//!   out [`Scoped`] handles whose [`TenantConnection`]s see one scope's data only:
//!   [`pool`] (one pool per database, bounded registry, global connection cap) →
//!   [`isolation`] (PostgreSQL RLS / schema / database, SQLite file per tenant) →
//!   [`Scoped`]. [`manage`] creates, lists and deletes orgs and tenants; [`relocate`] moves a
//!   tenant between orgs; [`migrate`] runs the apps' migrations on every database;
//!   [`registry`] keeps many instances' plugins on one shared version.

#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod admin;
pub mod clock;
pub mod config;
pub mod dashboard;
mod host;
pub mod http;
pub mod id;
pub mod isolation;
pub mod manage;
pub mod migrate;
pub mod plugin;
pub mod pool;
pub mod redact;
pub mod registry;
pub mod relocate;
pub mod resolve;
mod scope;
pub mod vectors;

pub use config::{ConfigError, HostConfig};
pub use host::{Host, HostBuilder, HostError};
pub use id::{IdError, OrgId, TenantId};
pub use plugin::{PluginError, PluginKind, PluginLimits, PluginSpec};
pub use pool::Backend;
pub use scope::{AppScope, DataError, OrgScope, Scoped, SupportedDatabase, TenantConnection};
