// A misbehaving org resolver in JavaScript (QuickJS), for tests/conformance.rs: each org id
// triggers one misdeed that the sandbox must contain. Built by scripts/build-plugins.sh into
// target/plugins/test-js-hostile.wasm; never bundled.
import { config, orgResolver } from "tenantry-guest";

let hoard = [];

export const resolver = orgResolver((orgId) => {
  switch (orgId) {
    case "loop":
      for (;;) { /* spin until fuel or the deadline stops us */ }
    case "bomb":
      for (;;) hoard.push(new ArrayBuffer(4 << 20));
    case "throw":
      throw new Error("boom: the hostile plugin throws on purpose");
    case "recurse": {
      const down = (n) => down(n + 1) + 1;
      return { url: `postgres://db/${down(0)}` };
    }
    case "config":
      return { url: `postgres://db/${config.get("suffix")}` };
    case "huge":
      return { url: `postgres://db/${"x".repeat(100000)}` };
    case "wrong-scheme":
      return { url: "http://db/acme" };
    case "missing":
      throw { tag: "not-found" };
    default:
      return { url: `postgres://db/${orgId}`, labels: { hoard: String(hoard.length) } };
  }
});
