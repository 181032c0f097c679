// A Tenantry org resolver in JavaScript: every org gets its own database on one server.
//
// Copy this directory, edit, then build and check it:
//
//   cp -r guest-sdk/js/template my-resolver
//   scripts/build-plugins.sh --lang js my-resolver         # -> target/plugins/js-my-resolver.wasm
//   cargo run -q --bin tenantry -- plugin check target/plugins/js-my-resolver.wasm \
//       --set db-host=db --sample acme
//
// The entry file's name decides the world: resolver.js is an org resolver (it exports
// `resolver`), policy.js a tenant policy (it exports `policy`). Relative imports of other
// files work. "tenantry-guest" is guest-sdk/js/tenantry-guest.js (ids, refusals, config, log).
import { config, dbName, log, notFound, orgResolver, validateOrgId } from "tenantry-guest";

export const resolver = orgResolver((orgId) => {
  // Refuse ids the host would refuse, with the host's own message.
  validateOrgId(orgId);
  if (orgId === "retired") throw notFound();
  // Config values come from the plugin's [config] table (needs grants = ["config"]).
  const host = config.require("db-host");
  log.debug(`resolving ${orgId} on ${host}`); // shown when `log` is granted
  return {
    url: `postgresql://${host}/${dbName(orgId)}`, // acme-corp -> acme_corp
    labels: { placement: "shared" },
  };
});
