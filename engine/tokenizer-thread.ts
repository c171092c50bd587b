// Tokenization off the event loop. Some tokenizers cost far more than linear time on long
// text (a SentencePiece-style BPE without a pre-tokenizer treats the whole prompt as one
// word: 1 MB took 11 s), so the server hands long prompts to one worker thread that loads
// the same tokenizer from the checkpoint directory. Requests queue in order.
import { WorkerCalls } from "./worker-calls.js";

export interface TokenizeRequest {
  text: string;
  addSpecialTokens: boolean;
}

export class TokenizerThread {
  readonly #calls: WorkerCalls<TokenizeRequest, Int32Array>;

  /** `dir`: the checkpoint directory the served tokenizer was loaded from */
  constructor(dir: string) {
    this.#calls = new WorkerCalls(new URL("./tokenizer-worker.js", import.meta.url), { dir });
  }

  /** The same ids as `loadTokenizer(dir).encode(text, addSpecialTokens)`, computed on the worker. */
  async encode(text: string, addSpecialTokens: boolean): Promise<number[]> {
    return Array.from(await this.#calls.call({ text, addSpecialTokens }));
  }

  /** Stops the worker; pending encodes reject. Idempotent. */
  close(): Promise<void> {
    return this.#calls.close();
  }
}
