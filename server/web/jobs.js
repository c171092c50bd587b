// The Jobs tab: the fine-tuning jobs (status, method, model, created), a button that trains
// on the feedback given on the page, one job's live loss / reward / KL charts from its events
// WebSocket, and the served versions with a button to promote one (or roll back to the base
// weights). Admin routes: a user key sees a 403.
import { call, socket } from "./api.js";
import { LineChart } from "./chart.js";

/** Which step metrics are charted: the first key of an event's data matching each. */
const SERIES = [
  { title: "loss", match: /^(train_)?loss$/ },
  { title: "reward", match: /^reward/ },
  { title: "KL", match: /^kl/ },
];

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const say = (/** @type {string} */ text) => ($("jobs-status").textContent = text);
const when = (/** @type {number} */ s) => new Date(s * 1000).toLocaleString();

/** @type {WebSocket | null} */
let watching = null;
/** the base model id, once /v1/models was read: what a job from the page trains */
let baseModel = "";

/**
 * A job on the feedback collected so far (training_file "feedback"), on the base model,
 * watched at once: DPO on the preferences, or supervised on corrections and answers rated good.
 */
export async function trainOnFeedback(/** @type {"dpo" | "supervised"} */ method) {
  try {
    if (!baseModel) await refreshVersions();
    const job = await call("/v1/fine_tuning/jobs", { model: baseModel, training_file: "feedback", suffix: "web", method: { type: method } });
    await refreshJobs();
    watch(job.id);
    say(`Started ${job.id}: ${method === "dpo" ? "DPO on the preferences" : "supervised on the corrections and the answers rated good"} given so far.`);
  } catch (e) {
    say(`Could not start a job: ${/** @type {Error} */ (e).message}`);
  }
}

export async function refreshJobs() {
  try {
    const page = await call("/v1/fine_tuning/jobs?limit=50");
    const rows = page.data.map((/** @type {any} */ j) => {
      const tr = document.createElement("tr");
      tr.dataset.job = j.id;
      for (const text of [j.id, j.status, j.method?.type ?? "supervised", j.model, when(j.created_at), j.fine_tuned_model ?? ""]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.append(td);
      }
      const td = document.createElement("td");
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = "watch";
      b.setAttribute("aria-label", `watch ${j.id}`);
      b.onclick = () => watch(j.id);
      td.append(b);
      tr.append(td);
      return tr;
    });
    $("jobs-body").replaceChildren(...rows);
    $("jobs-empty").hidden = rows.length > 0;
    await refreshVersions();
    say("");
  } catch (e) {
    say(`Could not list jobs: ${/** @type {Error} */ (e).message}`);
  }
}

/** Replays the job's events into fresh charts, then follows it live until it is final. */
function watch(/** @type {string} */ id) {
  watching?.close();
  const charts = new Map();
  const box = $("charts");
  box.replaceChildren();
  $("job-title").textContent = id;
  $("job-heading").hidden = false; // no "Job —:" line before a job is chosen
  const state = $("job-state");
  state.textContent = "connecting…";
  const ws = socket(`/v1/fine_tuning/jobs/${encodeURIComponent(id)}/events/stream`);
  watching = ws;
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.error) return say(msg.error.message);
    if (msg.object === "fine_tuning.job") {
      state.textContent = msg.status;
      state.dataset.status = msg.status;
      if (msg.status === "succeeded" || msg.status === "failed" || msg.status === "cancelled") void refreshJobs();
      return;
    }
    if (msg.type !== "metrics" || !msg.data) return;
    const d = msg.data;
    for (const s of SERIES) {
      const key = Object.keys(d).find((k) => s.match.test(k));
      if (key === undefined) continue;
      if (!charts.has(s.title)) {
        const c = new LineChart(s.title);
        charts.set(s.title, c);
        box.append(c.el);
      }
      charts.get(s.title).add(d.step, d[key]);
    }
  };
  ws.onerror = () => say("The job's event stream failed (is the API key an admin key?).");
}

export async function refreshVersions() {
  const models = (await call("/v1/models")).data;
  const base = models.find((/** @type {any} */ m) => m.serves !== undefined);
  if (!base) return;
  baseModel = base.id;
  const others = models.filter((/** @type {any} */ m) => m !== base).sort((/** @type {any} */ a, /** @type {any} */ b) => a.created - b.created);
  $("serving").textContent = `${base.id} serves ${base.serves === base.id ? "its own weights" : base.serves}`;
  const items = [base, ...others].map((m) => {
    const li = document.createElement("li");
    li.dataset.version = m.id;
    const current = m.id === base.serves;
    li.append(`${m.id}${m === base ? " (base weights)" : ""} — ${when(m.created)} `);
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = m === base ? "roll back to base" : "promote";
    b.setAttribute("aria-label", `${m === base ? "roll back to" : "promote"} ${m.id}`);
    b.disabled = current;
    b.onclick = async () => {
      try {
        const r = await call(`/v1/models/${encodeURIComponent(m.id)}/promote`, {});
        await refreshVersions();
        say(`${r.id} now serves ${r.serves}.`);
      } catch (e) {
        say(`Could not promote: ${/** @type {Error} */ (e).message}`);
      }
    };
    if (current) li.classList.add("current");
    li.append(b);
    return li;
  });
  $("versions").replaceChildren(...items);
}
