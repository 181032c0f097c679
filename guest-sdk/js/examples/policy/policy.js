// Tenant policy `js-policy`: a tenant's tier decides how it is isolated and limited.
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
// Built by `scripts/build-plugins.sh --lang js policy` into target/plugins/js-policy.wasm.
import {
  ConfigError, checkId, claim, config, dbName, forbidden, invalid, isolation, property,
  tenantPolicy, validateTenantId,
} from "tenantry-guest";

const BUILT_IN = {
  standard: { isolation: "row" },
  free: { isolation: "row" },
  pro: { isolation: "schema" },
  enterprise: { isolation: "database" },
};
const FIELDS = ["isolation", "schema", "database", "read_only", "max_connections", "ttl_ms", "settings", "deny"];

const kindOf = (v) =>
  v === null ? "null" : Array.isArray(v) ? "an array" : typeof v === "object" ? "an object"
    : typeof v === "string" ? "a string" : typeof v === "number" ? "a number" : "a boolean";
const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const isU32 = (v) => Number.isInteger(v) && v >= 0 && v <= 4294967295;
const byKey = ([a], [b]) => (a < b ? -1 : a > b ? 1 : 0);

/** A tier's fields under their snake_case names (`read-only` is read as `read_only`); null = unset. */
function normalise(name, tier) {
  const bad = (problem) => new ConfigError("tiers", problem);
  if (!isObject(tier)) throw bad(`tier \`${name}\` must be an object, not ${kindOf(tier)}`);
  const t = {};
  for (const [key, value] of Object.entries(tier)) {
    const field = key.replaceAll("-", "_");
    if (!FIELDS.includes(field)) {
      throw bad(`tier \`${name}\` has unknown field \`${key}\`, expected one of \`isolation\`, ` +
        "`schema`, `database`, `read_only`, `max_connections`, `ttl_ms`, `settings`, `deny`");
    }
    if (value !== null) t[field] = value;
  }
  if (t.isolation !== undefined && !["row", "schema", "database"].includes(t.isolation)) {
    throw bad(`tier \`${name}\`: unknown variant \`${typeof t.isolation === "string" ? t.isolation : kindOf(t.isolation)}\`, ` +
      "expected one of `row`, `schema`, `database`");
  }
  for (const field of ["schema", "database", "deny"]) {
    if (t[field] !== undefined && typeof t[field] !== "string") {
      throw bad(`tier \`${name}\`: \`${field}\` must be a string, not ${kindOf(t[field])}`);
    }
  }
  if (t.read_only !== undefined && typeof t.read_only !== "boolean") {
    throw bad(`tier \`${name}\`: \`read_only\` must be true or false`);
  }
  for (const field of ["max_connections", "ttl_ms"]) {
    if (t[field] !== undefined && !isU32(t[field])) {
      throw bad(`tier \`${name}\`: \`${field}\` must be an integer from 0 to 4294967295`);
    }
  }
  if (t.settings !== undefined &&
      !(isObject(t.settings) && Object.values(t.settings).every((v) => typeof v === "string"))) {
    throw bad(`tier \`${name}\`: \`settings\` must be an object of strings`);
  }
  return t;
}

/** Fill the `what` template of tier `tier` with the request's ids. */
function fill(tier, what, template, request) {
  if (!template.includes("{tenant}")) {
    throw invalid(`the ${what} template of tier \`${tier}\` has no {tenant} placeholder, so all of ` +
      `the tier's tenants would share one ${what}: add {tenant} to it`);
  }
  if (template.includes("{org}") && request.org === "") {
    throw invalid(`the ${what} template of tier \`${tier}\` uses {org}, but the host runs without ` +
      "orgs: remove {org} from it");
  }
  return template.replaceAll("{org}", dbName(request.org)).replaceAll("{tenant}", dbName(request.tenant));
}

/** The tier's name for `request`, and what chose it (for messages). */
function chooseTier(request) {
  for (const name of ["tier", "plan"]) {
    const tier = claim(request, name);
    if (tier !== null) return [tier, `principal claim \`${name}\``];
  }
  const label = property(request.orgLabels, "tier");
  if (label !== null) return [label, "org label `tier`"];
  const fallback = config.get("default-tier");
  return fallback !== null ? [fallback, "config key `default-tier`"] : ["standard", "the default tier"];
}

export const policy = tenantPolicy((request) => {
  validateTenantId(request.tenant);
  // An empty org means the host runs without orgs; anything else must be a valid id.
  if (request.org !== "") checkId("org", request.org);

  const configured = config.json("tiers");
  if (configured !== null && !isObject(configured)) {
    throw new ConfigError("tiers", `expected a JSON object that maps tier names to tiers, found ${kindOf(configured)}`);
  }
  const tiers = {};
  for (const [name, tier] of Object.entries(configured ?? BUILT_IN)) tiers[name] = normalise(name, tier);

  const [name, source] = chooseTier(request);
  if (!Object.hasOwn(tiers, name)) {
    const where = configured === null
      ? "built-in tiers (set config key `tiers` to define your own)"
      : "tiers defined in config key `tiers`";
    throw invalid(`tier \`${name}\` (from ${source}) is not defined; ${where}: ${Object.keys(tiers).sort().join(", ")}`);
  }
  const tier = tiers[name];
  if (tier.deny !== undefined) throw forbidden(tier.deny);
  let iso;
  switch (tier.isolation) {
    case "row":
      iso = isolation.row();
      break;
    case "schema":
      iso = isolation.schema(fill(name, "schema", tier.schema ?? "tenant_{tenant}", request));
      break;
    case "database": {
      const template = tier.database ?? config.get("database-template");
      if (template === null) {
        throw invalid(`tier \`${name}\` isolates tenants in their own database but has no database ` +
          "template: set `database` in the tier (config key `tiers`) or config key " +
          "`database-template`, e.g. `postgresql://app@db:5432/{org}_{tenant}`");
      }
      iso = isolation.database(fill(name, "database", template, request));
      break;
    }
    default:
      throw invalid(`tier \`${name}\` in config key \`tiers\` sets neither \`isolation\` nor \`deny\`: ` +
        'add isolation = "row", "schema" or "database"');
  }
  return {
    isolation: iso,
    settings: Object.entries(tier.settings ?? {}).sort(byKey),
    readOnly: tier.read_only ?? false,
    maxConnections: tier.max_connections ?? null,
    ttlMs: tier.ttl_ms ?? null,
  };
});
