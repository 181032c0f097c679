"""Org resolver `python-directory`: the Python twin of the bundled `directory` resolver.

Each org's target is listed in the plugin's config key `directory`, a JSON object that maps
an org id to a URL or to {url, region?, tier?, ttl_ms?, labels?}::

    {"acme": "postgresql://app@db1:5432/acme",
     "globex": {"url": "postgresql://app@db2.eu:5432/globex", "region": "eu-west-1",
                "tier": "enterprise", "ttl_ms": 300000, "labels": {"team": "payments"}}}

An org that is not listed is not-found (there is deliberately no fallback). A directory that
does not parse, or has an entry that is not usable (a key that is not a valid org id, an empty
URL, an unknown field), makes every call invalid naming the problem, so a broken directory is
noticed at once instead of turning some orgs into "not found".

Needs grants = ["config"]. Built by `scripts/build-plugins.sh --lang python directory` into
target/plugins/python-directory.wasm.
"""

from tenantry_guest import (
    ConfigError, IdError, OrgResolver, OrgTarget, check_id, config, invalid, not_found, target,
    validate_org_id,
)

KEY = "directory"
FIELDS = ("url", "region", "tier", "ttl_ms", "ttl-ms", "labels")


def kind_of(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    return {str: "a string", int: "a number", float: "a number", list: "an array",
            dict: "an object"}[type(v)]


def is_u32(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 4294967295


def check_entry(org: str, entry) -> None:
    """Check one entry; raises ConfigError naming the problem."""
    try:
        check_id("org", org)
    except IdError as e:
        raise ConfigError(KEY, f"entry `{org}` is not a usable org id: {e}") from None
    url = entry
    if isinstance(entry, dict):
        for field in entry:
            if field not in FIELDS:
                raise ConfigError(KEY, f"entry `{org}` has unknown field `{field}`, expected one of "
                                       "`url`, `region`, `tier`, `ttl_ms`, `labels`")
        if "url" not in entry:
            raise ConfigError(KEY, f"entry `{org}` is missing field `url`")
        url = entry["url"]
        for field in ("url", "region", "tier"):
            v = entry.get(field, "")
            if not isinstance(v, str) and not (field != "url" and v is None):
                raise ConfigError(KEY, f"entry `{org}`: `{field}` must be a string, not {kind_of(v)}")
        ttl = entry.get("ttl_ms", entry.get("ttl-ms"))
        if ttl is not None and not is_u32(ttl):
            raise ConfigError(KEY, f"entry `{org}`: `ttl_ms` must be an integer from 0 to 4294967295")
        labels = entry.get("labels", {})
        if not (isinstance(labels, dict) and all(isinstance(v, str) for v in labels.values())):
            raise ConfigError(KEY, f"entry `{org}`: `labels` must be an object of strings")
    elif not isinstance(entry, str):
        raise ConfigError(KEY, f"entry `{org}` must be a URL string or an object with `url`, "
                               f"not {kind_of(entry)}")
    if not url.strip():
        raise ConfigError(KEY, f"entry `{org}` has an empty URL")


class Resolver(OrgResolver):
    def resolve(self, org_id: str) -> OrgTarget:
        validate_org_id(org_id)
        directory = config.json(KEY)
        if directory is None:
            raise invalid(f"no directory: set config key `{KEY}` of this plugin to a JSON object that "
                          'maps org ids to database URLs, e.g. `{"acme": "postgresql://db1/acme"}`')
        if not isinstance(directory, dict):
            raise ConfigError(KEY, "expected a JSON object that maps org ids to database URLs, "
                                   f"found {kind_of(directory)}")
        for org, entry in directory.items():
            check_entry(org, entry)
        entry = directory.get(org_id)
        if entry is None:
            raise not_found()
        if isinstance(entry, str):
            return target(entry)
        labels = dict(sorted(entry.get("labels", {}).items()))
        # Set last so that `tier` wins over a `tier` inside `labels`.
        if isinstance(entry.get("tier"), str):
            labels["tier"] = entry["tier"]
        return target(entry["url"], region=entry.get("region"),
                      ttl_ms=entry.get("ttl_ms", entry.get("ttl-ms")), labels=labels)
