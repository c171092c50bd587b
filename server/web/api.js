// What every part of the page uses to reach the server: the API key the person typed
// (kept in localStorage), JSON calls with it as a Bearer token, and the WebSocket
// subprotocols that carry it (browsers cannot set headers on a WebSocket).

const KEY_STORE = "hybridchat.apiKey";

export function apiKey() {
  return localStorage.getItem(KEY_STORE) ?? "";
}

export function setApiKey(/** @type {string} */ key) {
  if (key) localStorage.setItem(KEY_STORE, key);
  else localStorage.removeItem(KEY_STORE);
}

/** Headers for a call: JSON, plus the key when there is one. */
export function headers(/** @type {Record<string, string>} */ extra = {}) {
  const key = apiKey();
  return key ? { ...extra, authorization: `Bearer ${key}` } : extra;
}

/** The server's error message, with what to do about a missing or refused key. */
export function errorText(/** @type {Response} */ res, /** @type {any} */ json) {
  const msg = json?.error?.message ?? `HTTP ${res.status}`;
  if (res.status === 401) return `${msg} Enter an API key at the top of the page.`;
  if (res.status === 403) return `${msg} Ask for an admin key.`;
  // the whole conversation is sent each turn: a small model's context fills after a few
  if (json?.error?.code === "context_length_exceeded") return `${msg} Press “new chat” to start over.`;
  return msg;
}

/** GET or POST JSON; throws with the server's message. */
export async function call(/** @type {string} */ path, /** @type {unknown} */ body = undefined) {
  const res = await fetch(path, body === undefined ? { headers: headers() } : { method: "POST", headers: headers({ "content-type": "application/json" }), body: JSON.stringify(body) });
  const json = await res.json().catch(() => null);
  if (!res.ok) throw new Error(errorText(res, json));
  return json;
}

/** A WebSocket to `path` on this server, the key sent as a subprotocol (server/http/auth.ts). */
export function socket(/** @type {string} */ path) {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
  const key = apiKey();
  return new WebSocket(url, key ? ["hybridchat", `hybridchat.key.${key}`] : ["hybridchat"]);
}
