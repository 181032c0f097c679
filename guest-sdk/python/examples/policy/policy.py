"""Tenant policy `python-policy`: a tenant's tier decides how it is isolated and limited.

A simpler twin of the bundled `tiered-policy` (same rules and messages, JSON only, no
`tenants` key). Config (capability `config`):

    tiers              JSON object: tier -> {isolation: "row" | "schema" | "database",
                       schema?, database?, read_only?, max_connections?, ttl_ms?,
                       settings?: {name: value}, deny?: "message"}
                       (dashed names such as `read-only` work too). Without it the built-in
                       tiers apply: standard and free = row, pro = schema `tenant_{tenant}`,
                       enterprise = database from `database-template`.
    default-tier       tier when nothing else decides (default `standard`)
    database-template  database URL template of tiers that set none

The tier is the principal's claim `tier`, else its claim `plan`, else the org's label `tier`
(set by the org resolver), else `default-tier`. In templates `{org}` and `{tenant}` become the
ids with '-' mapped to '_'; schema and database templates must contain `{tenant}`, or every
tenant of the tier would share one schema or database.

Built by `scripts/build-plugins.sh --lang python policy` into target/plugins/python-policy.wasm.
"""

from tenantry_guest import (
    ConfigError, ScopeRequest, TenantPolicy, TenantScope, check_id, claim, config, database,
    db_name, denied_invalid, forbidden, property, row, schema, scope, validate_tenant_id,
)

BUILT_IN = {
    "standard": {"isolation": "row"},
    "free": {"isolation": "row"},
    "pro": {"isolation": "schema"},
    "enterprise": {"isolation": "database"},
}
FIELDS = ("isolation", "schema", "database", "read_only", "max_connections", "ttl_ms", "settings", "deny")


def kind_of(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    return {str: "a string", int: "a number", float: "a number", list: "an array",
            dict: "an object"}[type(v)]


def is_u32(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 4294967295


def normalise(name: str, tier) -> dict:
    """A tier's fields under their snake_case names (`read-only` is read as `read_only`); null = unset."""
    def bad(problem: str) -> ConfigError:
        return ConfigError("tiers", problem)

    if not isinstance(tier, dict):
        raise bad(f"tier `{name}` must be an object, not {kind_of(tier)}")
    t = {}
    for key, value in tier.items():
        field = key.replace("-", "_")
        if field not in FIELDS:
            raise bad(f"tier `{name}` has unknown field `{key}`, expected one of `isolation`, `schema`, "
                      "`database`, `read_only`, `max_connections`, `ttl_ms`, `settings`, `deny`")
        if value is not None:
            t[field] = value
    iso = t.get("isolation")
    if iso is not None and iso not in ("row", "schema", "database"):
        shown = iso if isinstance(iso, str) else kind_of(iso)
        raise bad(f"tier `{name}`: unknown variant `{shown}`, expected one of `row`, `schema`, `database`")
    for field in ("schema", "database", "deny"):
        if field in t and not isinstance(t[field], str):
            raise bad(f"tier `{name}`: `{field}` must be a string, not {kind_of(t[field])}")
    if "read_only" in t and not isinstance(t["read_only"], bool):
        raise bad(f"tier `{name}`: `read_only` must be true or false")
    for field in ("max_connections", "ttl_ms"):
        if field in t and not is_u32(t[field]):
            raise bad(f"tier `{name}`: `{field}` must be an integer from 0 to 4294967295")
    settings = t.get("settings", {})
    if not (isinstance(settings, dict) and all(isinstance(v, str) for v in settings.values())):
        raise bad(f"tier `{name}`: `settings` must be an object of strings")
    return t


def fill(tier: str, what: str, template: str, request: ScopeRequest) -> str:
    """Fill the `what` template of tier `tier` with the request's ids."""
    if "{tenant}" not in template:
        raise denied_invalid(f"the {what} template of tier `{tier}` has no {{tenant}} placeholder, so all "
                             f"of the tier's tenants would share one {what}: add {{tenant}} to it")
    if "{org}" in template and request.org == "":
        raise denied_invalid(f"the {what} template of tier `{tier}` uses {{org}}, but the host runs "
                             "without orgs: remove {org} from it")
    return template.replace("{org}", db_name(request.org)).replace("{tenant}", db_name(request.tenant))


def choose_tier(request: ScopeRequest):
    """The tier's name for `request`, and what chose it (for messages)."""
    for name in ("tier", "plan"):
        tier = claim(request, name)
        if tier is not None:
            return tier, f"principal claim `{name}`"
    label = property(request.org_labels, "tier")
    if label is not None:
        return label, "org label `tier`"
    fallback = config.get("default-tier")
    if fallback is not None:
        return fallback, "config key `default-tier`"
    return "standard", "the default tier"


class Policy(TenantPolicy):
    def scope(self, request: ScopeRequest) -> TenantScope:
        validate_tenant_id(request.tenant)
        # An empty org means the host runs without orgs; anything else must be a valid id.
        if request.org:
            check_id("org", request.org)

        configured = config.json("tiers")
        if configured is not None and not isinstance(configured, dict):
            raise ConfigError("tiers", "expected a JSON object that maps tier names to tiers, "
                                       f"found {kind_of(configured)}")
        defined = BUILT_IN if configured is None else configured
        tiers = {name: normalise(name, tier) for name, tier in defined.items()}

        name, source = choose_tier(request)
        if name not in tiers:
            where = ("built-in tiers (set config key `tiers` to define your own)" if configured is None
                     else "tiers defined in config key `tiers`")
            raise denied_invalid(f"tier `{name}` (from {source}) is not defined; {where}: "
                                 + ", ".join(sorted(tiers)))
        tier = tiers[name]
        if "deny" in tier:
            raise forbidden(tier["deny"])
        iso = tier.get("isolation")
        if iso == "row":
            isolation = row()
        elif iso == "schema":
            isolation = schema(fill(name, "schema", tier.get("schema", "tenant_{tenant}"), request))
        elif iso == "database":
            template = tier.get("database")
            if template is None:
                template = config.get("database-template")
            if template is None:
                raise denied_invalid(
                    f"tier `{name}` isolates tenants in their own database but has no database "
                    "template: set `database` in the tier (config key `tiers`) or config key "
                    "`database-template`, e.g. `postgresql://app@db:5432/{org}_{tenant}`")
            isolation = database(fill(name, "database", template, request))
        else:
            raise denied_invalid(f"tier `{name}` in config key `tiers` sets neither `isolation` nor "
                                 '`deny`: add isolation = "row", "schema" or "database"')
        return scope(isolation, settings=sorted(tier.get("settings", {}).items()),
                     read_only=tier.get("read_only", False),
                     max_connections=tier.get("max_connections"), ttl_ms=tier.get("ttl_ms"))
