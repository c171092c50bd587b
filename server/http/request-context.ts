// What every completion route does first: find the served model (or say why not) and
// tie the engine work to the client's connection.
import type { FastifyReply } from "fastify";
import { errors } from "./errors.js";
import type { Serving, ServedVariant, ServingSlot } from "../serving/serving.js";
import type { FeedbackSource } from "../store/feedback.js";
import type { Store } from "../store/store.js";

/** Options each route plugin is registered with. */
export interface RouteOptions {
  slot: ServingSlot;
  /** where completions and feedback are kept; null: not kept (--no-store) */
  store: Store | null;
  /** the feedback sources the training export takes (--rlhf-sources) */
  trainingSources: readonly FeedbackSource[];
}

/** The store, or 404 store_disabled for a server started with --no-store. */
export function requireStore(store: Store | null): Store {
  if (store === null) throw errors.storeDisabled();
  return store;
}

/** The ready serving state, or 503 (loading/failed). */
export function readyServing(slot: ServingSlot): Serving {
  const state = slot.state;
  if (state.status === "loading") throw errors.modelLoading();
  if (state.status === "failed") throw errors.modelFailed(state.message);
  return state.serving;
}

/** The served variant named by the request's `model`, or 503 (loading/failed) / 404 (unknown id). */
export function requireServing(slot: ServingSlot, model: string): { serving: Serving; variant: ServedVariant } {
  const serving = readyServing(slot);
  const variant = serving.variants.get(model);
  if (!variant) throw errors.modelNotFound(model, [...serving.variants.keys()]);
  return { serving, variant };
}

/**
 * Aborts when the client goes away before the response was fully written, so the
 * engine cancels its requests and frees their KV cache at once.
 */
export function clientGone(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  const res = reply.raw;
  const onClose = () => {
    if (!res.writableFinished) controller.abort(new Error("client disconnected"));
  };
  res.once("close", onClose);
  return controller.signal;
}
