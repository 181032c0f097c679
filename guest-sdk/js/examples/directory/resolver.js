// Org resolver `js-directory`: the JavaScript twin of the bundled `directory` resolver.
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
// Needs grants = ["config"]. Built by `scripts/build-plugins.sh --lang js directory` into
// target/plugins/js-directory.wasm.
import {
  ConfigError, checkId, config, invalid, notFound, orgResolver, validateOrgId,
} from "tenantry-guest";

const KEY = "directory";
const FIELDS = ["url", "region", "tier", "ttl_ms", "ttl-ms", "labels"];

const kindOf = (v) =>
  v === null ? "null" : Array.isArray(v) ? "an array" : typeof v === "object" ? "an object"
    : typeof v === "string" ? "a string" : typeof v === "number" ? "a number" : "a boolean";
const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const isU32 = (v) => Number.isInteger(v) && v >= 0 && v <= 4294967295;
const bad = (message) => new ConfigError(KEY, message);

/** Check one entry; throws ConfigError naming the problem. */
function checkEntry(org, entry) {
  try {
    checkId("org", org);
  } catch (e) {
    throw bad(`entry \`${org}\` is not a usable org id: ${e.message}`);
  }
  let url = entry;
  if (isObject(entry)) {
    for (const field of Object.keys(entry)) {
      if (!FIELDS.includes(field)) {
        throw bad(`entry \`${org}\` has unknown field \`${field}\`, expected one of \`url\`, ` +
          "`region`, `tier`, `ttl_ms`, `labels`");
      }
    }
    if (!("url" in entry)) throw bad(`entry \`${org}\` is missing field \`url\``);
    url = entry.url;
    for (const field of ["url", "region", "tier"]) {
      const v = entry[field];
      if (v !== undefined && typeof v !== "string" && !(field !== "url" && v === null)) {
        throw bad(`entry \`${org}\`: \`${field}\` must be a string, not ${kindOf(v)}`);
      }
    }
    const ttl = entry.ttl_ms ?? entry["ttl-ms"] ?? null;
    if (ttl !== null && !isU32(ttl)) {
      throw bad(`entry \`${org}\`: \`ttl_ms\` must be an integer from 0 to 4294967295`);
    }
    if ("labels" in entry &&
        !(isObject(entry.labels) && Object.values(entry.labels).every((v) => typeof v === "string"))) {
      throw bad(`entry \`${org}\`: \`labels\` must be an object of strings`);
    }
  } else if (typeof entry !== "string") {
    throw bad(`entry \`${org}\` must be a URL string or an object with \`url\`, not ${kindOf(entry)}`);
  }
  if (url.trim() === "") throw bad(`entry \`${org}\` has an empty URL`);
}

export const resolver = orgResolver((orgId) => {
  validateOrgId(orgId);
  const directory = config.json(KEY);
  if (directory === null) {
    throw invalid(`no directory: set config key \`${KEY}\` of this plugin to a JSON object that ` +
      'maps org ids to database URLs, e.g. `{"acme": "postgresql://db1/acme"}`');
  }
  return lookup(directory, orgId);
});

function lookup(directory, orgId) {
  if (!isObject(directory)) {
    throw bad(`expected a JSON object that maps org ids to database URLs, found ${kindOf(directory)}`);
  }
  for (const [org, entry] of Object.entries(directory)) checkEntry(org, entry);
  if (!Object.hasOwn(directory, orgId)) throw notFound();
  const entry = directory[orgId];
  if (typeof entry === "string") return { url: entry };
  const labels = Object.entries(entry.labels ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  // Set last so that `tier` wins over a `tier` inside `labels`.
  if (typeof entry.tier === "string") {
    const at = labels.findIndex(([k]) => k === "tier");
    if (at >= 0) labels[at] = ["tier", entry.tier];
    else labels.push(["tier", entry.tier]);
  }
  return {
    url: entry.url,
    region: entry.region ?? null,
    ttlMs: entry.ttl_ms ?? entry["ttl-ms"] ?? null,
    labels,
  };
}
