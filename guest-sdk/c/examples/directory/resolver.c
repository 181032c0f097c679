// Org resolver `c-directory`: the C twin of the bundled `directory` resolver.
//
// Each org's target is listed in the plugin's config key `directory`, a JSON object that
// maps an org id to a URL or to {url, region?, tier?, ttl_ms?, labels?}:
//
//   {"acme": "postgresql://app@db1:5432/acme",
//    "globex": {"url": "postgresql://app@db2.eu:5432/globex", "region": "eu-west-1",
//               "tier": "enterprise", "ttl_ms": 300000, "labels": {"team": "payments"}}}
//
// An org that is not listed is not-found (there is deliberately no fallback). A directory
// that does not parse, or has an entry that is not usable (a key that is not a valid org id,
// an empty URL, an unknown field), makes every call invalid naming the problem, so a broken
// directory is noticed at once instead of turning some orgs into "not found".
//
// Needs grants = ["config"]. Memory: the config value and the parsed tree are call-scoped
// (freed by the export wrapper), answer strings are freed by the host's post-return call, so
// an instance reused across calls does not grow. Built by `scripts/build-plugins.sh --lang c directory` into
// target/plugins/c-directory.wasm.
#include "org_resolver.h"
#include "tenantry_guest.h"

#define KEY "directory"

// Check one entry; on failure set `*why` (malloc'ed) and return false.
static bool check_entry(const char *org, const tenantry_json_t *entry, tenantry_string_t *why) {
  tenantry_string_t id_error;
  if (!tenantry_check_id("org", (const uint8_t *)org, strlen(org), &id_error)) {
    *why = tenantry_config_invalid(KEY, "entry `%s` is not a usable org id: %.*s", org,
                                   (int)id_error.len, (const char *)id_error.ptr);
    free(id_error.ptr);
    return false;
  }
  const tenantry_json_t *url = entry;
  if (entry->kind == TENANTRY_JSON_OBJECT) {
    static const char *const known[] = {"url", "region", "tier", "ttl_ms", "ttl-ms", "labels"};
    for (size_t i = 0; i < entry->len; i++) {
      bool ok = false;
      for (size_t k = 0; k < sizeof known / sizeof *known; k++) ok |= strcmp(entry->keys[i], known[k]) == 0;
      if (!ok) {
        *why = tenantry_config_invalid(
            KEY, "entry `%s` has unknown field `%s`, expected one of `url`, `region`, `tier`, `ttl_ms`, `labels`",
            org, entry->keys[i]);
        return false;
      }
    }
    url = tenantry_json_get(entry, "url");
    if (url == NULL) {
      *why = tenantry_config_invalid(KEY, "entry `%s` is missing field `url`", org);
      return false;
    }
    const char *strings[] = {"url", "region", "tier"};
    for (size_t k = 0; k < 3; k++) {
      const tenantry_json_t *v = tenantry_json_get(entry, strings[k]);
      if (v && v->kind != TENANTRY_JSON_STRING && !(k > 0 && v->kind == TENANTRY_JSON_NULL)) {
        *why = tenantry_config_invalid(KEY, "entry `%s`: `%s` must be a string, not %s", org,
                                       strings[k], tenantry_json_kind_name(v));
        return false;
      }
    }
    const tenantry_json_t *ttl = tenantry_json_get(entry, "ttl_ms");
    if (ttl == NULL) ttl = tenantry_json_get(entry, "ttl-ms");
    uint32_t ms;
    if (ttl && ttl->kind != TENANTRY_JSON_NULL && !tenantry_json_u32(ttl, &ms)) {
      *why = tenantry_config_invalid(KEY, "entry `%s`: `ttl_ms` must be an integer from 0 to 4294967295", org);
      return false;
    }
    const tenantry_json_t *labels = tenantry_json_get(entry, "labels");
    if (labels) {
      bool ok = labels->kind == TENANTRY_JSON_OBJECT;
      for (size_t i = 0; ok && i < labels->len; i++) ok = labels->items[i].kind == TENANTRY_JSON_STRING;
      if (!ok) {
        *why = tenantry_config_invalid(KEY, "entry `%s`: `labels` must be an object of strings", org);
        return false;
      }
    }
  } else if (entry->kind != TENANTRY_JSON_STRING) {
    *why = tenantry_config_invalid(KEY, "entry `%s` must be a URL string or an object with `url`, not %s",
                                   org, tenantry_json_kind_name(entry));
    return false;
  }
  const char *u = url->string;
  while (*u == ' ' || *u == '\t' || *u == '\n' || *u == '\r') u++;
  if (*u == '\0') {
    *why = tenantry_config_invalid(KEY, "entry `%s` has an empty URL", org);
    return false;
  }
  return true;
}

static bool resolve(const tenantry_string_t *org_id, tenantry_plugin_types_org_target_t *ret,
                    tenantry_plugin_types_resolve_error_t *err) {
  if (!tenantry_validate_org_id(org_id, err)) return false;
  char *raw = tenantry_config_get(KEY);
  if (raw == NULL) {
    tenantry_invalid(err,
                     "no directory: set config key `" KEY "` of this plugin to a JSON object that "
                     "maps org ids to database URLs, e.g. `{\"acme\": \"postgresql://db1/acme\"}`");
    return false;
  }
  char parse_error[128];
  tenantry_json_t *directory = tenantry_json_parse(raw, strlen(raw), parse_error);
  if (directory == NULL) {
    tenantry_invalid_s(err, tenantry_config_invalid(KEY, "not valid JSON: %s", parse_error));
    return false;
  }
  if (directory->kind != TENANTRY_JSON_OBJECT) {
    tenantry_invalid_s(err, tenantry_config_invalid(
                                KEY, "expected a JSON object that maps org ids to database URLs, found %s",
                                tenantry_json_kind_name(directory)));
    return false;
  }
  for (size_t i = 0; i < directory->len; i++) {
    tenantry_string_t why;
    if (!check_entry(directory->keys[i], &directory->items[i], &why)) {
      tenantry_invalid_s(err, why);
      return false;
    }
  }
  const tenantry_json_t *entry = tenantry_json_get_s(directory, org_id);
  if (entry == NULL) {
    tenantry_not_found(err);
    return false;
  }
  if (entry->kind == TENANTRY_JSON_STRING) {
    tenantry_target_init(ret, entry->string);
    return true;
  }
  tenantry_target_init(ret, tenantry_json_get(entry, "url")->string);
  const tenantry_json_t *region = tenantry_json_get(entry, "region");
  if (region && region->kind == TENANTRY_JSON_STRING) {
    ret->region.is_some = true;
    ret->region.val = tenantry_string_n(region->string, region->len);
  }
  const tenantry_json_t *ttl = tenantry_json_get(entry, "ttl_ms");
  if (ttl == NULL) ttl = tenantry_json_get(entry, "ttl-ms");
  if (ttl && tenantry_json_u32(ttl, &ret->ttl_ms.val)) ret->ttl_ms.is_some = true;
  const tenantry_json_t *labels = tenantry_json_get(entry, "labels");
  for (size_t i = 0; labels && i < labels->len; i++)
    tenantry_props_set_n(&ret->labels, labels->keys[i], strlen(labels->keys[i]),
                         labels->items[i].string, labels->items[i].len);
  tenantry_props_sort(&ret->labels);
  // Set last so that `tier` wins over a `tier` inside `labels`.
  const tenantry_json_t *tier = tenantry_json_get(entry, "tier");
  if (tier && tier->kind == TENANTRY_JSON_STRING)
    tenantry_props_set_n(&ret->labels, "tier", 4, tier->string, tier->len);
  return true;
}

TENANTRY_EXPORT_ORG_RESOLVER(resolve)
