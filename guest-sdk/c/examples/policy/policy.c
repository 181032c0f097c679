// Tenant policy `c-policy`: a tenant's tier decides how it is isolated and limited.
//
// A simpler twin of the bundled `tiered-policy` (same rules and messages, JSON only, no
// `tenants` key). Config (capability `config`):
//
//   tiers              JSON object: tier -> {isolation: "row" | "schema" | "database",
//                      schema?, database?, read_only?, max_connections?, ttl_ms?,
//                      settings?: {name: value}, deny?: "message"}
//                      (dashed names such as `read-only` work too). Without it the built-in
//                      tiers apply: standard and free = row, pro = schema `tenant_{tenant}`,
//                      enterprise = database from `database-template`.
//   default-tier       tier when nothing else decides (default `standard`)
//   database-template  database URL template of tiers that set none
//
// The tier is the principal's claim `tier`, else its claim `plan`, else the org's label
// `tier` (set by the org resolver), else `default-tier`. In templates `{org}` and `{tenant}`
// become the ids with '-' mapped to '_'; schema and database templates must contain
// `{tenant}`, or every tenant of the tier would share one schema or database.
//
// Built by `scripts/build-plugins.sh --lang c policy` into target/plugins/c-policy.wasm.
#include "tenant_policy.h"
#include "tenantry_guest.h"

typedef tenantry_plugin_types_denial_t denial_t;

static const char *const FIELDS[] = {"isolation", "schema", "database", "read_only", "read-only",
                                     "max_connections", "max-connections", "ttl_ms", "ttl-ms",
                                     "settings", "deny"};

// Field `name` of a tier, also under its dashed spelling.
static const tenantry_json_t *field(const tenantry_json_t *tier, const char *name) {
  const tenantry_json_t *v = tenantry_json_get(tier, name);
  if (v == NULL && strchr(name, '_')) {
    char dashed[32];
    size_t n = strlen(name);
    for (size_t i = 0; i <= n && i < sizeof dashed; i++) dashed[i] = name[i] == '_' ? '-' : name[i];
    v = tenantry_json_get(tier, dashed);
  }
  return v != NULL && v->kind == TENANTRY_JSON_NULL ? NULL : v;
}

// Check the shape of tier `name`; on failure fill `err`.
static bool check_tier(const char *name, const tenantry_json_t *tier, denial_t *err) {
#define BAD(...) (tenantry_denial_invalid_s(err, tenantry_config_invalid("tiers", __VA_ARGS__)), false)
  if (tier->kind != TENANTRY_JSON_OBJECT)
    return BAD("tier `%s` must be an object, not %s", name, tenantry_json_kind_name(tier));
  for (size_t i = 0; i < tier->len; i++) {
    bool known = false;
    for (size_t k = 0; k < sizeof FIELDS / sizeof *FIELDS; k++) known |= strcmp(tier->keys[i], FIELDS[k]) == 0;
    if (!known)
      return BAD("tier `%s` has unknown field `%s`, expected one of `isolation`, `schema`, `database`, "
                 "`read_only`, `max_connections`, `ttl_ms`, `settings`, `deny`",
                 name, tier->keys[i]);
  }
  const tenantry_json_t *iso = field(tier, "isolation");
  if (iso && (iso->kind != TENANTRY_JSON_STRING ||
              (strcmp(iso->string, "row") && strcmp(iso->string, "schema") && strcmp(iso->string, "database"))))
    return BAD("tier `%s`: unknown variant `%s`, expected one of `row`, `schema`, `database`", name,
               iso->kind == TENANTRY_JSON_STRING ? iso->string : tenantry_json_kind_name(iso));
  const char *strings[] = {"schema", "database", "deny"};
  for (size_t k = 0; k < 3; k++) {
    const tenantry_json_t *v = field(tier, strings[k]);
    if (v && v->kind != TENANTRY_JSON_STRING)
      return BAD("tier `%s`: `%s` must be a string, not %s", name, strings[k], tenantry_json_kind_name(v));
  }
  const tenantry_json_t *ro = field(tier, "read_only");
  if (ro && ro->kind != TENANTRY_JSON_BOOL) return BAD("tier `%s`: `read_only` must be true or false", name);
  const char *numbers[] = {"max_connections", "ttl_ms"};
  for (size_t k = 0; k < 2; k++) {
    const tenantry_json_t *v = field(tier, numbers[k]);
    uint32_t n;
    if (v && !tenantry_json_u32(v, &n))
      return BAD("tier `%s`: `%s` must be an integer from 0 to 4294967295", name, numbers[k]);
  }
  const tenantry_json_t *settings = field(tier, "settings");
  if (settings) {
    bool ok = settings->kind == TENANTRY_JSON_OBJECT;
    for (size_t i = 0; ok && i < settings->len; i++) ok = settings->items[i].kind == TENANTRY_JSON_STRING;
    if (!ok) return BAD("tier `%s`: `settings` must be an object of strings", name);
  }
  return true;
#undef BAD
}

// Fill the `what` template of tier `tier` with the request's ids.
static bool fill(const char *tier, const char *what, const char *template,
                 const tenantry_plugin_types_scope_request_t *req, tenantry_string_t *out, denial_t *err) {
  if (strstr(template, "{tenant}") == NULL) {
    tenantry_denial_invalid(err,
                            "the %s template of tier `%s` has no {tenant} placeholder, so all of the "
                            "tier's tenants would share one %s: add {tenant} to it",
                            what, tier, what);
    return false;
  }
  if (strstr(template, "{org}") && req->org.len == 0) {
    tenantry_denial_invalid(err,
                            "the %s template of tier `%s` uses {org}, but the host runs without orgs: "
                            "remove {org} from it",
                            what, tier);
    return false;
  }
  char *org = tenantry_db_name(req->org.ptr, req->org.len);
  char *tenant = tenantry_db_name(req->tenant.ptr, req->tenant.len);
  tenantry_buf_t b = {0};
  for (const char *p = template; *p;) {
    if (strncmp(p, "{org}", 5) == 0) { tenantry_buf_puts(&b, org); p += 5; }
    else if (strncmp(p, "{tenant}", 8) == 0) { tenantry_buf_puts(&b, tenant); p += 8; }
    else tenantry_buf_put(&b, p++, 1);
  }
  *out = tenantry_buf_finish(&b);
  return true;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool scope(const tenantry_plugin_types_scope_request_t *req,
                  tenantry_plugin_types_tenant_scope_t *ret, denial_t *err) {
  if (!tenantry_validate_tenant_id(&req->tenant, err)) return false;
  // An empty org means the host runs without orgs; anything else must be a valid id.
  tenantry_string_t message;
  if (req->org.len > 0 && !tenantry_check_id("org", req->org.ptr, req->org.len, &message)) {
    tenantry_denial_invalid_s(err, message);
    return false;
  }

  // The tiers: configured, or built in.
  char *raw = tenantry_config_get("tiers");
  bool built_in = raw == NULL;
  if (built_in)
    raw = "{\"standard\": {\"isolation\": \"row\"}, \"free\": {\"isolation\": \"row\"},"
          " \"pro\": {\"isolation\": \"schema\"}, \"enterprise\": {\"isolation\": \"database\"}}";
  char parse_error[128];
  tenantry_json_t *tiers = tenantry_json_parse(raw, strlen(raw), parse_error);
  if (tiers == NULL) {
    tenantry_denial_invalid_s(err, tenantry_config_invalid("tiers", "not valid JSON: %s", parse_error));
    return false;
  }
  if (tiers->kind != TENANTRY_JSON_OBJECT) {
    tenantry_denial_invalid_s(err, tenantry_config_invalid("tiers", "expected a JSON object that maps tier names to tiers, found %s",
                                                           tenantry_json_kind_name(tiers)));
    return false;
  }
  for (size_t i = 0; i < tiers->len; i++)
    if (!check_tier(tiers->keys[i], &tiers->items[i], err)) return false;

  // The tier's name, and what chose it.
  const tenantry_string_t *chosen;
  const char *source;
  char *name;
  if ((chosen = tenantry_claim(req, "tier"))) source = "principal claim `tier`";
  else if ((chosen = tenantry_claim(req, "plan"))) source = "principal claim `plan`";
  else if ((chosen = tenantry_props_get(&req->org_labels, "tier"))) source = "org label `tier`";
  if (chosen) {
    name = tenantry_cstr(chosen);
  } else if ((name = tenantry_config_get("default-tier"))) {
    source = "config key `default-tier`";
  } else {
    name = "standard";
    source = "the default tier";
  }

  const tenantry_json_t *tier = tenantry_json_get(tiers, name);
  if (tier == NULL) {
    char **names = malloc((tiers->len + 1) * sizeof *names);
    memcpy(names, tiers->keys, tiers->len * sizeof *names);
    qsort(names, tiers->len, sizeof *names, cmp_names);
    tenantry_buf_t list = {0};
    for (size_t i = 0; i < tiers->len; i++) {
      if (i > 0) tenantry_buf_puts(&list, ", ");
      tenantry_buf_puts(&list, names[i]);
    }
    tenantry_buf_put(&list, "", 0);
    tenantry_denial_invalid(err, "tier `%s` (from %s) is not defined; %s: %s", name, source,
                            built_in ? "built-in tiers (set config key `tiers` to define your own)"
                                     : "tiers defined in config key `tiers`",
                            list.ptr);
    free(list.ptr);
    free(names);
    return false;
  }

  const tenantry_json_t *deny = field(tier, "deny");
  if (deny) {
    tenantry_denial_forbidden(err, "%s", deny->string);
    return false;
  }
  const tenantry_json_t *iso = field(tier, "isolation");
  if (iso == NULL) {
    tenantry_denial_invalid(err,
                            "tier `%s` in config key `tiers` sets neither `isolation` nor `deny`: add "
                            "isolation = \"row\", \"schema\" or \"database\"",
                            name);
    return false;
  }
  if (strcmp(iso->string, "schema") == 0) {
    const tenantry_json_t *t = field(tier, "schema");
    ret->isolation.tag = TENANTRY_PLUGIN_TYPES_ISOLATION_SCHEMA;
    if (!fill(name, "schema", t ? t->string : "tenant_{tenant}", req, &ret->isolation.val.schema, err))
      return false;
  } else if (strcmp(iso->string, "database") == 0) {
    const tenantry_json_t *t = field(tier, "database");
    char *template = t ? t->string : tenantry_config_get("database-template");
    if (template == NULL) {
      tenantry_denial_invalid(err,
                              "tier `%s` isolates tenants in their own database but has no database "
                              "template: set `database` in the tier (config key `tiers`) or config key "
                              "`database-template`, e.g. `postgresql://app@db:5432/{org}_{tenant}`",
                              name);
      return false;
    }
    ret->isolation.tag = TENANTRY_PLUGIN_TYPES_ISOLATION_DATABASE;
    if (!fill(name, "database", template, req, &ret->isolation.val.database, err)) return false;
  }
  const tenantry_json_t *v;
  if ((v = field(tier, "read_only"))) ret->read_only = v->boolean;
  if ((v = field(tier, "max_connections"))) ret->max_connections.is_some = tenantry_json_u32(v, &ret->max_connections.val);
  if ((v = field(tier, "ttl_ms"))) ret->ttl_ms.is_some = tenantry_json_u32(v, &ret->ttl_ms.val);
  if ((v = field(tier, "settings"))) {
    for (size_t i = 0; i < v->len; i++)
      tenantry_props_set_n(&ret->settings, v->keys[i], strlen(v->keys[i]), v->items[i].string, v->items[i].len);
    tenantry_props_sort(&ret->settings);
  }
  return true;
}

TENANTRY_EXPORT_TENANT_POLICY(scope)
