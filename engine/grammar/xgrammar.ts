// The xgrammar WebAssembly engine (@mlc-ai/web-xgrammar), loaded once. The package says
// "type": "module" but ships a UMD bundle that needs CommonJS globals (require, __filename)
// and a dynamic import() of "module": so it is evaluated here as a CommonJS function, typed
// by the package's own declarations.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname } from "node:path";
import type * as XGrammar from "@mlc-ai/web-xgrammar";

export type XGrammarModule = Pick<typeof XGrammar, "GrammarCompiler" | "GrammarMatcher" | "TokenizerInfo" | "Grammar" | "Testings">;
export type { StructuralTag } from "@mlc-ai/web-xgrammar";
export type { CompiledGrammar as XCompiledGrammar, GrammarMatcher as XGrammarMatcher, GrammarCompiler as XGrammarCompiler } from "@mlc-ai/web-xgrammar";

let loaded: XGrammarModule | null = null;

export function xgrammar(): XGrammarModule {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  const file = require.resolve("@mlc-ai/web-xgrammar");
  // a Function body gets the main context's import() (vm.runInThisContext needs an
  // experimental flag for that); the file is the package's own, read from node_modules
  // eslint-disable-next-line @typescript-eslint/no-implied-eval
  const wrapper = new Function("exports", "require", "module", "__filename", "__dirname", readFileSync(file, "utf8")) as (
    exports: object,
    require: NodeRequire,
    module: { exports: object },
    filename: string,
    dirname: string,
  ) => void;
  const mod = { exports: {} };
  wrapper.call(mod.exports, mod.exports, createRequire(file), mod, file, dirname(file));
  loaded = mod.exports as XGrammarModule;
  return loaded;
}
