"""A Tenantry org resolver in Python: every org gets its own database on one server.

Copy this directory, edit, then build and check it::

    cp -r guest-sdk/python/template my-resolver
    scripts/build-plugins.sh --lang python my-resolver     # -> target/plugins/python-my-resolver.wasm
    cargo run -q --bin tenantry -- plugin check target/plugins/python-my-resolver.wasm \\
        --set db-host=db --sample acme

The entry module's name decides the world: resolver.py is an org resolver (it defines class
`Resolver`), policy.py a tenant policy (class `Policy`). Other modules in the directory can be
imported. `tenantry_guest` is guest-sdk/python/tenantry_guest.py (ids, refusals, config, log).
"""

from tenantry_guest import OrgResolver, OrgTarget, config, db_name, log, not_found, target, validate_org_id


class Resolver(OrgResolver):
    def resolve(self, org_id: str) -> OrgTarget:
        # Refuse ids the host would refuse, with the host's own message.
        validate_org_id(org_id)
        if org_id == "retired":
            raise not_found()
        # Config values come from the plugin's [config] table (needs grants = ["config"]).
        host = config.require("db-host")
        log.debug(f"resolving {org_id} on {host}")  # shown when `log` is granted
        return target(f"postgresql://{host}/{db_name(org_id)}",  # acme-corp -> acme_corp
                      labels={"placement": "shared"})
