// Where the tests find the real pretrained model: ../shared/models/stories260K beside the
// repository, or HYBRIDCHAT_TEST_MODEL. Missing, it is an error: a skipped real-model test
// would let CI pass without checking the model at all.
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** the repository root (this file runs from dist/test/) */
export const repoRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)));

export const storiesDir = resolve(repoRoot, process.env.HYBRIDCHAT_TEST_MODEL ?? join("..", "shared", "models", "stories260K"));

if (!existsSync(join(storiesDir, "config.json"))) {
  throw new Error(`test model not found at ${storiesDir}: set HYBRIDCHAT_TEST_MODEL to the stories260K directory`);
}
