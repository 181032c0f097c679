//! Host bindings generated from `wit/` for both worlds.
//!
//! The tenant-policy world reuses the org-resolver world's import and type bindings, so a
//! single set of host trait implementations ([`super::capability`]) serves both.

#![allow(missing_docs, unreachable_pub)]

pub(crate) mod resolver_world {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "tenantry:plugin/org-resolver",
        imports: {
            "tenantry:plugin/http.get": async | trappable,
            default: trappable,
        },
        exports: { default: async },
    });
}

pub(crate) mod policy_world {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "tenantry:plugin/tenant-policy",
        exports: { default: async },
        with: {
            "tenantry:plugin/types": super::resolver_world::tenantry::plugin::types,
            "tenantry:plugin/log": super::resolver_world::tenantry::plugin::log,
            "tenantry:plugin/config": super::resolver_world::tenantry::plugin::config,
            "tenantry:plugin/clock": super::resolver_world::tenantry::plugin::clock,
            "tenantry:plugin/http": super::resolver_world::tenantry::plugin::http,
        },
    });
}

pub(crate) use resolver_world::tenantry::plugin::{clock, config, http, log, types};
