// The served variants as they change at run time: a finished job publishes its version,
// promotion re-points the base id. Each change builds a new Serving and puts it in the
// slot in one assignment (the JS thread never sees half a change), and routes resolve
// `model` → variant → adapter once per request, so a request in flight finishes on the
// variant it started with.
import { adapterVariant } from "../serving/served-model.js";
import type { Serving, ServingSlot } from "../serving/serving.js";
import { readyServing } from "../http/request-context.js";

function replace(slot: ServingSlot, next: Serving): Serving {
  slot.ready(next);
  return next;
}

/** Serves adapter `id` (already on the native model, loaded from `dir`) under model id `id`. */
export function publishVersion(slot: ServingSlot, modelDir: string, v: { id: string; dir: string; created: number }): Serving {
  const s = readyServing(slot);
  if (s.variants.has(v.id)) throw new Error(`model id "${v.id}" is already served`);
  const variants = new Map(s.variants);
  variants.set(v.id, adapterVariant(s.servedModelName, modelDir, v, v.created));
  return replace(slot, { ...s, variants });
}

/**
 * Makes the base id serve version `target` (its adapter and fingerprint), or its own
 * weights again when `target` is the base id itself. `target` must be served.
 */
export function promoteVersion(slot: ServingSlot, target: string): Serving {
  const s = readyServing(slot);
  const base = s.servedModelName;
  const to = target === base ? s.baseVariant : s.variants.get(target);
  if (!to) throw new Error(`model id "${target}" is not served`);
  const variants = new Map(s.variants);
  variants.set(base, target === base ? s.baseVariant : { ...s.baseVariant, adapter: to.adapter, fingerprint: to.fingerprint });
  return replace(slot, { ...s, variants, promoted: target === base ? null : target });
}

/** Stops serving version `id` (new requests get 404; requests in flight keep their adapter). */
export function unpublishVersion(slot: ServingSlot, id: string): Serving {
  const s = readyServing(slot);
  const variants = new Map(s.variants);
  variants.delete(id);
  return replace(slot, { ...s, variants });
}
