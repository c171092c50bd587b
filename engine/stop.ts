// Stop strings over streamed text. Text arrives in pieces (one detokenized token at a
// time); a stop string may straddle any number of pieces. Text that could still be the
// start of a stop string is held back until the next pieces settle it, so neither the
// stop string nor any prefix of it is ever emitted.
//
// Semantics: generation stops as soon as any stop string is complete in the text; the
// output is cut where the earliest complete match begins. (With stops "abcd" and "bc",
// text "abc" stops at "a": "bc" was produced first.)

export interface StopResult {
  /** text safe to emit now */
  text: string;
  /** a stop string matched; nothing more may be emitted */
  stopped: boolean;
}

export class StopMatcher {
  private readonly stops: string[];
  private held = "";
  private done = false;

  constructor(stops: readonly string[]) {
    this.stops = stops.filter((s) => s.length > 0);
  }

  get stopped(): boolean {
    return this.done;
  }

  push(piece: string): StopResult {
    if (this.done) return { text: "", stopped: true };
    if (this.stops.length === 0) return { text: piece, stopped: false };
    const buf = this.held + piece;
    // `held` holds no complete stop string, so only matches ending in `piece` are new;
    // searching the short buffer whole keeps it simple.
    let cut = -1;
    for (const s of this.stops) {
      const at = buf.indexOf(s);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.done = true;
      this.held = "";
      return { text: buf.slice(0, cut), stopped: true };
    }
    let keep = this.partialSuffix(buf);
    // never split a surrogate pair between what is emitted and what is held
    const split = buf.length - keep;
    if (keep > 0 && split > 0 && isLowSurrogate(buf.charCodeAt(split))) keep++;
    this.held = buf.slice(buf.length - keep);
    return { text: buf.slice(0, buf.length - keep), stopped: false };
  }

  /** end of generation without a stop: whatever was held back is ordinary text */
  flush(): string {
    if (this.done) return "";
    const out = this.held;
    this.held = "";
    return out;
  }

  /** length of the longest suffix of buf that is a proper prefix of some stop string */
  private partialSuffix(buf: string): number {
    let best = 0;
    for (const s of this.stops) {
      const max = Math.min(s.length - 1, buf.length);
      for (let len = max; len > best; len--) {
        if (buf.endsWith(s.slice(0, len))) {
          best = len;
          break;
        }
      }
    }
    return best;
  }
}

function isLowSurrogate(c: number): boolean {
  return c >= 0xdc00 && c <= 0xdfff;
}
