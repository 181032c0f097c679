// tenantry-guest: thin helpers for Tenantry plugins written in JavaScript (QuickJS, built
// with componentize-qjs). The same rules and messages as the Rust SDK (crate tenantry-guest).
//
//   import { orgResolver, validateOrgId, config, notFound } from "tenantry-guest";
//
//   export const resolver = orgResolver((orgId) => {
//     validateOrgId(orgId);                       // throws invalid(<the host's message>)
//     if (orgId === "retired") throw notFound();
//     return { url: `postgresql://${config.require("db-host")}/${dbName(orgId)}` };
//   });
//
// How the component model maps to JavaScript: the export `resolver` (or `policy`) is an
// object with a `resolve(orgId)` (or `scope(request)`) method; a `result` is returned on ok
// and thrown on error; variants are `{ tag: "not-found" }` / `{ tag: "invalid", val: "..." }`;
// record fields are camelCase (`ttlMs`, `orgLabels`); `option<T>` is `T` or `null`.
// orgResolver/tenantPolicy fill in the optional fields, turn ConfigError/IdError into
// `invalid`, and log any other exception before it traps the call, so its message reaches
// the host's error report.
//
// There is no WASI (the component is built with --stub-wasi): `console` is rerouted to the
// host log and Date.now() to the host clock here. `new Date()` without arguments traps, and
// Math.random() is seeded when the component is built, so every instance draws the same
// numbers: never use it for anything that must be unpredictable.
import * as logImport from "tenantry:plugin/log@0.1.0";
import * as configImport from "tenantry:plugin/config@0.1.0";
import * as clockImport from "tenantry:plugin/clock@0.1.0";
import * as httpImport from "tenantry:plugin/http@0.1.0";

/** Longest id accepted: PostgreSQL's identifier limit, and a DNS label's. */
export const MAX_ID_LEN = 63;

// ---- refusals ------------------------------------------------------------------------------

/** `not-found` (org resolver: the org does not exist; policy: the tenant does not). */
export const notFound = () => ({ tag: "not-found" });
/** `invalid(message)`: the id or the plugin's configuration is malformed; never retried. */
export const invalid = (message) => ({ tag: "invalid", val: String(message) });
/** `unavailable(message)`: a dependency is down; the host retries with backoff. */
export const unavailable = (message) => ({ tag: "unavailable", val: String(message) });
/** `forbidden(message)` (tenant policy): the tenant exists but may not be served. */
export const forbidden = (message) => ({ tag: "forbidden", val: String(message) });

// ---- ids -------------------------------------------------------------------------------------

/** An id that breaks the contract's rule; its message is the host's, word for word. */
export class IdError extends Error {}

/** Render untrusted input for a message: escaped like Rust's escape_debug, at most 40 chars. */
function shown(raw) {
  const chars = Array.from(raw);
  const escaped = chars.slice(0, 40).map((c) => {
    switch (c) {
      case "\t": return "\\t";
      case "\r": return "\\r";
      case "\n": return "\\n";
      case "\\": return "\\\\";
      case '"': return '\\"';
      case "'": return "\\'";
      case "\0": return "\\0";
    }
    const code = c.codePointAt(0);
    return code < 0x20 || code === 0x7f ? `\\u{${code.toString(16)}}` : c;
  });
  return `"${escaped.join("")}${chars.length > 40 ? "\u2026" : ""}"`;
}

/**
 * Check `id` against the contract's id rule: 1-63 characters of a-z, 0-9 and '-', starting
 * and ending with a letter or digit. Throws IdError; `kind` ("org", "tenant") names the id.
 */
export function checkId(kind, id) {
  if (id.length === 0) {
    throw new IdError(`${kind} id is empty: pass a non-empty id such as \`acme-corp\``);
  }
  const chars = Array.from(id);
  if (chars.length > MAX_ID_LEN) {
    throw new IdError(`${kind} id is ${chars.length} characters long; the limit is ${MAX_ID_LEN}`);
  }
  const last = chars.length - 1;
  chars.forEach((c, position) => {
    const ok = (c >= "a" && c <= "z") || (c >= "0" && c <= "9") ||
      (c === "-" && position !== 0 && position !== last);
    if (!ok) {
      throw new IdError(
        `${kind} id ${shown(id)} is invalid at position ${position}: use 1-${MAX_ID_LEN} ` +
          "characters of a-z, 0-9 and '-', starting and ending with a letter or digit",
      );
    }
  });
}

/** Check an org id; throws `invalid(<the host's message>)`. */
export function validateOrgId(orgId) {
  try {
    checkId("org", orgId);
  } catch (e) {
    throw invalid(e.message);
  }
}

/** Check a tenant id; throws `invalid(<the host's message>)`. */
export function validateTenantId(tenantId) {
  try {
    checkId("tenant", tenantId);
  } catch (e) {
    throw invalid(e.message);
  }
}

/** The form of a validated id used in `{org}`/`{tenant}` templates: `acme-corp` -> `acme_corp`. */
export const dbName = (id) => id.replaceAll("-", "_");

// ---- host imports --------------------------------------------------------------------------

/**
 * A config key that is missing or holds an unusable value. The message never repeats the
 * value (config values routinely carry passwords). Becomes `invalid` in orgResolver/tenantPolicy.
 */
export class ConfigError extends Error {
  constructor(key, problem) {
    super(
      problem === undefined
        ? `config key \`${key}\` is not set: add it to this plugin's [config] table`
        : `config key \`${key}\` is invalid: ${problem}`,
    );
    this.key = key;
  }
}

/** This plugin's own configuration (capability `config`; not granted = the call fails). */
export const config = {
  /** The raw value of `key`, or null. */
  get: (key) => configImport.get(key) ?? null,
  /** The raw value of `key`; throws ConfigError when it is not set. */
  require(key) {
    const value = config.get(key);
    if (value === null) throw new ConfigError(key);
    return value;
  },
  /** The value of `key` parsed as JSON, or null when not set; throws ConfigError if malformed. */
  json(key) {
    const raw = config.get(key);
    if (raw === null) return null;
    try {
      return JSON.parse(raw);
    } catch (e) {
      throw new ConfigError(key, `not valid JSON: ${e.message}`);
    }
  },
};

const format = (args) =>
  args.map((a) => (typeof a === "string" ? a : a instanceof Error ? `${a}` : JSON.stringify(a))).join(" ");

/**
 * Lines in the host's log (capability `log`). Not granted: dropped, but the last warning or
 * error still reaches the report if the call traps.
 */
export const log = {
  trace: (...args) => logImport.write("trace", format(args)),
  debug: (...args) => logImport.write("debug", format(args)),
  info: (...args) => logImport.write("info", format(args)),
  warn: (...args) => logImport.write("warn", format(args)),
  error: (...args) => logImport.write("error", format(args)),
};

// Without WASI, QuickJS's console would trap: send it to the host log instead.
globalThis.console = { ...log, log: log.info };

/** Wall-clock milliseconds since the Unix epoch (capability `clock`). */
export const nowMs = () => Number(clockImport.nowMs());

// Without WASI, Date.now() would trap: read the host clock instead (capability `clock`).
// `new Date()` without arguments still has no clock behind it; use `new Date(nowMs())`.
Date.now = nowMs;

/** GET an allowlisted URL (capability `http`): `{ status, body }`; throws an Error on failure. */
export const http = {
  get(url) {
    try {
      return httpImport.get(url);
    } catch (e) {
      throw new Error(`GET failed: ${typeof e === "string" ? e : e?.val ?? e}`);
    }
  },
};

// ---- exports -------------------------------------------------------------------------------

/** The value of property `key` in a list of [key, value] pairs (labels, claims), or null. */
export function property(pairs, key) {
  const found = pairs.find(([k]) => k === key);
  return found ? found[1] : null;
}

/** The principal's claim `name`, or null. */
export const claim = (request, name) =>
  request.principal ? property(request.principal.claims, name) : null;

/** Isolation values for a tenant scope. */
export const isolation = {
  row: () => ({ tag: "row" }),
  schema: (name) => ({ tag: "schema", val: name }),
  database: (url) => ({ tag: "database", val: url }),
};

const isVariant = (e) => e !== null && typeof e === "object" && typeof e.tag === "string";

function guard(call) {
  try {
    return call();
  } catch (e) {
    if (isVariant(e)) throw e;
    if (e instanceof ConfigError || e instanceof IdError) throw invalid(e.message);
    // Anything else is a bug: say what it was (the host keeps the last error for the trap
    // report), then let it trap the call.
    log.error(`uncaught exception: ${e}${e?.stack ? `\n${e.stack}` : ""}`);
    throw e;
  }
}

/**
 * The export of an org resolver: `export const resolver = orgResolver((orgId) => target)`.
 * The target needs only `url`; `region`, `ttlMs` and `labels` ([[k, v], ...] or an object)
 * are optional.
 */
export function orgResolver(resolve) {
  return {
    resolve(orgId) {
      const t = guard(() => resolve(orgId));
      const labels = t.labels ?? [];
      return {
        url: t.url,
        region: t.region ?? null,
        ttlMs: t.ttlMs ?? null,
        labels: Array.isArray(labels) ? labels : Object.entries(labels),
      };
    },
  };
}

/**
 * The export of a tenant policy: `export const policy = tenantPolicy((request) => scope)`.
 * The request has `org`, `tenant`, `app`, `principal` ({subject, claims}) and `orgLabels`.
 * The scope needs only `isolation` (see `isolation`); `settings`, `readOnly`,
 * `maxConnections` and `ttlMs` are optional.
 */
export function tenantPolicy(scope) {
  return {
    scope(request) {
      const s = guard(() => scope(request));
      const settings = s.settings ?? [];
      return {
        isolation: s.isolation,
        settings: Array.isArray(settings) ? settings : Object.entries(settings),
        readOnly: s.readOnly ?? false,
        maxConnections: s.maxConnections ?? null,
        ttlMs: s.ttlMs ?? null,
      };
    },
  };
}
