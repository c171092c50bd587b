// At start-up: the versions earlier jobs published are loaded onto the model again (from
// their PEFT directories) so they are served under the same ids.
import type { LoadedModel } from "../../engine/model.js";
import { loadPeftAdapter } from "../../engine/peft.js";
import type { AdapterVariant } from "../serving/served-model.js";
import type { Store } from "../store/store.js";

/**
 * Loads every stored version of base `base`; one that cannot be loaded (its directory was
 * removed) is reported through `warn` and skipped, so it never stops the server.
 */
export async function restoreVersions(store: Store, model: LoadedModel, base: string, warn: (msg: string) => void): Promise<AdapterVariant[]> {
  const out: AdapterVariant[] = [];
  for (const v of store.versions.all()) {
    if (v.base !== base) continue;
    try {
      await loadPeftAdapter(model.native, model.config, v.id, v.dir);
      out.push({ id: v.id, dir: v.dir, created: v.createdAt });
    } catch (e) {
      warn(`model version ${v.id} is not served: ${(e as Error).message}`);
    }
  }
  return out;
}
