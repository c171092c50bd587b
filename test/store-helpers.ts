// Shared by the store tests: a real SQLite store in a fresh temp dir, an app serving the
// test model with it on a real socket, and the official client pointed at it. (No tests here.)
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import type { ApiKey } from "../server/http/auth.js";
import { Store } from "../server/store/store.js";
import { serveModel, type TestServing } from "./api-helpers.js";

export const MODEL = "stories260K";

export interface StoreServing extends TestServing {
  store: Store | null;
  dir: string;
  baseUrl: string;
  client: OpenAI;
}

/** `store: false` serves without a store, as `--no-store` does. */
export async function serveWithStore(o: { store?: boolean; apiKeys?: ApiKey[] } = {}): Promise<StoreServing> {
  const dir = await mkdtemp(join(tmpdir(), "hybridchat-store-"));
  const store = o.store === false ? null : Store.open(dir);
  const s = await serveModel({ app: { store, apiKeys: o.apiKeys } });
  const baseUrl = await s.app.listen({ host: "127.0.0.1", port: 0 });
  return {
    ...s,
    store,
    dir,
    baseUrl,
    client: new OpenAI({ baseURL: `${baseUrl}/v1`, apiKey: "unused", maxRetries: 0 }),
    async close() {
      await s.close();
      store?.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface JsonResponse<T> {
  status: number;
  headers: Headers;
  /** the body as the caller expects it to be (the test checks the status first) */
  json: T;
}

/** POST with a JSON body */
export async function postJson<T>(baseUrl: string, path: string, body: unknown, headers: Record<string, string> = {}): Promise<JsonResponse<T>> {
  const res = await fetch(`${baseUrl}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
  return { status: res.status, headers: res.headers, json: (await res.json()) as T };
}

export async function getJson<T>(baseUrl: string, path: string): Promise<JsonResponse<T>> {
  const res = await fetch(`${baseUrl}${path}`);
  return { status: res.status, headers: res.headers, json: (await res.json()) as T };
}
