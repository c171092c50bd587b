// Grammars for one tokenizer: xgrammar's compiler over its vocabulary, the compiled grammars
// in an LRU cache (compiled once per (tokenizer, grammar), shared by every request and
// choice using them), and a fresh matcher per generation as the engine's TokenConstraint.
import { LRUCache } from "lru-cache";
import type { TokenConstraint, Tokenizer } from "../types.js";
import { BYTE_LEVEL_CHAR } from "../tokenizer.js";
import { checkSchemaSubset } from "./schema-subset.js";
import { xgrammar, type StructuralTag, type XCompiledGrammar, type XGrammarCompiler, type XGrammarMatcher } from "./xgrammar.js";

/** What the output must be. */
export type GrammarSpec =
  /** any JSON object (response_format json_object) */
  | { kind: "json_object" }
  /** JSON valid for the schema (checked against the supported subset first) */
  | { kind: "json_schema"; schema: unknown }
  /**
   * tool calls: one JSON value valid for `schema` (one call of any allowed tool), then, when
   * `multiple`, any number of `separator` + another one; then `end`
   */
  | { kind: "json_sequence"; schema: unknown; separator: string; end: string; multiple: boolean }
  /**
   * free text in which `trigger` (a prefix of `begin`) opens `begin`, a JSON value valid for
   * `schema` and `end` (tool calls the model chooses to make); `once`: the text ends after the first
   */
  | { kind: "tagged_json"; trigger: string; begin: string; end: string; schema: unknown; once: boolean };

/** compiled grammars kept per tokenizer */
const CACHE_SIZE = 128;

/**
 * The vocabulary as xgrammar reads it: every token's raw bytes written in GPT-2's ByteLevel
 * alphabet (lossless for any byte string, whatever the tokenizer's own scheme), and "" for
 * special tokens and ids past the tokenizer's vocabulary, which xgrammar then never allows
 * except as the stop tokens.
 */
function encodedVocab(tokenizer: Tokenizer, vocabSize: number): string[] {
  const out: string[] = new Array<string>(vocabSize).fill("");
  for (let id = 0; id < Math.min(vocabSize, tokenizer.vocabSize); id++) {
    if (tokenizer.isSpecial(id)) continue;
    let s = "";
    for (const b of tokenizer.tokenBytes(id)) s += BYTE_LEVEL_CHAR[b];
    out[id] = s;
  }
  return out;
}

class GrammarConstraint implements TokenConstraint {
  #matcher: XGrammarMatcher | null;

  constructor(matcher: XGrammarMatcher) {
    this.#matcher = matcher;
  }

  nextMask(): Promise<Int32Array> {
    if (!this.#matcher) return Promise.reject(new Error("the grammar was disposed"));
    return this.#matcher.getNextTokenBitmask();
  }

  accept(tokenId: number): boolean {
    return this.#matcher !== null && this.#matcher.acceptToken(tokenId);
  }

  dispose(): void {
    this.#matcher?.dispose();
    this.#matcher = null;
  }
}

/** the root rule of a json_sequence grammar (the schema's own rules are `root`, `root_*`, `basic_*`) */
const SEQUENCE_ROOT = "hc_sequence";

/**
 * A json_sequence as EBNF: the schema's grammar as xgrammar writes it (rule `root`, the same
 * conversion compileJSONSchema runs, with the same separators), then a root rule repeating it.
 * xgrammar's JavaScript build exposes that conversion only under `Testings`; the EBNF it
 * returns is the public grammar language, so the result compiles like any grammar.
 */
async function sequenceGrammar(spec: Extract<GrammarSpec, { kind: "json_sequence" }>): Promise<string> {
  const ebnf = await xgrammar().Testings._jsonSchemaToEBNF(JSON.stringify(spec.schema), false, -1, [", ", ": "], true);
  // EBNF string literals take JSON's escapes
  const lit = (s: string): string => (s === "" ? "" : ` ${JSON.stringify(s)}`);
  const repeat = spec.multiple ? ` (${JSON.stringify(spec.separator)} root)*` : "";
  return `${ebnf}\n${SEQUENCE_ROOT} ::= root${repeat}${lit(spec.end)}\n`;
}

/** xgrammar's structural tag: any text until `begin`, then the value and `end` (again and again, or once) */
function taggedGrammar(spec: Extract<GrammarSpec, { kind: "tagged_json" }>): StructuralTag {
  return {
    type: "structural_tag",
    format: {
      type: "triggered_tags",
      triggers: [spec.trigger],
      tags: [{ type: "tag", begin: spec.begin, content: { type: "json_schema", json_schema: spec.schema as Record<string, unknown> }, end: spec.end }],
      stop_after_first: spec.once,
    },
  };
}

export class Grammars {
  readonly #compiler: Promise<XGrammarCompiler>;
  readonly #stopIds: number[];
  readonly #cache = new LRUCache<string, Promise<XCompiledGrammar>>({
    max: CACHE_SIZE,
    // matchers hold their own reference to the compiled grammar (xgrammar shares it), so an
    // evicted grammar may be released while generations still use it
    dispose: (p) => void p.then((g) => g.dispose(), () => undefined),
  });

  /** `vocabSize`: the model's logits row (may exceed the tokenizer's vocabulary) */
  constructor(tokenizer: Tokenizer, vocabSize: number) {
    const xg = xgrammar();
    this.#stopIds = [...tokenizer.eosIds];
    this.#compiler = xg.TokenizerInfo.createTokenizerInfo(encodedVocab(tokenizer, vocabSize), "byte_level", false, vocabSize, this.#stopIds).then(
      (info) => xg.GrammarCompiler.createGrammarCompiler(info, true),
    );
  }

  /** The compiled grammar for `spec` (cached). Throws UnsupportedSchemaError for keywords outside the subset. */
  compiled(spec: GrammarSpec): Promise<XCompiledGrammar> {
    if (spec.kind !== "json_object") checkSchemaSubset(spec.schema);
    const key = JSON.stringify(spec);
    let p = this.#cache.get(key);
    if (!p) {
      // one line, OpenAI's separators (indent -1: none); strict for a schema: properties it
      // does not name are not generated
      p = this.#compiler.then(async (c) => {
        if (spec.kind === "json_object") return c.compileJSONSchema(JSON.stringify({ type: "object" }), false, -1, [", ", ": "], false);
        if (spec.kind === "json_schema") return c.compileJSONSchema(JSON.stringify(spec.schema), false, -1, [", ", ": "], true);
        if (spec.kind === "tagged_json") return c.compileStructuralTag(taggedGrammar(spec));
        return c.compileGrammar(await sequenceGrammar(spec), SEQUENCE_ROOT);
      });
      p.catch(() => this.#cache.delete(key));
      this.#cache.set(key, p);
    }
    return p;
  }

  /** A fresh constraint (one generation's matcher) for `spec`. */
  async constraint(spec: GrammarSpec): Promise<TokenConstraint> {
    const compiled = await this.compiled(spec);
    return new GrammarConstraint(await xgrammar().GrammarMatcher.createGrammarMatcher(compiled, this.#stopIds));
  }
}
