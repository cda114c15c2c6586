// Callboard dashboard: polls the API every REFRESH_MS with the bearer token kept in
// localStorage, and renders queues, workers, tasks, a task's history and rebalance runs.
// Server data only ever reaches the page through textContent and DOM APIs, never as markup.

import { API, ApiError, client, describe } from "./api.js";
import { $, el, setBadge, setCount, setText, syncRows } from "./dom.js";
import { ago, clock, duration, pretty, short, stamp, taskDuration } from "./format.js";
import { taskTypes } from "./schema.js";

const TOKEN_KEY = "callboard-token"; // shared with /docs
const REFRESH_MS = 1500;
const TOAST_MS = 4000;
const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"];
const CANCELLABLE = new Set(["queued", "running"]);
const RETRYABLE = new Set(["failed", "cancelled"]);
// Example payloads for the types we know; any other type starts from its schema's minimums.
const EXAMPLES = {
  a: { text: "hello, callboard", rounds: 1000 },
  b: { duration_ms: 3000, steps: 10 },
};

const state = {
  token: localStorage.getItem(TOKEN_KEY) || "",
  types: [], // [{name, summary, fields: [{key, label, type, min, max, maxLength, ...}]}]
  deadWorkers: new Set(), // from the latest /stats: their running tasks await recovery
  selected: null, // the id of the task in the detail card
  detailKey: "", // what the detail card shows, so it is rebuilt only when that changes
  timer: 0,
  toastTimer: 0,
  busy: false,
  again: false,
  unauthorized: false,
};
const call = client(() => state.token, unauthorized);

// --------------------------------------------------------------------------- refresh

async function refresh() {
  clearTimeout(state.timer);
  if (!state.token || state.unauthorized) return;
  if (state.busy) {
    state.again = true; // refresh again as soon as this one is done
    return;
  }
  state.busy = true;
  const started = performance.now();
  const jobs = [loadStats(), loadTasks(), loadRebalance()];
  if (state.selected) jobs.push(loadDetail(state.selected));
  if (!state.types.length) jobs.push(loadTypes());
  const results = await Promise.allSettled(jobs);
  state.busy = false;
  if (state.unauthorized) return;
  const failures = results.filter((r) => r.status === "rejected").map((r) => r.reason);
  for (const failure of failures) {
    if (!(failure instanceof ApiError)) console.error(failure); // a bug of this page
  }
  if (failures.length) {
    showBanner(failures);
    setLive("error", "API errors, retrying");
  } else {
    hideBanner();
    setLive("ok", `live · ${clock(new Date())}`);
  }
  const wait = state.again ? 0 : Math.max(0, REFRESH_MS - (performance.now() - started));
  state.again = false;
  state.timer = setTimeout(refresh, wait);
}

async function loadStats() {
  const { data } = await call("GET", API.stats);
  state.deadWorkers = new Set(data.dead_workers || []);
  renderTotals(data);
  renderQueues(data.queues || {});
  renderWorkers(data.workers || [], data.dead_workers || []);
}

async function loadTasks() {
  const query = new URLSearchParams();
  if ($("filter-status").value) query.set("status", $("filter-status").value);
  if ($("filter-type").value) query.set("type", $("filter-type").value);
  query.set("limit", $("filter-limit").value);
  const { data } = await call("GET", `${API.tasks}?${query}`);
  renderTasks(data.items || []);
}

async function loadRebalance() {
  const { data } = await call("GET", API.rebalance);
  renderRebalance(data.runs || []);
}

async function loadDetail(id) {
  try {
    const [task, history] = await Promise.all([
      call("GET", API.task(id)),
      call("GET", API.events(id)),
    ]);
    if (state.selected === id) renderDetail(task.data, history.data.events || []);
  } catch (error) {
    if (error.status !== 404 || state.selected !== id) throw error;
    select(null);
    toast(`Task ${short(id)} does not exist (any more).`, "error");
  }
}

async function loadTypes() {
  const { data } = await call("GET", API.openapi);
  state.types = taskTypes(data);
  renderTypeChoices();
}

// ---------------------------------------------------------------------------- header

function renderTotals(stats) {
  const byStatus = Object.fromEntries(STATUSES.map((s) => [s, 0]));
  let total = 0;
  for (const counts of Object.values(stats.tasks || {})) {
    for (const [status, n] of Object.entries(counts)) {
      byStatus[status] = (byStatus[status] || 0) + n;
      total += n;
    }
  }
  const waiting = Object.values(stats.queues || {}).reduce((sum, q) => sum + q.waiting, 0);
  const dead = (stats.dead_workers || []).length;
  const item = (n, label, kind) =>
    el(
      "li",
      { class: "total", "data-kind": kind },
      el("span", { class: "n", text: String(n) }),
      label,
    );
  $("totals").replaceChildren(
    item(total, "tasks", "all"),
    ...STATUSES.map((s) => item(byStatus[s], s, s)),
    el("li", { class: "sep", "aria-hidden": "true" }),
    item((stats.workers || []).length, "workers", "workers"),
    dead ? item(dead, "dead", "dead") : "",
    item(waiting, "waiting", "waiting"),
  );
}

function setLive(kind, text) {
  $("live").dataset.state = kind;
  setText($("live-text"), text);
}

function showBanner(errors) {
  const lines = [...new Set(errors.map(describe))];
  $("banner").replaceChildren(...lines.map((line) => el("div", { text: line })));
  $("banner").hidden = false;
}

function hideBanner() {
  $("banner").hidden = true;
}

// ----------------------------------------------------------------------------- token

function askToken(message, isError) {
  const text = $("token-message");
  text.textContent = message;
  text.classList.toggle("error", Boolean(isError));
  $("token-input").value = state.token;
  const dialog = $("token-dialog");
  if (!dialog.open) dialog.showModal();
  $("token-input").focus();
}

function unauthorized(error) {
  if (state.unauthorized) return;
  state.unauthorized = true;
  clearTimeout(state.timer);
  setLive("auth", "token refused");
  askToken(
    `The API refused the token (401 Unauthorized): ${error.message} ` +
      "Enter a valid CALLBOARD_API_TOKEN to continue.",
    true,
  );
}

function saveToken(event) {
  event.preventDefault();
  const token = $("token-input").value.trim();
  if (!token || /[^\x21-\x7e]/.test(token)) {
    askToken("A token is one word of printable ASCII characters, without spaces.", true);
    return;
  }
  localStorage.setItem(TOKEN_KEY, token);
  state.token = token;
  state.unauthorized = false;
  $("token-dialog").close();
  setLive("idle", "connecting…");
  refresh();
}

function forgetToken() {
  localStorage.removeItem(TOKEN_KEY);
  state.token = "";
  clearTimeout(state.timer);
  setLive("idle", "not connected");
  askToken("The token was removed from this browser. Enter one to connect again.");
}

// ---------------------------------------------------------------------- queues, workers

function renderQueues(queues) {
  const items = Object.entries(queues).map(([name, q]) => ({ name, ...q }));
  syncRows(
    $("queues-body"),
    items,
    (q) => q.name,
    buildQueueRow,
    (row, q) => {
      setCount(row.cells[1], q.waiting);
      setCount(row.cells[2], q.delayed);
      setCount(row.cells[3], q.in_flight);
      setCount(row.cells[4], q.dead_lettered, "alert");
    },
  );
}

function buildQueueRow(q) {
  return el(
    "tr",
    {},
    el("th", { scope: "row", class: "mono", text: q.name }),
    ...[1, 2, 3, 4].map(() => el("td", { class: "num" })),
  );
}

function renderWorkers(workers, deadIds) {
  const items = [
    ...workers.map((w) => ({ ...w, dead: false })),
    ...deadIds.map((id) => ({ worker_id: id, dead: true })),
  ];
  $("workers-empty").hidden = items.length > 0;
  syncRows($("workers-body"), items, (w) => w.worker_id, buildWorkerRow, updateWorkerRow);
}

function buildWorkerRow() {
  return el(
    "tr",
    {},
    el(
      "td",
      {},
      el("span", { class: "mono strong" }),
      el("span", { class: "mono muted small worker-suffix" }),
    ),
    el("td", {}, el("span", { class: "badge" })),
    el("td"),
    el("td", { class: "num" }),
    el("td", { class: "num" }),
  );
}

function updateWorkerRow(row, w) {
  const [host, pid, suffix] = splitWorkerId(w);
  const [who, stateCell, beat, holds, processed] = row.cells;
  setText(who.firstChild, `${host}:${pid}`);
  setText(who.lastChild, suffix);
  who.title = w.worker_id;
  const interval = Number(w.interval) || 30;
  const late = !w.dead && w.age_s > 2 * interval;
  const kind = w.dead ? "dead" : late ? "late" : "live";
  row.dataset.state = kind;
  const badge = stateCell.firstChild;
  badge.dataset.kind = kind;
  setText(badge, kind);
  badge.title = w.dead
    ? "Its heartbeat expired while it held running tasks: the next rebalance recovers them."
    : `Heartbeat every ${interval} s`;
  setText(beat, w.dead ? "expired" : ago(w.age_s));
  if (w.dead) {
    setText(holds, "—");
    setText(processed, "—");
    holds.title = "";
  } else {
    setText(holds, `${w.held.length}/${w.threads}`);
    holds.title = w.held.length ? w.held.join("\n") : "holds no task";
    setText(processed, String(w.processed));
  }
}

function splitWorkerId(w) {
  const parts = String(w.worker_id).split(":");
  const host = w.host || parts[0] || "?";
  const pid = w.pid || parts[1] || "?";
  return [host, pid, parts.length > 2 ? parts.slice(2).join(":") : ""];
}

// ----------------------------------------------------------------------------- tasks

function renderTasks(tasks) {
  $("tasks-empty").hidden = tasks.length > 0;
  syncRows($("tasks-body"), tasks, (t) => t.id, buildTaskRow, updateTaskRow);
}

function buildTaskRow(task) {
  const id = task.id;
  const row = el(
    "tr",
    { "data-task-id": id, class: "task-row" },
    el("td", {}, el("button", { type: "button", class: "link mono", text: short(id), title: id })),
    el("td", {}, el("span", { class: "type" })),
    el(
      "td",
      { "data-field": "status" },
      el("span", { class: "badge" }),
      el("span", { class: "note" }),
    ),
    el("td", { class: "progress-col" }, progressBar()),
    el("td", { class: "num" }),
    el("td"),
    el("td", { class: "num" }),
    el(
      "td",
      { class: "actions" },
      el("button", {
        type: "button",
        class: "small danger",
        "data-action": "cancel",
        text: "Cancel",
      }),
      el("button", { type: "button", class: "small", "data-action": "retry", text: "Retry" }),
    ),
  );
  row.addEventListener("click", (event) => {
    const action = event.target.closest("[data-action]");
    if (action) act(action.dataset.action, id, action);
    else select(id);
  });
  return row;
}

function updateTaskRow(row, task) {
  const [, type, status, progress, attempts, created, duration, actions] = row.cells;
  row.dataset.status = task.status;
  row.classList.toggle("selected", task.id === state.selected);
  setText(type.firstChild, task.type);
  setBadge(status.firstChild, task.status);
  setText(status.lastChild, statusNote(task));
  setProgress(progress.firstChild, task);
  setText(attempts, String(task.attempts));
  setText(created, ago((Date.now() - Date.parse(task.created_at)) / 1000));
  created.title = stamp(task.created_at);
  setText(duration, taskDuration(task));
  const [cancel, retry] = actions.children;
  cancel.hidden = !CANCELLABLE.has(task.status) || task.cancel_requested;
  retry.hidden = !RETRYABLE.has(task.status);
}

function statusNote(task) {
  if (task.status === "running" && state.deadWorkers.has(task.worker))
    return "worker died: awaiting recovery";
  if (task.status === "running" && task.cancel_requested) return "stopping…";
  if (task.status === "queued" && task.run_at) return `due ${stamp(task.run_at)}`;
  return "";
}

function progressBar() {
  return el(
    "div",
    { class: "progress" },
    el(
      "div",
      {
        class: "bar",
        role: "progressbar",
        "aria-valuemin": "0",
        "aria-valuemax": "100",
        "aria-valuenow": "0",
      },
      el("div", { class: "fill" }),
    ),
    el("span", { class: "pct", text: "0 %" }),
  );
}

function setProgress(container, task) {
  const value = Math.max(0, Math.min(100, Number(task.progress) || 0));
  const bar = container.firstChild;
  bar.dataset.status = task.status;
  if (bar.getAttribute("aria-valuenow") !== String(value)) {
    bar.setAttribute("aria-valuenow", String(value));
    bar.firstChild.style.width = `${value}%`;
  }
  setText(container.lastChild, `${value} %`);
}

async function act(action, id, button) {
  const path = action === "cancel" ? API.cancel(id) : API.retry(id);
  if (button) button.disabled = true;
  try {
    const { status, data } = await call("POST", path);
    if (action === "retry")
      toast(`Task ${short(id)} is queued again (attempt ${data.attempts + 1}).`);
    else if (status === 202) toast(`Cancel requested: task ${short(id)} stops at its next step.`);
    else toast(`Task ${short(id)} is cancelled.`);
  } catch (error) {
    if (error.status !== 401) toast(describe(error), "error");
  } finally {
    if (button) button.disabled = false;
  }
  refresh();
}

function select(id) {
  state.selected = id;
  state.detailKey = "";
  history.replaceState(null, "", id ? `#task=${encodeURIComponent(id)}` : location.pathname);
  for (const row of $("tasks-body").rows) row.classList.toggle("selected", row.dataset.key === id);
  if (!id) {
    $("detail-body").replaceChildren(
      el("p", { class: "empty", text: "Select a task to see its payload, outcome and history." }),
    );
  } else {
    $("detail-body").replaceChildren(
      el("p", { class: "empty", text: `Loading task ${short(id)}…` }),
    );
    refresh();
  }
}

// ---------------------------------------------------------------------------- detail

function renderDetail(task, events) {
  const key = JSON.stringify([task, events]);
  if (key === state.detailKey) {
    const live = $("detail-duration");
    if (live) setText(live, taskDuration(task));
    return;
  }
  state.detailKey = key;
  const outcome = [];
  if (task.error !== null && task.error !== undefined) {
    outcome.push(el("h3", { text: "Error" }), el("pre", { class: "json error", text: task.error }));
  }
  if (task.result !== null && task.result !== undefined) {
    outcome.push(
      el("h3", { text: "Result" }),
      el("pre", { class: "json", text: pretty(task.result) }),
    );
  }
  if (!outcome.length)
    outcome.push(el("h3", { text: "Result" }), el("p", { class: "muted", text: "None yet." }));
  const progress = progressBar();
  setProgress(progress, task);
  const facts = [
    ["Attempts", String(task.attempts)],
    ["Recoveries", String(task.recoveries)],
    ["Worker", task.worker || "—", "mono"],
    ["Created", stamp(task.created_at)],
    ["Started", stamp(task.started_at)],
    ["Finished", stamp(task.finished_at)],
    ["Duration", taskDuration(task), "", "detail-duration"],
  ];
  if (task.run_at) facts.push(["Due", stamp(task.run_at)]);
  if (task.cancel_requested) facts.push(["Cancel", "requested"]);
  $("detail-body").replaceChildren(
    el(
      "div",
      { class: "detail-head", "data-status": task.status },
      el("span", {
        class: "badge",
        "data-kind": task.status,
        id: "detail-status",
        text: task.status,
      }),
      el("span", { class: "type", text: task.type }),
      el("code", { class: "mono id", id: "detail-id", text: task.id }),
    ),
    el(
      "div",
      { class: "detail-actions" },
      progress,
      CANCELLABLE.has(task.status) && !task.cancel_requested
        ? el("button", {
            type: "button",
            class: "small danger",
            text: "Cancel",
            onclick: (e) => act("cancel", task.id, e.target),
          })
        : null,
      RETRYABLE.has(task.status)
        ? el("button", {
            type: "button",
            class: "small",
            text: "Retry",
            onclick: (e) => act("retry", task.id, e.target),
          })
        : null,
    ),
    el(
      "dl",
      { class: "facts" },
      ...facts.flatMap(([label, value, cls, id]) => [
        el("dt", { text: label }),
        el("dd", { class: cls || null, id: id || null, text: value }),
      ]),
    ),
    el("h3", { text: "Payload" }),
    el("pre", { class: "json", text: pretty(task.payload) }),
    ...outcome,
    el("h3", { text: `History (${events.length})` }),
    timeline(events),
  );
}

function timeline(events) {
  const first = events.length ? Date.parse(events[0].at) : 0;
  return el(
    "ol",
    { class: "timeline", id: "detail-timeline" },
    ...events.map((event) => {
      const at = Date.parse(event.at);
      const detail = Object.entries(event.detail || {})
        .map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`)
        .join(" · ");
      return el(
        "li",
        { "data-kind": event.kind },
        el("span", { class: "dot", "aria-hidden": "true" }),
        el(
          "div",
          { class: "event" },
          el(
            "div",
            { class: "event-head" },
            el("strong", { text: event.kind.replace(/_/g, " ") }),
            el("span", { class: "muted", text: clock(new Date(at), true) }),
            at > first ? el("span", { class: "offset", text: `+${duration(at - first)}` }) : null,
          ),
          event.worker ? el("div", { class: "mono small muted", text: event.worker }) : null,
          detail ? el("div", { class: "small", text: detail }) : null,
        ),
      );
    }),
  );
}

// ------------------------------------------------------------------------- rebalance

function renderRebalance(runs) {
  $("rebalance-empty").hidden = runs.length > 0;
  syncRows(
    $("rebalance-body"),
    runs,
    (r) => r.started_at,
    buildRebalanceRow,
    (row, run) => {
      const [started, took, resent, recovered, poisoned, dead] = row.cells;
      const repaired = run.resent + run.recovered + run.poisoned > 0;
      row.classList.toggle("repaired", repaired);
      setText(started.firstChild, stamp(run.started_at));
      setText(started.lastChild, ` ${ago((Date.now() - Date.parse(run.started_at)) / 1000)}`);
      setText(took, duration(run.duration_ms));
      setCount(resent, run.resent, "warn");
      setCount(recovered, run.recovered, "warn");
      setCount(poisoned, run.poisoned, "alert");
      setText(dead, run.dead_workers.length ? run.dead_workers.join(", ") : "—");
      dead.classList.toggle("muted", !run.dead_workers.length);
      started.title = repaired ? "This run repaired something." : "Nothing to repair.";
    },
  );
}

function buildRebalanceRow() {
  return el(
    "tr",
    {},
    el("td", {}, el("span"), el("span", { class: "muted small" })),
    ...[1, 2, 3, 4].map(() => el("td", { class: "num" })),
    el("td", { class: "mono small" }),
  );
}

// ---------------------------------------------------------------------- submit form

function renderTypeChoices() {
  const submitType = $("submit-type");
  const filterType = $("filter-type");
  const previous = submitType.value;
  submitType.replaceChildren(
    ...state.types.map((t) =>
      el("option", { value: t.name, text: `${t.name.toUpperCase()} · ${t.summary.split(":")[0]}` }),
    ),
  );
  if (state.types.some((t) => t.name === previous)) submitType.value = previous;
  const filterValue = filterType.value;
  filterType.replaceChildren(
    el("option", { value: "", text: "all" }),
    ...state.types.map((t) => el("option", { value: t.name, text: t.name })),
  );
  filterType.value = filterValue;
  renderFields();
}

function fieldId(type, field) {
  return `field-${type}-${field.key}`;
}

function renderFields() {
  const type = currentType();
  $("submit-summary").textContent = type ? type.summary : "";
  if (!type) return $("submit-fields").replaceChildren();
  const example = EXAMPLES[type.name] || {};
  $("submit-fields").replaceChildren(
    ...type.fields.map((f) => {
      const id = fieldId(type.name, f);
      const initial = example[f.key] ?? (f.min !== undefined ? f.min : "");
      let input;
      if (f.type === "boolean") {
        input = el("input", { id, type: "checkbox", checked: Boolean(initial) });
      } else if (f.type === "integer" || f.type === "number") {
        input = el("input", {
          id,
          type: "number",
          step: f.type === "integer" ? "1" : "any",
          min: f.min,
          max: f.max,
        });
        input.value = String(initial);
      } else if (f.type === "string" && (f.maxLength || 0) > 256) {
        input = el("textarea", { id, rows: "2", maxlength: f.maxLength });
        input.value = String(initial);
      } else {
        input = el("input", { id, type: "text", maxlength: f.maxLength });
        input.value = f.type === "string" ? String(initial) : JSON.stringify(initial);
      }
      input.required = f.required && f.type !== "boolean";
      input.dataset.key = f.key;
      return el(
        "div",
        { class: "field" },
        el("label", { for: id, text: f.label }),
        input,
        f.description ? el("p", { class: "hint", text: f.description }) : null,
      );
    }),
  );
}

function currentType() {
  return state.types.find((t) => t.name === $("submit-type").value) || null;
}

async function submitTask(event) {
  event.preventDefault();
  const type = currentType();
  if (!type) return;
  const payload = {};
  for (const f of type.fields) {
    const input = $(fieldId(type.name, f));
    input.removeAttribute("aria-invalid");
    if (f.type === "boolean") payload[f.key] = input.checked;
    else if (f.type === "integer" || f.type === "number") payload[f.key] = Number(input.value);
    else if (f.type === "string") payload[f.key] = input.value;
    else {
      try {
        payload[f.key] = JSON.parse(input.value);
      } catch {
        return showSubmitResult("error", `${f.label}: not valid JSON.`);
      }
    }
  }
  const body = { type: type.name, payload };
  const delay = $("submit-delay").value.trim();
  if (delay !== "") body.delay_ms = Number(delay);
  const button = $("submit-button");
  button.disabled = true;
  try {
    const { data } = await call("POST", API.tasks, body);
    showSubmitResult("ok", `Submitted ${data.type.toUpperCase()} task `, data.id);
    select(data.id);
  } catch (error) {
    if (error.status === 401) return;
    const fields = error.errors.map((e) => `${e.field}: ${e.message}`);
    for (const e of error.errors) {
      const key = String(e.field).replace(/^payload\./, "");
      const input = $(fieldId(type.name, { key }));
      if (input) input.setAttribute("aria-invalid", "true");
      if (e.field === "delay_ms") $("submit-delay").setAttribute("aria-invalid", "true");
    }
    showSubmitResult("error", describe(error), null, fields);
  } finally {
    button.disabled = false;
    refresh();
  }
}

function showSubmitResult(kind, text, taskId, lines = []) {
  const result = $("submit-result");
  result.dataset.kind = kind;
  if (taskId) result.dataset.taskId = taskId;
  else delete result.dataset.taskId;
  const parts = [text];
  if (taskId) {
    parts.push(
      el("button", {
        type: "button",
        class: "link mono",
        text: short(taskId),
        title: taskId,
        onclick: () => select(taskId),
      }),
    );
  }
  if (lines.length) parts.push(el("ul", {}, ...lines.map((line) => el("li", { text: line }))));
  result.replaceChildren(...parts);
}

// ----------------------------------------------------------------------------- toast

function toast(text, kind = "ok") {
  const node = $("toast");
  node.textContent = text;
  node.dataset.kind = kind;
  node.hidden = false;
  clearTimeout(state.toastTimer);
  state.toastTimer = setTimeout(() => {
    node.hidden = true;
  }, TOAST_MS);
}

// ------------------------------------------------------------------------------ start

function start() {
  $("filter-status").append(...STATUSES.map((s) => el("option", { value: s, text: s })));
  $("token-form").addEventListener("submit", saveToken);
  $("token-forget").addEventListener("click", forgetToken);
  $("token-change").addEventListener("click", () =>
    askToken("Enter one of the server's CALLBOARD_API_TOKEN tokens."),
  );
  $("token-dialog").addEventListener("cancel", (event) => {
    if (!state.token || state.unauthorized) event.preventDefault(); // nothing works without one
  });
  $("filters").addEventListener("change", () => refresh());
  $("filters").addEventListener("submit", (event) => event.preventDefault());
  $("submit-type").addEventListener("change", renderFields);
  $("submit-form").addEventListener("submit", submitTask);
  const match = /^#task=([^&]+)$/.exec(location.hash);
  if (match) select(decodeURIComponent(match[1]));
  if (state.token) {
    setLive("idle", "connecting…");
    refresh();
  } else {
    askToken(
      "Enter one of the server's CALLBOARD_API_TOKEN tokens. It stays in this browser " +
        "(localStorage) and is sent as a bearer token with every API call.",
    );
  }
}

start();
