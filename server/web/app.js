// The chat page: streamed answers, a rating and a correction box on each, and a side-by-side
// mode that records which of two answers the person prefers; the Jobs tab is jobs.js, the
// Review tab (admins approve or reject free-text preferences) review.js. Plain
// ES modules, no build step; they speak only the public HTTP API (OpenAI chat completions,
// /v1/feedback, fine-tuning jobs, promote) with the key typed at the top (api.js).
import { apiKey, call, errorText, headers, setApiKey } from "./api.js";
import { icon } from "./icons.js";
import { refreshJobs, trainOnFeedback } from "./jobs.js";
import { refreshReview } from "./review.js";

/** @typedef {{ role: "system" | "user" | "assistant", content: string }} Message */
/** @typedef {{ id: string, index: number }} Source  the completion (and choice) an answer came from */

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const log = $("log");
const input = /** @type {HTMLTextAreaElement} */ ($("input"));
const modelSel = /** @type {HTMLSelectElement} */ ($("model"));
const modelB = /** @type {HTMLSelectElement} */ ($("model-b"));
const compare = /** @type {HTMLInputElement} */ ($("compare"));
const status = $("status");

/** @type {Message[]} */
let history = [];
let busy = false;

function say(/** @type {string} */ text) {
  status.textContent = text;
}


/**
 * Streams one chat completion; calls onDelta(choiceIndex, text) as tokens arrive.
 * @returns {Promise<{ id: string, texts: string[] }>}
 */
async function stream(/** @type {string} */ model, /** @type {Message[]} */ messages, /** @type {number} */ n, /** @type {(i: number, t: string) => void} */ onDelta) {
  const res = await fetch("/v1/chat/completions", {
    method: "POST",
    headers: headers({ "content-type": "application/json" }),
    body: JSON.stringify({ model, messages, n, stream: true, max_tokens: 200, temperature: 0.8 }),
  });
  if (!res.ok || !res.body) {
    const json = await res.json().catch(() => null);
    throw new Error(errorText(res, json));
  }
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  const texts = Array.from({ length: n }, () => "");
  let id = "";
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const frame = buf.slice(0, cut).trim();
      buf = buf.slice(cut + 2);
      if (!frame.startsWith("data: ")) continue;
      const data = frame.slice(6);
      if (data === "[DONE]") return { id, texts };
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      id = chunk.id;
      for (const c of chunk.choices) {
        const d = c.delta?.content ?? "";
        if (d) {
          texts[c.index] += d;
          onDelta(c.index, texts[c.index]);
        }
      }
    }
  }
  return { id, texts };
}

function turn(/** @type {"user" | "assistant"} */ role, /** @type {string} */ text) {
  const div = document.createElement("div");
  div.className = `turn ${role}`;
  div.textContent = text;
  return div;
}

/** Rating and correction tools under one answer. */
function tools(/** @type {HTMLElement} */ box, /** @type {Source} */ src, /** @type {() => string} */ text) {
  const bar = document.createElement("div");
  bar.className = "tools";
  const rate = (/** @type {1 | -1} */ rating, /** @type {HTMLButtonElement} */ b) => async () => {
    try {
      await call("/v1/feedback", { completion_id: src.id, choice_index: src.index, rating });
      b.classList.add("done");
      say(rating > 0 ? "Thanks: marked as good." : "Thanks: marked as bad.");
    } catch (e) {
      say(`Could not save the rating: ${/** @type {Error} */ (e).message}`);
    }
  };
  const up = button("good", "good answer", icon("up"));
  const down = button("bad", "bad answer", icon("down"));
  up.onclick = rate(1, up);
  down.onclick = rate(-1, down);
  const fix = button("correct", "write a better answer", icon("pencil"));
  fix.onclick = () => {
    if (box.querySelector(".correction")) return;
    const row = document.createElement("div");
    row.className = "correction";
    const area = document.createElement("textarea");
    area.value = text();
    area.setAttribute("aria-label", "better answer");
    const save = button("save correction", "save the better answer");
    save.onclick = async () => {
      try {
        await call("/v1/feedback", { completion_id: src.id, choice_index: src.index, correction: area.value });
        row.remove();
        say("Thanks: the correction is saved and can be trained on.");
      } catch (e) {
        say(`Could not save the correction: ${/** @type {Error} */ (e).message}`);
      }
    };
    row.append(area, save);
    box.append(row);
  };
  bar.append(up, down, fix);
  box.append(bar);
}

/** A button showing `label` (after an optional icon), named `title` for assistive technology. */
function button(/** @type {string} */ label, /** @type {string} */ title, /** @type {SVGElement | null} */ glyph = null) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  if (glyph) b.prepend(glyph);
  b.title = title;
  b.setAttribute("aria-label", title);
  return b;
}

async function single(/** @type {string} */ model) {
  const box = turn("assistant", "");
  log.append(box);
  const r = await stream(model, history, 1, (_i, t) => (box.textContent = t));
  history.push({ role: "assistant", content: r.texts[0] });
  tools(box, { id: r.id, index: 0 }, () => r.texts[0]);
}

/** Two answers side by side: two samples (n = 2), or the same prompt on two models. */
async function pair(/** @type {string} */ model, /** @type {string} */ other) {
  const row = document.createElement("div");
  row.className = "pair";
  const boxes = [turn("assistant", ""), turn("assistant", "")];
  row.append(...boxes);
  log.append(row);
  /** @type {Source[]} */
  let sources;
  /** @type {string[]} */
  let texts;
  if (other) {
    const rs = await Promise.all([model, other].map((m, k) => stream(m, history, 1, (_i, t) => (boxes[k].textContent = t))));
    sources = rs.map((r) => ({ id: r.id, index: 0 }));
    texts = rs.map((r) => r.texts[0]);
  } else {
    const r = await stream(model, history, 2, (i, t) => (boxes[i].textContent = t));
    sources = [0, 1].map((index) => ({ id: r.id, index }));
    texts = r.texts;
  }
  const choose = (/** @type {number} */ k) => async () => {
    const win = sources[k], lose = sources[1 - k];
    const body = win.id === lose.id
      ? { completion_id: win.id, chosen_index: win.index, rejected_index: lose.index }
      : { chosen_id: win.id, rejected_id: lose.id };
    try {
      await call("/v1/feedback", body);
      boxes[k].classList.add("chosen");
      row.querySelectorAll(".prefer").forEach((b) => b.remove());
      history.push({ role: "assistant", content: texts[k] });
      say(`Thanks: answer ${k + 1} is preferred.`);
    } catch (e) {
      say(`Could not save the preference: ${/** @type {Error} */ (e).message}`);
    }
  };
  boxes.forEach((box, k) => {
    const b = button(`answer ${k + 1} is better`, `answer ${k + 1} is better`);
    b.className = "prefer";
    b.onclick = choose(k);
    box.append(document.createElement("br"), b);
  });
}

async function send() {
  const text = input.value.trim();
  if (!text || busy) return;
  busy = true;
  input.value = "";
  say("");
  history.push({ role: "user", content: text });
  log.append(turn("user", text));
  try {
    if (compare.checked) await pair(modelSel.value, modelB.value);
    else await single(modelSel.value);
  } catch (e) {
    history.pop();
    say(`Error: ${/** @type {Error} */ (e).message}`);
  } finally {
    busy = false;
  }
}

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  void send();
});
input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    void send();
  }
});
compare.addEventListener("change", () => ($("second-label").hidden = !compare.checked));
$("reset").addEventListener("click", () => {
  history = [];
  log.replaceChildren();
  say("");
});

/** Fills both model lists (again: a job may have published a version), keeping the choices. */
async function loadModels() {
  const [keepA, keepB] = [modelSel.value, modelB.value];
  try {
    const ids = (await call("/v1/models")).data.map((/** @type {{ id: string }} */ m) => m.id);
    modelSel.replaceChildren(...ids.map((/** @type {string} */ id) => new Option(id, id)));
    modelB.replaceChildren(new Option("another sample", ""), ...ids.map((/** @type {string} */ id) => new Option(id, id)));
    if (ids.includes(keepA)) modelSel.value = keepA;
    if (ids.includes(keepB)) modelB.value = keepB;
  } catch (e) {
    say(/** @type {Error} */ (e).message);
  }
}

const keyInput = /** @type {HTMLInputElement} */ ($("api-key"));
keyInput.value = apiKey();
keyInput.addEventListener("change", () => {
  setApiKey(keyInput.value.trim());
  say("");
  void loadModels();
});

function showTab(/** @type {"chat" | "jobs" | "review"} */ name) {
  for (const t of ["chat", "jobs", "review"]) {
    $(`tab-${t}`).setAttribute("aria-selected", String(t === name));
    $(`${t}-view`).hidden = t !== name;
  }
  if (name === "jobs") void refreshJobs();
  else if (name === "review") void refreshReview();
  else void loadModels();
}
$("tab-chat").addEventListener("click", () => showTab("chat"));
$("tab-jobs").addEventListener("click", () => showTab("jobs"));
$("tab-review").addEventListener("click", () => showTab("review"));
$("review-refresh").addEventListener("click", () => void refreshReview());
$("jobs-refresh").addEventListener("click", () => void refreshJobs());
$("train-form").addEventListener("submit", (e) => {
  e.preventDefault();
  void trainOnFeedback(/** @type {"dpo" | "supervised"} */ (/** @type {HTMLSelectElement} */ ($("train-method")).value));
});

await loadModels();
document.body.dataset.ready = "true";
