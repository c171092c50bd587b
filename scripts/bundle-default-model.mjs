// npm's prepack step: copies the pretrained default model (TinyStories 260K, MIT) into the
// package's models/stories260K, with its licence and a note of where it came from, so the
// packed tarball ships it and `hybridchat serve` without --model talks at once. The folder is
// gitignored (the model is data and never enters the git history) but not npmignored.
// Source: $HYBRIDCHAT_DEFAULT_MODEL, else ../shared/models/stories260K beside the checkout.
// Usage: node scripts/bundle-default-model.mjs [PACKAGE_ROOT]   (default: this checkout)
import { copyFileSync, existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const checkout = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const root = resolve(process.argv[2] ?? checkout);
const source = resolve(process.env.HYBRIDCHAT_DEFAULT_MODEL || join(checkout, "..", "shared", "models", "stories260K"));
const FILES = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md"];
const missing = FILES.filter((f) => !existsSync(join(source, f)));
if (missing.length > 0) {
  console.error(`bundle-default-model: ${source} lacks ${missing.join(", ")}; set HYBRIDCHAT_DEFAULT_MODEL to the stories260K checkpoint directory`);
  process.exit(1);
}
const out = join(root, "models", "stories260K");
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
for (const f of FILES) copyFileSync(join(source, f), join(out, f));
writeFileSync(
  join(out, "LICENSE"),
  `MIT License

Copyright (c) 2023 Andrej Karpathy

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
`,
);
writeFileSync(
  join(out, "SOURCE.md"),
  `# Where this model comes from

The stories260K checkpoint of karpathy/tinyllamas (a 260K-parameter Llama 2 architecture model
trained on the TinyStories data set, with llama2.c; MIT licence, see LICENSE), converted to a
Hugging Face checkpoint directory (see README.md). hybridchat serves it when no --model is given.
It is copied here by scripts/bundle-default-model.mjs when the package is packed; it is not part
of hybridchat's source history.
`,
);
console.error(`bundle-default-model: ${source} -> ${out}`);
