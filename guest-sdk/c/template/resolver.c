// A Tenantry org resolver in C: every org gets its own database on one server.
//
// Copy this directory, edit, then build and check it:
//
//   cp -r guest-sdk/c/template my-resolver
//   scripts/build-plugins.sh --lang c my-resolver          # -> target/plugins/c-my-resolver.wasm
//   cargo run -q --bin tenantry -- plugin check target/plugins/c-my-resolver.wasm \
//       --set db-host=db --sample acme
//
// The file name decides the world: resolver.c is an org resolver (include org_resolver.h,
// export with TENANTRY_EXPORT_ORG_RESOLVER), policy.c a tenant policy (tenant_policy.h,
// TENANTRY_EXPORT_TENANT_POLICY). Other .c files in the directory are compiled in too.
// Helpers and the memory rules: guest-sdk/c/tenantry_guest.h (ids, answers, config, log, JSON).
#include "org_resolver.h"
#include "tenantry_guest.h"

// Returns true with *ret filled, or false with *err filled (both start zeroed).
static bool resolve(const tenantry_string_t *org_id, tenantry_plugin_types_org_target_t *ret,
                    tenantry_plugin_types_resolve_error_t *err) {
  // Refuse ids the host would refuse, with the host's own message.
  if (!tenantry_validate_org_id(org_id, err)) return false;
  if (tenantry_string_eq(org_id, "retired")) {
    tenantry_not_found(err);
    return false;
  }
  // Config values come from the plugin's [config] table (needs grants = ["config"]).
  char *host = tenantry_config_get("db-host");  // call-scoped: freed after the call
  if (host == NULL) {
    tenantry_invalid_s(err, tenantry_config_missing("db-host"));
    return false;
  }
  char *db = tenantry_db_name(org_id->ptr, org_id->len);  // acme-corp -> acme_corp
  tenantry_string_t url = tenantry_stringf("postgresql://%s/%s", host, db);
  tenantry_log(TENANTRY_DEBUG, "resolved %s on %s", db, host);  // shown when `log` is granted
  ret->url = url;  // answer strings are malloc'ed; the host's post-return call frees them
  tenantry_props_set(&ret->labels, "placement", "shared");
  return true;
}

TENANTRY_EXPORT_ORG_RESOLVER(resolve)
