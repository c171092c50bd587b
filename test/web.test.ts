// The web page end to end in a real headless Chromium (Debian's, driven by playwright-core)
// against a real server and store: send a message, watch the answer stream in, rate it,
// correct it, compare two answers side by side and pick one — and find each judgement
// stored where training reads it; watch a fine-tuning job train in the Jobs tab's charts and
// promote its version; on a server with API keys, the key field gets the page in.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createReadStream, existsSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import type { FeedbackBody } from "../server/http/schemas/store-responses.js";
import type { ModelBody } from "../server/http/schemas/responses.js";
import { createServer } from "../server/server.js";
import { testModelDir } from "./api-helpers.js";
import { nameChangeData } from "./sft-helpers.js";
import { serveWithStore, type StoreServing } from "./store-helpers.js";

const CHROMIUM = process.env.HYBRIDCHAT_CHROMIUM ?? "/usr/bin/chromium";
// CI installs Debian's chromium (.ci/run); elsewhere say plainly why this is skipped
const skip = !existsSync(CHROMIUM) && !process.env.CI ? `no browser at ${CHROMIUM}: apt-get install chromium (or set HYBRIDCHAT_CHROMIUM)` : false;

let s: StoreServing;
let browser: Browser;
let page: Page;

async function stored(): Promise<FeedbackBody[]> {
  const res = await fetch(`${s.baseUrl}/v1/feedback?limit=100`);
  return ((await res.json()) as { data: FeedbackBody[] }).data;
}

describe("web page", { skip }, () => {
  before(async () => {
    s = await serveWithStore();
    // the job's data, made with the model before the engine serves anything on it
    await nameChangeData(s.model, join(s.dir, "names.jsonl"), 4);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
    page = await browser.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${s.baseUrl}/`);
    await page.waitForSelector("body[data-ready=true]");
    assert.deepEqual(errors, []);
  });
  after(async () => {
    await browser?.close();
    await s?.close();
  });

  test("chat: the answer streams in; thumbs up and a correction are stored", async () => {
    assert.equal(await page.locator("#model").inputValue(), "stories260K");
    await page.fill("#input", "Once upon a time");
    await page.press("#input", "Enter");
    const answer = page.locator(".turn.assistant").first();
    await answer.getByRole("button", { name: "good answer" }).waitFor(); // shown once the stream ended
    const text = (await answer.innerText()).split("\n")[0]!;
    assert.ok(text.length > 10, `an answer was streamed: ${JSON.stringify(text)}`);
    await answer.getByRole("button", { name: "good answer" }).click();
    await page.getByText("Thanks: marked as good.").waitFor();
    await answer.getByRole("button", { name: "write a better answer" }).click();
    await answer.getByLabel("better answer", { exact: true }).fill("Once upon a time, a dragon learned to bake bread.");
    await answer.getByRole("button", { name: "save the better answer" }).click();
    await page.getByText("Thanks: the correction is saved").waitFor();

    const fb = await stored();
    const rating = fb.find((f) => f.type === "rating");
    const correction = fb.find((f) => f.type === "correction");
    assert.ok(rating?.type === "rating" && rating.rating === 1);
    assert.ok(correction?.type === "correction" && correction.correction.includes("dragon"));
    assert.equal(correction.completion_id, rating.completion_id, "both judge the answer on the page");
    const done = await fetch(`${s.baseUrl}/v1/chat/completions/${rating.completion_id}`).then((r) => r.json() as Promise<{ choices: { message: { content: string } }[] }>);
    assert.ok(done.choices[0]!.message.content.startsWith(text.slice(0, 20)), "the stored completion is what the page showed");
  });

  test("without an emoji font: the rating buttons draw SVG icons (screenshot), carry names, and the page holds no emoji", async () => {
    await page.fill("#input", "Tom had a dog");
    await page.press("#input", "Enter");
    const answer = page.locator(".turn.assistant").last();
    const up = answer.getByRole("button", { name: "good answer" });
    await up.waitFor();
    const down = answer.getByRole("button", { name: "bad answer" });
    const fix = answer.getByRole("button", { name: "write a better answer" });
    // the screenshot a person can look at (Debian's chromium here has no emoji font)
    const shot = await answer.locator(".tools").screenshot({ path: process.env.HYBRIDCHAT_SCREENSHOT ?? join(s.dir, "rating-buttons.png") });
    assert.ok(shot.length > 0);
    const icons = await Promise.all([up, down, fix].map((b) => b.locator("svg").screenshot()));
    // decoded by the browser itself: the share of dark pixels in each icon's box
    const ink = (png: Buffer) =>
      page.evaluate(`(async () => {
        const img = new Image();
        img.src = "data:image/png;base64,${png.toString("base64")}";
        await img.decode();
        const c = document.createElement("canvas");
        c.width = img.width; c.height = img.height;
        const g = c.getContext("2d");
        g.drawImage(img, 0, 0);
        const d = g.getImageData(0, 0, c.width, c.height).data;
        let dark = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] < 384) dark++;
        return dark / (d.length / 4);
      })()`) as Promise<number>;
    for (const [i, png] of icons.entries()) {
      const share = await ink(png);
      assert.ok(share > 0.04 && share < 0.9, `icon ${i} is drawn: ${share} of its pixels are dark`);
    }
    // an empty box (.notdef) would look the same for both; the thumbs differ (one is the other turned over)
    assert.notDeepEqual(icons[0], icons[1]);
    assert.deepEqual(await Promise.all([up, down, fix].map((b) => b.innerText())), ["good", "bad", "correct"]);
    const text = (await page.evaluate("document.body.innerText")) as string;
    assert.doesNotMatch(text, /\p{Extended_Pictographic}/u, "no glyph on the page needs an emoji font");
  });

  test("side by side: two answers, the person picks the second, the preference is stored", async () => {
    await page.click("#reset");
    await page.check("#compare");
    await page.fill("#input", "Tom had a dog");
    await page.press("#input", "Enter");
    const second = page.getByRole("button", { name: "answer 2 is better" });
    await second.waitFor();
    const texts = await page.locator(".pair .turn.assistant").allInnerTexts();
    assert.equal(texts.length, 2);
    await second.click();
    await page.getByText("Thanks: answer 2 is preferred.").waitFor();
    assert.equal(await page.locator(".pair .chosen").count(), 1);
    const pref = (await stored()).find((f) => f.type === "preference");
    assert.ok(pref?.type === "preference" && pref.chosen_index === 1 && pref.rejected_index === 0, JSON.stringify(pref));
  });

  test("a message too long for the model's context: the page says to start a new chat", async () => {
    await page.click("#reset");
    await page.uncheck("#compare");
    await page.fill("#input", "Once upon a time there was a little dog. ".repeat(40));
    await page.press("#input", "Enter");
    await page.getByText(/maximum context length is 512 tokens.*Press “new chat” to start over\./).waitFor();
    await page.click("#reset");
  });

  test("jobs: a job's loss chart fills from the events WebSocket; promote and roll back from the page", { timeout: 120_000 }, async () => {
    const file = await s.client.files.create({ file: createReadStream(join(s.dir, "names.jsonl")), purpose: "fine-tune" });
    const job = await s.client.fineTuning.jobs.create({
      model: "stories260K",
      training_file: file.id,
      suffix: "web",
      method: { type: "supervised", supervised: { hyperparameters: { n_epochs: 1, batch_size: 1 } } },
    });
    await page.getByRole("tab", { name: "Jobs" }).click();
    const row = page.locator(`tr[data-job="${job.id}"]`);
    await row.waitFor();
    // no job chosen yet: no "Job —:" heading
    assert.equal(await page.locator("#job-heading").isVisible(), false);
    assert.doesNotMatch(await page.locator("#jobs-view").innerText(), /Job\s*—/);
    assert.match(await row.innerText(), /supervised\s+stories260K/);
    await page.getByRole("button", { name: `watch ${job.id}` }).click();
    await page.locator('#job-state[data-status="succeeded"]').waitFor({ timeout: 90_000 });
    assert.match(await page.locator("#job-heading").innerText(), new RegExp(`^Job ${job.id}: succeeded`));
    const chart = page.locator('.chart[data-series="loss"]');
    const count = Number(await chart.getAttribute("data-count"));
    assert.ok(count >= 4, `one point per step: ${count}`);
    assert.equal((await chart.locator("polyline").getAttribute("points"))!.split(" ").length, count);

    const ft = (await s.client.fineTuning.jobs.retrieve(job.id)).fine_tuned_model!;
    const serves = async (): Promise<string | undefined> =>
      ((await (await fetch(`${s.baseUrl}/v1/models`)).json()) as { data: ModelBody[] }).data.find((m) => m.id === "stories260K")!.serves;
    await page.getByRole("button", { name: `promote ${ft}` }).click();
    await page.getByText(`stories260K now serves ${ft}.`).waitFor();
    assert.equal(await serves(), ft);
    await page.getByRole("button", { name: "roll back to stories260K" }).click();
    await page.getByText("stories260K now serves stories260K.").waitFor();
    assert.equal(await serves(), "stories260K");
  });
});

describe("web page: from feedback to a promoted version", { skip }, () => {
  test("Train on the preferences given on the page: a DPO job's loss, reward and KL charts fill; its version is promoted", { timeout: 180_000 }, async () => {
    const b = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
    const fresh = await serveWithStore();
    try {
      const p = await b.newPage();
      await p.goto(`${fresh.baseUrl}/`);
      await p.waitForSelector("body[data-ready=true]");
      // a person compares two answers twice and picks one each time
      await p.check("#compare");
      for (const [prompt, pick] of [["Tom had a dog", "answer 2 is better"], ["Lily saw a bird", "answer 1 is better"]] as const) {
        await p.fill("#input", prompt);
        await p.press("#input", "Enter");
        await p.getByRole("button", { name: pick }).last().click();
        await p.getByText(`Thanks: ${pick.replace(" is better", "")} is preferred.`).last().waitFor();
      }
      await p.getByRole("tab", { name: "Jobs" }).click();
      await p.getByText("No jobs yet").waitFor();
      await p.getByLabel("what to train on").selectOption("dpo");
      await p.getByRole("button", { name: "Train", exact: true }).click();
      await p.locator("#job-title", { hasText: /^ftjob-/ }).waitFor();
      const id = await p.locator("#job-title").innerText();
      const job = await fresh.client.fineTuning.jobs.retrieve(id);
      assert.equal(job.training_file, "feedback");
      assert.equal(job.method?.type, "dpo");
      await p.locator(`tr[data-job="${id}"]`).waitFor();
      await p.locator('#job-state[data-status="succeeded"]').waitFor({ timeout: 150_000 });
      const steps = Number(await p.locator('.chart[data-series="loss"]').getAttribute("data-count"));
      assert.ok(steps >= 1, `loss points: ${steps}`);
      for (const series of ["reward", "KL"])
        assert.equal(Number(await p.locator(`.chart[data-series="${series}"]`).getAttribute("data-count")), steps, `a ${series} point per step`);

      const ft = (await fresh.client.fineTuning.jobs.retrieve(id)).fine_tuned_model!;
      // back in the chat, the new version is offered side by side against the base
      await p.getByRole("tab", { name: "Chat" }).click();
      await p.click("#reset"); // a new chat: the old one fills most of the model's 512 positions
      await p.locator("#model-b option", { hasText: ft }).waitFor({ state: "attached" });
      await p.getByLabel("second model").selectOption(ft);
      await p.fill("#input", "Once upon a time");
      await p.press("#input", "Enter");
      await p.getByRole("button", { name: "answer 2 is better" }).last().click();
      await p.getByText("Thanks: answer 2 is preferred.").waitFor();
      const prefs = (await (await fetch(`${fresh.baseUrl}/v1/feedback?type=preference&order=desc&limit=1`)).json()) as { data: FeedbackBody[] };
      const pref = prefs.data[0]!;
      assert.ok(pref.type === "preference" && pref.chosen_id !== pref.rejected_id, JSON.stringify(pref));
      const modelOf = async (cid: string): Promise<string> => ((await (await fetch(`${fresh.baseUrl}/v1/chat/completions/${cid}`)).json()) as { model: string }).model;
      assert.deepEqual([await modelOf(pref.chosen_id!), await modelOf(pref.rejected_id!)], [ft, "stories260K"]);

      await p.getByRole("tab", { name: "Jobs" }).click();
      await p.getByRole("button", { name: `promote ${ft}` }).click();
      await p.getByText(`stories260K now serves ${ft}.`).waitFor();
      const models = (await (await fetch(`${fresh.baseUrl}/v1/models`)).json()) as { data: ModelBody[] };
      assert.equal(models.data.find((m) => m.id === "stories260K")!.serves, ft);
    } finally {
      await b.close();
      await fresh.close();
    }
  });
});

describe("web page with API keys", { skip }, () => {
  test("without a key the page says to enter one; with the key typed in, it chats", { timeout: 60_000 }, async () => {
    const keyed = createServer({ model: testModelDir, store: false, threads: 2, apiKeys: [{ key: "page-key-123456", role: "user" }] });
    const url = await keyed.listen({ port: 0 });
    await keyed.ready;
    const b = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
    try {
      const p = await b.newPage();
      await p.goto(`${url}/`);
      await p.waitForSelector("body[data-ready=true]");
      await p.getByText("Enter an API key at the top of the page.").waitFor();
      await p.getByLabel("API key").fill("page-key-123456");
      await p.getByLabel("API key").press("Enter");
      await p.locator("#model option", { hasText: "stories260K" }).waitFor({ state: "attached" });
      assert.equal(await p.evaluate(`localStorage.getItem("hybridchat.apiKey")`), "page-key-123456", "the key is remembered");
      await p.fill("#input", "Once upon a time");
      await p.press("#input", "Enter");
      await p.locator(".turn.assistant").getByRole("button", { name: "good answer" }).waitFor();
      assert.ok((await p.locator(".turn.assistant").innerText()).length > 10);
    } finally {
      await b.close();
      await keyed.close(0);
    }
  });

  test("Review: an admin sees the users' pending free-text preferences and approves or rejects them; a user key may not", { timeout: 60_000 }, async () => {
    const USER = "review-page-user-1";
    const ADMIN = "review-page-admin-1";
    const keyed = createServer({ model: testModelDir, threads: 2, apiKeys: [{ key: USER, role: "user" }, { key: ADMIN, role: "admin" }] });
    const url = await keyed.listen({ port: 0 });
    await keyed.ready;
    const send = async (chosen: string) => {
      const r = await fetch(`${url}/v1/feedback`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${USER}` },
        body: JSON.stringify({ prompt: "Tell me a story", chosen, rejected: "No." }),
      });
      return ((await r.json()) as FeedbackBody).id;
    };
    // the second one's text would run script if the page ever set it as HTML
    const keep = await send("A fox found a red ball.");
    const drop = await send('<img src=x onerror="document.body.dataset.pwned=1">');
    const b = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
    try {
      const p = await b.newPage();
      await p.goto(`${url}/`);
      await p.waitForSelector("body[data-ready=true]");
      // a user key: sees its own pending items, and is told it needs an admin key to decide
      await p.getByLabel("API key").fill(USER);
      await p.getByLabel("API key").press("Enter");
      await p.getByRole("tab", { name: "Review" }).click();
      await p.locator(`[data-feedback="${keep}"]`).waitFor();
      await p.getByRole("button", { name: `approve ${keep}` }).click();
      await p.getByText("Ask for an admin key.").waitFor();
      assert.equal(keyed.store!.feedback.get(keep)!.status, "pending");

      await p.getByLabel("API key").fill(ADMIN);
      await p.getByLabel("API key").press("Enter");
      await p.getByRole("button", { name: "refresh" }).last().click();
      const items = p.locator(".review-item");
      await p.locator(`[data-feedback="${drop}"]`).waitFor();
      assert.equal(await items.count(), 2);
      assert.match(await p.locator(`[data-feedback="${keep}"]`).innerText(), /user: Tell me a story[\s\S]*chosen: A fox found a red ball\.[\s\S]*rejected: No\./);
      assert.ok((await p.locator(`[data-feedback="${drop}"]`).innerText()).includes("<img src=x"), "shown as text");
      await p.getByRole("button", { name: `approve ${keep}` }).click();
      await p.getByText(`${keep} approved.`).waitFor();
      await p.getByRole("button", { name: `reject ${drop}` }).click();
      await p.getByText(`${drop} rejected.`).waitFor();
      await p.getByText("Nothing waits for review.").waitFor();
      assert.equal(keyed.store!.feedback.get(keep)!.status, "approved");
      assert.equal(keyed.store!.feedback.get(drop)!.status, "rejected");
      assert.equal(await p.evaluate("document.body.dataset.pwned"), undefined);
    } finally {
      await b.close();
      await keyed.close(0);
    }
  });
});
