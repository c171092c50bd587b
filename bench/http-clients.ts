// The HTTP comparison's load: `clients` closed-loop clients, each sending `requestsPerClient`
// chat completions one after another, every one asking for exactly `maxTokens` generated
// tokens (max_tokens with ignore_eos, which both hybridchat and llama-server take). Each
// response's usage.completion_tokens is the count; a round in which any answer held a different
// count is refused, so the two servers are always compared on the same number of tokens.

export interface LoadSpec {
  /** the server's base URL, without /v1 */
  url: string;
  /** the "model" field sent (llama-server ignores it) */
  model: string;
  clients: number;
  requestsPerClient: number;
  maxTokens: number;
  prompt: string;
}

export interface LoadRound {
  /** seconds from the first request sent to the last answer read */
  wallS: number;
  requests: number;
  /** usage.completion_tokens summed over the round's answers */
  completionTokens: number;
  /** usage.prompt_tokens of one request (the chat template makes it differ between servers) */
  promptTokens: number;
  /** each request's time from send to the whole answer read, ms */
  latenciesMs: number[];
}

interface ChatAnswer {
  usage?: { prompt_tokens?: number; completion_tokens?: number };
  error?: { message?: string };
}

async function oneRequest(s: LoadSpec): Promise<{ ms: number; prompt: number; completion: number }> {
  const t0 = performance.now();
  const res = await fetch(`${s.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: s.model,
      messages: [{ role: "user", content: s.prompt }],
      max_tokens: s.maxTokens,
      ignore_eos: true,
      temperature: 0.8,
    }),
  });
  const body = (await res.json()) as ChatAnswer;
  const ms = performance.now() - t0;
  if (res.status !== 200) throw new Error(`${s.url}: HTTP ${res.status}: ${body.error?.message ?? JSON.stringify(body)}`);
  const completion = body.usage?.completion_tokens;
  if (completion !== s.maxTokens)
    throw new Error(`${s.url}: asked for exactly ${s.maxTokens} tokens (max_tokens + ignore_eos), usage.completion_tokens says ${completion}`);
  return { ms, prompt: body.usage?.prompt_tokens ?? NaN, completion };
}

/** The id the server answers to (GET /v1/models' first), which is what `model` must say. */
export async function servedModel(url: string): Promise<string> {
  const res = await fetch(`${url}/v1/models`);
  const body = (await res.json()) as { data?: { id?: string }[] };
  const id = body.data?.[0]?.id;
  if (res.status !== 200 || !id) throw new Error(`${url}/v1/models: HTTP ${res.status}, no model id: ${JSON.stringify(body)}`);
  return id;
}

/** One round of the load; rejects on the first failed or short answer. */
export async function runLoad(s: LoadSpec): Promise<LoadRound> {
  const latenciesMs: number[] = [];
  let completionTokens = 0;
  let promptTokens = NaN;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: s.clients }, async () => {
      for (let i = 0; i < s.requestsPerClient; i++) {
        const r = await oneRequest(s);
        latenciesMs.push(r.ms);
        completionTokens += r.completion;
        promptTokens = r.prompt;
      }
    }),
  );
  return { wallS: (performance.now() - t0) / 1000, requests: latenciesMs.length, completionTokens, promptTokens, latenciesMs };
}
