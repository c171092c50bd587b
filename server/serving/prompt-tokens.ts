// Long prompts are tokenized on a worker thread before the route runs (server/http/
// prompt-guard.ts), and the route's synchronous encodeChat/encodePrompt then find the ids
// here instead of tokenizing on the event loop. Entries are keyed by the exact text the
// tokenizer would see, so a route that renders something else simply misses and
// tokenizes itself (still bounded by the character check).

/**
 * A prompt of more than maxContext × maxTokenChars × NORMALIZER_SLACK characters cannot fit:
 * every token covers at most maxTokenChars characters of the normalized text, and the
 * slack leaves room for normalizers that shorten text (NFC/NFKC composition, stripping).
 * Refusing by this bound costs one pass over the characters and no tokenization.
 */
export const NORMALIZER_SLACK = 4;

/** Below this many characters a prompt is tokenized in place (well under a millisecond's work). */
export const SYNC_TOKENIZE_CHARS = 2048;

/** Entries left behind by a request that never released them go after this long. */
const STALE_MS = 60_000;

type Kind = "chat" | "prompt";

export class PretokenizedPrompts {
  readonly #entries = new Map<string, { ids: number[]; holders: number; at: number }>();

  /** the ids a worker computed for this text, if a request holds them */
  get(kind: Kind, text: string): number[] | undefined {
    return this.#entries.get(kind + "\0" + text)?.ids;
  }

  /** keeps `ids` for `text` until the returned release is called (once) */
  hold(kind: Kind, text: string, ids: number[]): () => void {
    const key = kind + "\0" + text;
    const now = Date.now();
    for (const [k, e] of this.#entries) if (now - e.at > STALE_MS) this.#entries.delete(k);
    const e = this.#entries.get(key);
    if (e) {
      e.holders++;
      e.at = now;
    } else this.#entries.set(key, { ids, holders: 1, at: now });
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const cur = this.#entries.get(key);
      if (cur && --cur.holders <= 0) this.#entries.delete(key);
    };
  }

  get size(): number {
    return this.#entries.size;
  }
}
