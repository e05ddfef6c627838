// jobkit dashboard: plain JavaScript over the public REST API (SPEC section 5).
// Every value that comes from the API is put on the page with textContent or setAttribute, never as HTML.
"use strict";

const STATES = ["pending", "active", "scheduled", "retry", "archived", "completed"];
const RUNNABLE = ["scheduled", "retry", "archived"];
const ARCHIVABLE = ["pending", "scheduled", "retry"];
const CANCELABLE = ["pending", "scheduled", "retry", "active"];
const PROGRESS_POLL_MS = 500; // a running task's page reads it this often (the worker writes it every 0.5 s), so its bar moves
const SEARCH_ANSWERS = 20; // answers of the search API followed, at most, to fill one page of matches
const FALLBACK_POLL_S = 5; // while the live stream is down
const LIVE_BASELINE_S = 10; // pages the stream does not cover (workers, schedules...) still refresh this often
const TOKEN_KEY = "jobkit.token";
const REFRESH_KEY = "jobkit.refresh";

const state = { token: null, claims: {}, view: null, timer: null, busy: false, stats: null };
// The live stream: fetch() with the bearer header (EventSource cannot send one, and the token never goes in a URL).
const live = { controller: null, connected: false, retry: null, delay: 1000 };

// -- small DOM helpers ----------------------------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, ...children);
  return node;
}

function append(node, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function replace(node, ...children) {
  node.replaceChildren();
  return append(node, ...children);
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function fmtTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return isNaN(date) ? String(iso) : date.toLocaleString();
}

function fmtMs(ms) {
  if (!ms) return "0 s";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3600000) return `${Math.round(ms / 60000)} min`;
  return `${(ms / 3600000).toFixed(1)} h`;
}

function errorRate(q) {
  return q.processed ? `${((100 * q.failed) / q.processed).toFixed(1)} %` : "0 %";
}

function json(value) {
  return JSON.stringify(value, null, 2);
}

function short(text, length) {
  text = String(text ?? "");
  return text.length > length ? text.slice(0, length - 1) + "…" : text;
}

// fn at most once per `ms`; a call inside the window runs once at its end.
function throttle(fn, ms) {
  let last = 0;
  let timer = null;
  return () => {
    const wait = last + ms - Date.now();
    if (wait <= 0) {
      last = Date.now();
      fn();
    } else if (!timer) {
      timer = setTimeout(() => {
        timer = null;
        last = Date.now();
        fn();
      }, wait);
    }
  };
}

function isAdmin() {
  return state.claims.role === "admin";
}

function flash(message, kind) {
  const node = document.getElementById("flash");
  node.textContent = message;
  node.className = `flash ${kind || "ok"}`;
  node.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => (node.hidden = true), 4000);
}

function confirmAction(text) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  return new Promise((resolve) => {
    const ok = document.getElementById("confirm-ok");
    const cancel = document.getElementById("confirm-cancel");
    const done = (answer) => {
      ok.removeEventListener("click", yes);
      cancel.removeEventListener("click", no);
      dialog.removeEventListener("cancel", no);
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    const yes = () => done(true);
    const no = () => done(false);
    ok.addEventListener("click", yes);
    cancel.addEventListener("click", no);
    dialog.addEventListener("cancel", no);
    dialog.showModal();
  });
}

// -- the API --------------------------------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, detail) {
    super(`${status}: ${detail}`);
    this.status = status;
    this.detail = detail;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}`, Accept: "application/json" };
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (_) {
    data = text;
  }
  if (response.status === 401) {
    logout("The token was refused (expired or invalid); log in again.");
    throw new ApiError(401, "unauthorized");
  }
  if (!response.ok) throw new ApiError(response.status, (data && data.detail) || response.statusText);
  return data;
}

const q = encodeURIComponent;

function listOf(data, ...keys) {
  if (Array.isArray(data)) return data;
  for (const key of keys) if (data && Array.isArray(data[key])) return data[key];
  return [];
}

async function fetchTasks(queue, taskState, page, size) {
  const data = await api("GET", `/api/jobs/queue/${q(queue)}/tasks?state=${q(taskState)}&page=${page}&size=${size}`);
  const tasks = listOf(data, "tasks", "items", "results");
  const total = data && typeof data.total === "number" ? data.total : tasks.length;
  return { total, tasks };
}

const actions = {
  pause: (queue) => api("PUT", `/api/jobs/queue/${q(queue)}/pause`),
  resume: (queue) => api("PUT", `/api/jobs/queue/${q(queue)}/resume`),
  run: (queue, id) => api("POST", "/api/jobs/retry", { queue, task_id: id }),
  remove: (queue, id) => api("DELETE", `/api/jobs/task/${q(queue)}/${q(id)}`),
  archive: (queue, id) => api("POST", `/api/jobs/task/${q(queue)}/${q(id)}/archive`),
  cancel: (queue, id) => api("POST", `/api/jobs/task/${q(queue)}/${q(id)}/cancel`),
  // One request for a selection ({ids}) or a whole state ({state}) of a queue.
  bulk: (queue, action, target) => api("POST", `/api/jobs/queue/${q(queue)}/tasks/bulk`, { action, ...target }),
};

const DONE_TEXT = { run: "will run now", delete: "deleted", archive: "archived" };

// The flash text of a bulk answer: how many changed, and why the first one that did not.
function bulkText(outcome, action) {
  const failed = listOf(outcome && outcome.failed);
  const done = (outcome && outcome.done) || 0;
  return `${done} task(s) ${DONE_TEXT[action]}${failed.length ? `; ${failed.length} not: ${failed[0].detail}` : ""}`;
}

// A selection that spans queues: one request per queue.
async function bulkIds(action, tasks) {
  const byQueue = new Map();
  for (const t of tasks) byQueue.set(t.queue, [...(byQueue.get(t.queue) || []), t.id]);
  const total = { done: 0, failed: [] };
  for (const [queue, ids] of byQueue) {
    const outcome = await actions.bulk(queue, action, { ids });
    total.done += outcome.done;
    total.failed.push(...listOf(outcome.failed));
  }
  return total;
}

// Matches of the search API for `params` (q, queue, state, task), following its cursor until `size` matches, the
// end, or SEARCH_ANSWERS answers; `progress(looked)` hears how many stored tasks were looked at so far.
async function searchTasks(params, size, cursor, progress) {
  const found = [];
  let looked = 0;
  for (let answer = 0; answer < SEARCH_ANSWERS; answer++) {
    const query = new URLSearchParams({ ...params, size: String(size - found.length) });
    if (cursor) query.set("cursor", cursor);
    for (const [key, value] of [...query]) if (!value) query.delete(key);
    const data = await api("GET", `/api/jobs/search?${query}`);
    found.push(...listOf(data, "tasks"));
    looked += data.scanned || 0;
    cursor = data.cursor;
    if (progress) progress(looked);
    if (!cursor || found.length >= size) break;
  }
  return { tasks: found, cursor, looked };
}

async function act(label, work) {
  try {
    const message = await work();
    flash(message || `${label}: done`, "ok");
  } catch (error) {
    if (error.status !== 401) flash(`${label} failed: ${error.detail || error.message}`, "error");
  }
  if (state.view && state.view.invalidate) state.view.invalidate(); // a search runs again: what it found changed
  refresh();
}

// -- session --------------------------------------------------------------------------------------------------------
function decodeClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part + "===".slice((part.length + 3) % 4)));
  } catch (_) {
    return {};
  }
}

function login(token) {
  token = token.trim();
  if (!token) return;
  state.token = token;
  state.claims = decodeClaims(token);
  sessionStorage.setItem(TOKEN_KEY, token);
  document.getElementById("login-error").textContent = "";
  show();
}

function logout(message) {
  state.token = null;
  state.claims = {};
  sessionStorage.removeItem(TOKEN_KEY);
  document.getElementById("login-error").textContent = message || "";
  show();
}

function show() {
  const signedIn = Boolean(state.token);
  document.getElementById("login").hidden = signedIn;
  document.getElementById("top").hidden = !signedIn;
  document.getElementById("view").hidden = !signedIn;
  document.body.classList.toggle("readonly", signedIn && !isAdmin());
  if (!signedIn) {
    clearInterval(state.timer);
    stopLive();
    setTimer();
    replace(document.getElementById("view"));
    state.view = null;
    return;
  }
  const role = state.claims.role || "unknown role";
  const reach = isAdmin() ? "" : role === "user" ? ", triggers only" : ", read-only";
  document.getElementById("who").textContent = `${state.claims.sub || "token"} (${role}${reach})`;
  route();
  scheduleUpdates();
}

// -- live updates ---------------------------------------------------------------------------------------------------
// "live" (the default): the server's event stream updates the page as figures change; while the stream is down the
// page polls every FALLBACK_POLL_S seconds and keeps trying to reconnect. A number: poll that often. "0": never.
function updatesMode() {
  return document.getElementById("refresh").value;
}

function wantsLive() {
  return Boolean(state.token) && updatesMode() === "live" && state.claims.role !== "user";
}

function scheduleUpdates() {
  if (wantsLive()) startLive();
  else stopLive();
  setTimer();
}

function setTimer() {
  clearInterval(state.timer);
  const mode = updatesMode();
  const seconds = mode === "live" ? (live.connected ? LIVE_BASELINE_S : FALLBACK_POLL_S) : Number(mode);
  if (state.token && seconds > 0) state.timer = setInterval(refresh, seconds * 1000);
  const badge = document.getElementById("live");
  badge.hidden = !wantsLive();
  badge.textContent = live.connected ? "live" : "polling";
  badge.className = `live ${live.connected ? "on" : "off"}`;
  badge.title = live.connected
    ? "Figures update as they change (server-sent events)"
    : `The live stream is down: polling every ${FALLBACK_POLL_S} s while reconnecting`;
}

function startLive() {
  if (!live.controller && !live.retry) connectLive();
}

function stopLive() {
  clearTimeout(live.retry);
  live.retry = null;
  const controller = live.controller;
  live.controller = null;
  live.connected = false;
  if (controller) controller.abort();
}

function liveConnected(connected) {
  if (live.connected === connected) return;
  live.connected = connected;
  setTimer();
  if (connected) refresh(); // whatever changed while the stream was down
}

async function connectLive() {
  const controller = new AbortController();
  live.controller = controller;
  try {
    const response = await fetch("/api/jobs/events", {
      headers: { Authorization: `Bearer ${state.token}`, Accept: "text/event-stream" },
      cache: "no-store",
      signal: controller.signal,
    });
    if (response.status === 401) {
      live.controller = null;
      logout("The token was refused (expired or invalid); log in again.");
      return;
    }
    if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
    live.delay = 1000;
    liveConnected(true);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = /\r\n\r\n|\n\n|\r\r/.exec(buffer))) {
        const event = parseEvent(buffer.slice(0, end.index));
        buffer = buffer.slice(end.index + end[0].length);
        if (event && live.controller === controller) onLiveEvent(event);
      }
    }
  } catch (_) {
    if (controller.signal.aborted) return; // closed on purpose (log out, polling chosen)
  }
  if (live.controller !== controller) return;
  live.controller = null;
  liveConnected(false);
  live.retry = setTimeout(() => {
    live.retry = null;
    if (wantsLive()) startLive();
  }, live.delay);
  live.delay = Math.min(live.delay * 2, 8000);
}

// One text/event-stream block -> {name, data}, or null for a comment (a keepalive).
function parseEvent(block) {
  let name = "message";
  const data = [];
  for (const line of block.split(/\r\n|\r|\n/)) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") name = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return null;
  try {
    return { name, data: JSON.parse(data.join("\n")) };
  } catch (_) {
    return null;
  }
}

function onLiveEvent({ name, data }) {
  const view = state.view;
  if (name === "stats") {
    state.stats = data;
    if (view && view.onStats) view.onStats(data);
  } else if (name === "changes") {
    if (view && view.onChanges) view.onChanges(data);
  } else if (name === "archived") {
    if (view && view.onArchived) view.onArchived(listOf(data, "tasks"));
  } else if (name === "unavailable") {
    flash("Redis is unreachable; the figures shown may be stale", "error");
  }
}

// -- routing --------------------------------------------------------------------------------------------------------
function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(query || "") };
}

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function route() {
  if (!state.token) return;
  const { parts, params } = parseHash();
  const name = parts[0] || "overview";
  const views = { overview: overviewView, queue: queueView, task: taskView, schedules: schedulesView };
  Object.assign(views, { workers: workersView, redis: redisView, workflow: workflowView, search: searchView, types: typesView });
  // A user token may trigger tasks and read the ones it triggered (their task pages), nothing the pages list: say so.
  const make = state.claims.role === "user" && name !== "task" ? userView : views[name] || overviewView;
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("current", link.dataset.nav === (["queue", "task", "workflow"].includes(name) ? "overview" : name));
  }
  const root = document.getElementById("view");
  replace(root);
  state.view = make(root, parts.slice(1), params);
  refresh();
}

async function refresh() {
  const view = state.view;
  if (!view || state.busy) return;
  state.busy = true;
  try {
    await view.load();
    if (view === state.view) view.setError(null);
  } catch (error) {
    if (error.status !== 401 && view === state.view) view.setError(error);
  } finally {
    state.busy = false;
  }
}


function userView(root) {
  const setError = page(root, "Trigger-only token");
  append(root, el("section", { class: "card", id: "user-role" },
    el("p", {}, "This is a user token: it may trigger the tasks declared with api: true and read the tasks it " +
      "triggered (GET /api/jobs/task/{queue}/{id}, or the page #/task/{queue}/{id}), nothing else."),
    el("p", {}, "The dashboard needs a viewer token (every page, read-only) or an admin token: " +
      "jobkit token --sub you --role viewer")));
  return { load: async () => {}, setError };
}

function page(root, title, ...extra) {
  const error = el("p", { class: "error", role: "alert", hidden: true });
  append(root, el("div", { class: "heading" }, el("h1", {}, title), ...extra), error);
  return (problem) => {
    error.hidden = !problem;
    if (!problem) return;
    error.textContent =
      problem.status === 403
        ? `This token may not read this page (${problem.detail}).`
        : `Could not load: ${problem.detail || problem.message}`;
  };
}

function table(headers) {
  const body = el("tbody");
  const node = el(
    "div",
    { class: "scroll" },
    el("table", {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))), body),
  );
  return { node, body };
}

function adminButton(label, attrs, handler) {
  if (!isAdmin()) return null;
  return el("button", { type: "button", ...attrs, onclick: handler }, label);
}

// -- overview -------------------------------------------------------------------------------------------------------
function overviewView(root) {
  const setError = page(root, "Queues");
  const queues = table([
    "Queue", "State", "Size", "Pending", "Active", "Scheduled", "Retry", "Archived",
    "Latency", "Processed today", "Failed today", "Error rate", isAdmin() ? "Actions" : null,
  ].filter(Boolean));
  queues.node.id = "queues";
  const chart = el("div", { class: "chart", id: "chart" });
  const daysButtons = el("div", { class: "segmented", role: "group", "aria-label": "Days" });
  const queueSelect = el("select", { id: "chart-queue", "aria-label": "Queue in chart" }, el("option", { value: "" }, "all queues"));
  let days = Number(sessionStorage.getItem("jobkit.days")) || 7;
  for (const n of [7, 30, 90]) {
    append(daysButtons, el("button", { type: "button", "data-days": n, onclick: () => {
      days = n;
      sessionStorage.setItem("jobkit.days", String(n));
      refresh();
    } }, `${n} days`));
  }
  queueSelect.addEventListener("change", () => refresh());
  const archivedList = el("ul", { class: "recent", id: "recent-archived" });
  const archivedCard = el("section", { class: "card", hidden: true }, el("h2", {}, "Archived just now"), archivedList);
  append(root, queues.node, archivedCard, workflowForm(),
    el("section", { class: "card" },
      el("div", { class: "heading" }, el("h2", {}, "Processed and failed"), el("div", { class: "controls" }, queueSelect, daysButtons)),
      chart));

  async function load() {
    const [stats, history] = await Promise.all([
      api("GET", "/api/jobs/stats"),
      api("GET", `/api/jobs/history?days=${days}`).catch((error) => (error.status === 401 ? Promise.reject(error) : null)),
    ]);
    const rows = listOf(stats, "queues");
    replace(queues.body, rows.map(queueRow));
    const names = rows.map((r) => r.queue);
    if (queueSelect.options.length !== names.length + 1) {
      const chosen = queueSelect.value;
      replace(queueSelect, el("option", { value: "" }, "all queues"), names.map((n) => el("option", { value: n }, n)));
      queueSelect.value = chosen;
    }
    for (const button of daysButtons.children) button.classList.toggle("current", Number(button.dataset.days) === days);
    drawChart(chart, historyRows(history), days, queueSelect.value);
  }
  // The live stream: the table follows every stats event; newly archived tasks are listed as they fail.
  const onStats = (stats) => replace(queues.body, listOf(stats, "queues").map(queueRow));
  const onArchived = (tasks) => {
    archivedCard.hidden = false;
    for (const t of tasks) {
      archivedList.prepend(el("li", { "data-task": t.id },
        el("a", { href: `#/task/${q(t.queue)}/${q(t.id)}`, class: "mono" }, short(t.id, 12)), ` ${t.task} (${t.queue}) `,
        el("span", { class: "error-text" }, short(t.last_error || "", 100))));
    }
    while (archivedList.children.length > 10) archivedList.lastChild.remove();
  };
  return { load, setError, onStats, onArchived };
}

function queueRow(s) {
  const link = el("a", { href: `#/queue/${q(s.queue)}` }, s.queue);
  const cell = (name, value) => el("td", { "data-col": name, class: "num" }, value);
  const toggle = s.paused
    ? adminButton("Resume", { "data-action": "resume" }, () => act(`Resume ${s.queue}`, async () => {
        await actions.resume(s.queue);
        return `Queue ${s.queue} resumed`;
      }))
    : adminButton("Pause", { "data-action": "pause", class: "secondary" }, () => act(`Pause ${s.queue}`, async () => {
        await actions.pause(s.queue);
        return `Queue ${s.queue} paused`;
      }));
  return el("tr", { "data-queue": s.queue },
    el("th", { scope: "row" }, link),
    el("td", { "data-col": "state" }, el("span", { class: `badge ${s.paused ? "paused" : "running"}` }, s.paused ? "paused" : "running")),
    cell("size", s.size), cell("pending", s.pending), cell("active", s.active), cell("scheduled", s.scheduled),
    cell("retry", s.retry), cell("archived", s.archived), cell("latency", fmtMs(s.latency_ms)),
    cell("processed", s.processed), cell("failed", s.failed), cell("error_rate", errorRate(s)),
    isAdmin() ? el("td", { "data-col": "actions" }, toggle) : null);
}

// History answers may be a list of {queue, date, processed, failed} or wrapped in an object.
function historyRows(history) {
  const rows = listOf(history, "history", "days", "rows");
  if (rows.length || !history || typeof history !== "object") return rows;
  const flat = [];
  for (const [queue, days] of Object.entries(history.queues || {})) {
    for (const day of days || []) flat.push({ queue, ...day });
  }
  return flat;
}

function drawChart(container, rows, days, onlyQueue) {
  const byDate = new Map();
  for (const row of rows) {
    if (onlyQueue && row.queue !== onlyQueue) continue;
    const day = byDate.get(row.date) || { processed: 0, failed: 0 };
    day.processed += Number(row.processed) || 0;
    day.failed += Number(row.failed) || 0;
    byDate.set(row.date, day);
  }
  const dates = [...byDate.keys()].sort().slice(-days);
  const width = 720, height = 220, left = 44, bottom = 24, top = 10;
  const max = Math.max(1, ...dates.map((d) => byDate.get(d).processed));
  const step = (width - left - 8) / Math.max(1, dates.length);
  const y = (value) => top + (height - top - bottom) * (1 - value / max);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `Processed and failed, last ${days} days` });
  for (const fraction of [0, 0.5, 1]) {
    const value = Math.round(max * fraction);
    chart.append(svg("line", { x1: left, x2: width, y1: y(value), y2: y(value), class: "grid" }));
    chart.append(svg("text", { x: left - 6, y: y(value) + 4, class: "axis", "text-anchor": "end" }, String(value)));
  }
  dates.forEach((date, i) => {
    const day = byDate.get(date);
    const x = left + i * step;
    const barWidth = Math.max(1, step * 0.7);
    const title = `${date}: ${day.processed} processed, ${day.failed} failed`;
    const bar = svg("rect", { x, y: y(day.processed), width: barWidth, height: y(0) - y(day.processed), class: "processed" });
    bar.append(svg("title", {}, title));
    const failed = svg("rect", { x, y: y(day.failed), width: barWidth, height: y(0) - y(day.failed), class: "failed" });
    failed.append(svg("title", {}, title));
    chart.append(bar, failed);
    const every = Math.ceil(dates.length / 7);
    if (i % every === 0) chart.append(svg("text", { x: x + barWidth / 2, y: height - 6, class: "axis", "text-anchor": "middle" }, date.slice(5)));
  });
  const legend = el("p", { class: "legend" },
    el("span", { class: "key processed" }), "processed ", el("span", { class: "key failed" }), "failed",
    dates.length ? "" : " — no history yet");
  replace(container, chart, legend);
}

// -- queue ----------------------------------------------------------------------------------------------------------
function queueView(root, parts, params) {
  const queue = parts[0];
  const taskState = STATES.includes(params.get("state")) ? params.get("state") : "pending";
  const pageNo = Math.max(1, Number(params.get("page")) || 1);
  const size = [20, 50, 100].includes(Number(params.get("size"))) ? Number(params.get("size")) : 20;
  const search = params.get("q") || "";
  const link = (changes) => {
    const next = new URLSearchParams({ state: taskState, page: pageNo, size, q: search, ...changes });
    if (!next.get("q")) next.delete("q");
    return `#/queue/${q(queue)}?${next}`;
  };

  const badge = el("span", { class: "badge" });
  const toggle = el("span");
  const setError = page(root, `Queue ${queue}`, badge, toggle);
  const summary = el("p", { class: "summary" });
  const tabs = el("nav", { class: "tabs", "aria-label": "Task states" });
  const searchInput = el("input", { type: "search", id: "search", value: search, placeholder: "id, task, payload or error text", "aria-label": "Search tasks" });
  const searchForm = el("form", { class: "search", role: "search", onsubmit: (event) => {
    event.preventDefault();
    go(link({ q: searchInput.value.trim(), page: 1 }));
  } }, searchInput, el("button", { type: "submit" }, "Search"),
  search ? el("a", { href: link({ q: "", page: 1 }), class: "button secondary" }, "Clear") : null);
  const bulk = el("div", { class: "bulk" });
  const timeHeader = { pending: "Enqueued", active: "Enqueued", scheduled: "Runs at", retry: "Next attempt", archived: "Failed at", completed: "Completed" }[taskState];
  const tasks = table([isAdmin() ? el("input", { type: "checkbox", "aria-label": "Select all", id: "select-all" }) : null,
    "ID", "Task", "Payload", "Retried", "Last error", timeHeader, isAdmin() ? "Actions" : null].filter(Boolean));
  tasks.node.id = "tasks";
  const pager = el("nav", { class: "pager", "aria-label": "Pages" });
  append(root, summary, tabs, searchForm, bulk, tasks.node, pager);
  const selectAll = tasks.node.querySelector("#select-all");
  if (selectAll) selectAll.addEventListener("change", () => {
    for (const box of tasks.body.querySelectorAll("input[data-select]")) box.checked = selectAll.checked;
  });
  const selected = () => [...tasks.body.querySelectorAll("input[data-select]:checked")].map((box) => box.dataset.select);

  if (isAdmin()) {
    const button = (label, attrs, handler) => el("button", { type: "button", ...attrs, onclick: handler }, label);
    const ask = async (text, work) => {
      if (await confirmAction(text)) await work();
    };
    // Each button is one request, for the selection or for the whole state, however many tasks that is.
    const bulkAct = (label, action, target) => act(label, async () => bulkText(await actions.bulk(queue, action, target), action));
    const forSelection = (label, action, attrs, question) => button(`${label} selected`, attrs, () => {
      const ids = selected();
      if (ids.length) ask(question(ids.length), () => bulkAct(`${label} selected`, action, { ids }));
    });
    const forState = (label, action, attrs, question) => button(`${label} all`, attrs, () =>
      ask(question, () => bulkAct(`${label} all`, action, { state: taskState })));
    if (RUNNABLE.includes(taskState)) {
      append(bulk,
        forSelection("Run", "run", { "data-action": "run-selected" }, (n) => `Run ${n} selected task(s) now?`),
        forState("Run", "run", { "data-action": "run-all" }, `Run every ${taskState} task of ${queue} now?`));
    }
    if (ARCHIVABLE.includes(taskState)) {
      append(bulk,
        forSelection("Archive", "archive", { "data-action": "archive-selected", class: "secondary" }, (n) => `Archive ${n} selected task(s)?`),
        forState("Archive", "archive", { "data-action": "archive-all", class: "secondary" }, `Archive every ${taskState} task of ${queue}?`));
    }
    if (taskState !== "active") {
      append(bulk,
        forSelection("Delete", "delete", { "data-action": "delete-selected", class: "danger" }, (n) => `Delete ${n} selected task(s)? This cannot be undone.`),
        forState("Delete", "delete", { "data-action": "delete-all", class: "danger" }, `Delete every ${taskState} task of ${queue}? This cannot be undone.`));
    }
  }

  let rows = [];
  let total = 0;
  let cursor = null; // a search: where its further matches are
  let searched = false; // a search's matches stay until it is run again (an action, or Search)
  let shownCount = null;

  function showStats(stats) {
    badge.className = `badge ${stats.paused ? "paused" : "running"}`;
    badge.textContent = stats.paused ? "paused" : "running";
    replace(toggle, stats.paused
      ? adminButton("Resume", { "data-action": "resume" }, () => act("Resume", async () => (await actions.resume(queue), `Queue ${queue} resumed`)))
      : adminButton("Pause", { "data-action": "pause", class: "secondary" }, () => act("Pause", async () => (await actions.pause(queue), `Queue ${queue} paused`))));
    summary.textContent = `size ${stats.size} · latency ${fmtMs(stats.latency_ms)} · processed today ${stats.processed} · failed today ${stats.failed} · error rate ${errorRate(stats)}`;
    replace(tabs, STATES.map((s) => el("a", { href: link({ state: s, page: 1 }), "data-state": s, class: s === taskState ? "current" : null, "aria-current": s === taskState ? "page" : null },
      `${s} `, el("span", { class: "count" }, String(stats[s] ?? 0)))));
  }

  function render() {
    const keep = new Set(selected());
    replace(tasks.body, rows.length ? rows.map((t) => taskRow(queue, taskState, t, keep)) :
      el("tr", {}, el("td", { colspan: 8, class: "empty" }, search ? `No ${taskState} task matches “${search}”.` : `No ${taskState} tasks.`)));
    if (search) {
      replace(pager, el("span", { id: "search-status" }, `${rows.length} task(s) matching${cursor ? "; there may be more" : ""}`),
        cursor ? el("button", { type: "button", class: "secondary", "data-more": "", onclick: () => more() }, "Show more") : null);
      return;
    }
    const pages = Math.max(1, Math.ceil(total / size));
    replace(pager,
      pageNo > 1 ? el("a", { href: link({ page: pageNo - 1 }), rel: "prev" }, "‹ Prev") : el("span", { class: "muted" }, "‹ Prev"),
      el("span", {}, `Page ${pageNo} of ${pages} · ${total} task(s)`),
      pageNo < pages ? el("a", { href: link({ page: pageNo + 1 }), rel: "next" }, "Next ›") : el("span", { class: "muted" }, "Next ›"),
      el("label", {}, "Per page ", el("select", { "aria-label": "Per page", onchange: (e) => go(link({ size: e.target.value, page: 1 })) },
        [20, 50, 100].map((n) => el("option", { value: n, selected: n === size }, n)))));
  }

  const progress = (looked) => replace(pager, el("span", { id: "search-status" }, `Searching… ${looked} task(s) looked at`));

  async function loadList() {
    if (search) {
      if (searched) return;
      const found = await searchTasks({ q: search, queue, state: taskState }, size, null, progress);
      [rows, cursor, searched] = [found.tasks, found.cursor, true];
    } else {
      ({ total, tasks: rows } = await fetchTasks(queue, taskState, pageNo, size));
    }
    render();
  }

  async function more() {
    try {
      const found = await searchTasks({ q: search, queue, state: taskState }, size, cursor, progress);
      rows = [...rows, ...found.tasks.filter((t) => !rows.some((r) => r.id === t.id))];
      cursor = found.cursor;
      render();
    } catch (error) {
      if (error.status !== 401) setError(error);
    }
  }

  async function load() {
    const stats = await api("GET", `/api/jobs/queue/${q(queue)}`);
    showStats(stats);
    shownCount = stats[taskState];
    await loadList();
  }

  const view = { load, setError };
  const reloadList = throttle(() => {
    if (state.view === view) loadList().catch((error) => error.status !== 401 && setError(error));
  }, 1000);
  // The live stream: the figures follow at once; the list reloads (at most once a second) when its state's count moves.
  view.onStats = (all) => {
    const stats = listOf(all, "queues").find((s) => s.queue === queue);
    if (!stats) return;
    showStats(stats);
    if (!search && shownCount !== null && stats[taskState] !== shownCount) reloadList();
    shownCount = stats[taskState];
  };
  view.invalidate = () => (searched = false);
  return view;
}

// The buttons of one task in a list: run now, archive, cancel (a running one), delete, as its state allows, each
// confirmed first.
function taskButtons(queue, t) {
  return [
    RUNNABLE.includes(t.state) ? adminButton("Run", { "data-action": "run" }, () => runTask(queue, t)) : null,
    ARCHIVABLE.includes(t.state) ? adminButton("Archive", { "data-action": "archive", class: "secondary" }, () => archiveTask(queue, t)) : null,
    t.state === "active" ? adminButton("Cancel", { "data-action": "cancel", class: "danger" }, () => cancelTask(queue, t)) : null,
    t.state !== "active" ? adminButton("Delete", { "data-action": "delete", class: "danger" }, async () => {
      if (await confirmAction(`Delete task ${t.id}? This cannot be undone.`)) act("Delete", async () => (await actions.remove(queue, t.id), `Task ${t.id} deleted`));
    }) : null,
  ];
}

async function runTask(queue, t) {
  if (await confirmAction(`Run task ${t.id} now?`)) act("Run", async () => (await actions.run(queue, t.id), `Task ${t.id} will run now`));
}

async function archiveTask(queue, t) {
  if (await confirmAction(`Archive task ${t.id}? It can run again later.`)) act("Archive", async () => (await actions.archive(queue, t.id), `Task ${t.id} archived`));
}

async function cancelTask(queue, t) {
  const how = t.state === "active" ? "Its handler is interrupted within a second; the task" : "The task";
  if (!(await confirmAction(`Cancel task ${t.id}? ${how} ends canceled, in the archive, and is not retried.`))) return;
  act("Cancel", async () => {
    const answer = await actions.cancel(queue, t.id);
    return answer && answer.status === "canceling" ? `Task ${t.id} is being canceled` : `Task ${t.id} canceled`;
  });
}

function taskRow(queue, taskState, t, keep) {
  const when = { pending: t.enqueued_at, active: t.enqueued_at, scheduled: t.next_process_at, retry: t.next_process_at, archived: t.last_failed_at, completed: t.completed_at }[taskState];
  return el("tr", { "data-task": t.id },
    isAdmin() ? el("td", {}, el("input", { type: "checkbox", "data-select": t.id, "aria-label": `Select ${t.id}`, checked: keep.has(t.id) })) : null,
    el("td", { class: "mono" }, el("a", { href: `#/task/${q(queue)}/${q(t.id)}` }, short(t.id, 12))),
    el("td", {}, t.task),
    el("td", { class: "mono payload" }, short(JSON.stringify(t.payload), 80)),
    el("td", { class: "num" }, `${t.retried}/${t.max_retries}`),
    el("td", { class: "error-text" }, short(t.last_error || "", 120)),
    el("td", {}, fmtTime(when)),
    isAdmin() ? el("td", { class: "actions" }, taskButtons(queue, { ...t, state: t.state || taskState })) : null);
}

// -- search every task ----------------------------------------------------------------------------------------------
function searchView(root, parts, params) {
  const criteria = { q: params.get("q") || "", queue: params.get("queue") || "", state: params.get("state") || "", task: params.get("task") || "" };
  const setError = page(root, "Search every task");
  const text = el("input", { type: "search", id: "search-text", value: criteria.q, placeholder: "id prefix, task type, payload or error text", "aria-label": "Search every task" });
  const queueSelect = el("select", { id: "search-queue", "aria-label": "Queue" }, el("option", { value: "" }, "every queue"));
  const stateSelect = el("select", { id: "search-state", "aria-label": "State" }, el("option", { value: "" }, "every state"),
    STATES.map((s) => el("option", { value: s, selected: s === criteria.state }, s)));
  const taskSelect = el("select", { id: "search-task", "aria-label": "Task type" }, el("option", { value: "" }, "any task type"));
  const form = el("form", { class: "search", role: "search", id: "search-form", onsubmit: (event) => {
    event.preventDefault();
    const next = new URLSearchParams({ q: text.value.trim(), queue: queueSelect.value, state: stateSelect.value, task: taskSelect.value });
    for (const [key, value] of [...next]) if (!value) next.delete(key);
    go(`#/search?${next}`);
  } }, text, queueSelect, stateSelect, taskSelect, el("button", { type: "submit" }, "Search"));
  const status = el("p", { class: "summary", id: "search-status", role: "status" });
  const bulk = el("div", { class: "bulk" });
  const results = table([isAdmin() ? el("input", { type: "checkbox", "aria-label": "Select all", id: "select-all" }) : null,
    "Queue", "State", "ID", "Task", "Payload", "Last error", isAdmin() ? "Actions" : null].filter(Boolean));
  results.node.id = "results";
  const moreButton = el("button", { type: "button", class: "secondary", hidden: true, "data-more": "" }, "Show more");
  append(root, form, status, bulk, results.node, moreButton);
  const selectAll = results.node.querySelector("#select-all");
  if (selectAll) selectAll.addEventListener("change", () => {
    for (const box of results.body.querySelectorAll("input[data-select]")) box.checked = selectAll.checked;
  });

  let rows = [];
  let cursor = null;
  let looked = 0;
  let searched = false;
  const wanted = Boolean(criteria.q || criteria.task || criteria.queue || criteria.state);
  const chosen = () => {
    const ids = new Set([...results.body.querySelectorAll("input[data-select]:checked")].map((box) => box.dataset.select));
    return rows.filter((t) => ids.has(t.id));
  };
  if (isAdmin()) {
    for (const [label, action, attrs, question] of [
      ["Run selected", "run", { "data-action": "run-selected" }, (n) => `Run ${n} selected task(s) now?`],
      ["Archive selected", "archive", { "data-action": "archive-selected", class: "secondary" }, (n) => `Archive ${n} selected task(s)?`],
      ["Delete selected", "delete", { "data-action": "delete-selected", class: "danger" }, (n) => `Delete ${n} selected task(s)? This cannot be undone.`],
    ]) {
      append(bulk, el("button", { type: "button", ...attrs, onclick: async () => {
        const tasks = chosen();
        if (tasks.length && (await confirmAction(question(tasks.length)))) act(label, async () => bulkText(await bulkIds(action, tasks), action));
      } }, label));
    }
  }

  function render() {
    const keep = new Set([...results.body.querySelectorAll("input[data-select]:checked")].map((box) => box.dataset.select));
    replace(results.body, rows.length ? rows.map((t) => el("tr", { "data-task": t.id, "data-queue": t.queue },
      isAdmin() ? el("td", {}, el("input", { type: "checkbox", "data-select": t.id, "aria-label": `Select ${t.id}`, checked: keep.has(t.id) })) : null,
      el("td", {}, el("a", { href: `#/queue/${q(t.queue)}?state=${q(t.state)}` }, t.queue)),
      el("td", { "data-col": "state" }, el("span", { class: `badge ${t.state}` }, t.state)),
      el("td", { class: "mono" }, el("a", { href: `#/task/${q(t.queue)}/${q(t.id)}` }, short(t.id, 12))),
      el("td", {}, t.task),
      el("td", { class: "mono payload" }, short(JSON.stringify(t.payload), 80)),
      el("td", { class: "error-text" }, short(t.last_error || "", 120)),
      isAdmin() ? el("td", { class: "actions" }, taskButtons(t.queue, t)) : null))
      : el("tr", {}, el("td", { colspan: 8, class: "empty" }, wanted ? "No task matches." : "Type what you remember of a task: a word of its payload or error, its type, the start of its id.")));
    status.textContent = wanted ? `${rows.length} task(s) found · ${looked} looked at${cursor ? " · there may be more" : " · every task looked at"}` : "";
    moreButton.hidden = !cursor;
  }

  async function run(from) {
    const params = { q: criteria.q, queue: criteria.queue, state: criteria.state, task: criteria.task };
    const found = await searchTasks(params, 50, from, (n) => (status.textContent = `Searching… ${looked + n} task(s) looked at`));
    rows = from ? [...rows, ...found.tasks.filter((t) => !rows.some((r) => r.id === t.id))] : found.tasks;
    looked = (from ? looked : 0) + found.looked;
    cursor = found.cursor;
    render();
  }
  moreButton.addEventListener("click", () => run(cursor).catch((error) => error.status !== 401 && setError(error)));

  async function load() {
    if (queueSelect.options.length === 1) {
      const [stats, types] = await Promise.all([api("GET", "/api/jobs/stats"), api("GET", "/api/system/task-types")]);
      append(queueSelect, listOf(stats, "queues").map((s) => el("option", { value: s.queue, selected: s.queue === criteria.queue }, s.queue)));
      append(taskSelect, listOf(types, "task_types").map((t) => el("option", { value: t.task, selected: t.task === criteria.task }, t.task)));
    }
    if (!wanted) return render();
    if (!searched) {
      searched = true;
      await run(null);
    }
  }
  const view = { load, setError, invalidate: () => (searched = false) };
  return view;
}

// -- task types -----------------------------------------------------------------------------------------------------
function fmtSeconds(seconds) {
  return seconds === null || seconds === undefined ? "—" : fmtMs(Math.round(seconds * 1000));
}

function typesView(root) {
  const setError = page(root, "Task types");
  const list = table(["Task", "Queue", "Retries", "Timeout", "Limits", "Sensitive", "API", "Served by"]);
  list.node.id = "task-types";
  append(root, el("p", { class: "summary" }, "Every task of jobs.yaml and the live workers that run it (they consume its queue and declared it)."), list.node);
  async function load() {
    const types = listOf(await api("GET", "/api/system/task-types"), "task_types");
    replace(list.body, types.length ? types.map((t) => {
      const limits = [t.unique_seconds != null ? `unique ${fmtSeconds(t.unique_seconds)}${t.unique_key ? ` by ${t.unique_key}` : ""}` : null,
        t.rate_limit ? `rate ${t.rate_limit}` : null, t.concurrency != null ? `concurrency ${t.concurrency}` : null].filter(Boolean);
      const workers = listOf(t.workers);
      return el("tr", { "data-task": t.task, "data-served": String(t.served) },
        el("th", { scope: "row", class: "mono" }, t.task),
        el("td", {}, el("a", { href: `#/queue/${q(t.queue)}` }, t.queue)),
        el("td", { class: "num" }, t.max_retries),
        el("td", {}, fmtSeconds(t.timeout_seconds)),
        el("td", { "data-col": "limits" }, limits.join(", ") || "none"),
        el("td", { "data-col": "sensitive", class: "mono" }, listOf(t.sensitive).join(", ") || "—"),
        el("td", {}, t.api ? "yes" : "no"),
        el("td", { "data-col": "workers" }, workers.length
          ? el("ul", { class: "step-tasks" }, workers.map((w) => el("li", { "data-worker": w.id }, `${w.host || "?"}:${w.pid ?? "?"}`)))
          : el("span", { class: "badge unserved" }, "no live worker")));
    }) : el("tr", {}, el("td", { colspan: 8, class: "empty" }, "No tasks declared.")));
  }
  return { load, setError };
}

// -- task detail ----------------------------------------------------------------------------------------------------
// What the handler reported with jobkit.progress(): a bar (indeterminate without a total) and "done / total (percent) · note".
function progressNode(p) {
  if (!p) return el("span", { "data-field": "progress", class: "muted" }, "—");
  const done = Number(p.done) || 0;
  const known = typeof p.total === "number" && p.total > 0;
  const figures = known ? `${done.toLocaleString()} / ${p.total.toLocaleString()} (${p.percent ?? 0} %)` : done.toLocaleString();
  const bar = el("progress", { class: "progress-bar", max: known ? p.total : null, value: known ? Math.min(done, p.total) : null, "aria-label": "Progress" });
  return el("div", { class: "progress", "data-field": "progress", "data-done": done, "data-total": p.total ?? "", "data-percent": p.percent ?? "" },
    bar, el("span", {}, figures, p.note ? ` · ${p.note}` : ""),
    p.updated_at ? el("span", { class: "muted" }, ` · updated ${fmtTime(p.updated_at)}`) : null);
}

function taskView(root, parts) {
  const [queue, id] = parts;
  const reader = state.claims.role !== "user"; // a user token reads its own tasks, not the queue or the type's limits
  const setError = page(root, "Task", reader ? el("a", { href: `#/queue/${q(queue)}`, class: "button secondary" }, `‹ ${queue}`) : null);
  const details = el("dl", { class: "details", id: "task" });
  const buttons = el("div", { class: "bulk" });
  const limits = el("dl", { class: "details", id: "limits" });
  append(root, buttons, details, reader ? el("section", { class: "card" }, el("h2", {}, "Limits"), limits) : null);
  let tick = null;

  async function load() {
    clearTimeout(tick);
    const t = await api("GET", `/api/jobs/task/${q(queue)}/${q(id)}`);
    const rows = [
      ["ID", t.id], ["Queue", t.queue], ["Task", t.task], ["State", t.state],
      ["Retried", `${t.retried} of ${t.max_retries}`], ["Enqueued", fmtTime(t.enqueued_at)],
      ["Next attempt", fmtTime(t.next_process_at)], ["Last failed", fmtTime(t.last_failed_at)],
      ["Completed", fmtTime(t.completed_at)],
    ];
    if (t.canceled_by) rows.push(["Canceled by", t.canceled_by]);
    replace(details, rows.map(([k, v]) => [el("dt", {}, k), el("dd", { "data-field": k.toLowerCase().replace(/ /g, "_") }, v)]),
      el("dt", {}, "Progress"), el("dd", {}, progressNode(t.progress)),
      el("dt", {}, "Payload"), el("dd", {}, el("pre", { "data-field": "payload" }, json(t.payload))),
      el("dt", {}, "Result"), el("dd", {}, el("pre", { "data-field": "result" }, t.result === null || t.result === undefined ? "—" : json(t.result))),
      el("dt", {}, "Last error"), el("dd", {}, el("pre", { "data-field": "error", class: "error-text" }, t.last_error || "—")));
    replace(buttons,
      RUNNABLE.includes(t.state) ? adminButton("Run now", { "data-action": "run" }, () => runTask(queue, t)) : null,
      ARCHIVABLE.includes(t.state) ? adminButton("Archive", { "data-action": "archive", class: "secondary" }, () => archiveTask(queue, t)) : null,
      CANCELABLE.includes(t.state) ? adminButton("Cancel task", { "data-action": "cancel", class: "danger" }, () => cancelTask(queue, t)) : null,
      t.state !== "active" ? adminButton("Delete", { "data-action": "delete", class: "danger" }, async () => {
        if (!(await confirmAction(`Delete task ${t.id}? This cannot be undone.`))) return;
        try {
          await actions.remove(queue, t.id);
          flash(`Task ${t.id} deleted`, "ok");
          go(`#/queue/${q(queue)}?state=${t.state}`);
        } catch (error) {
          if (error.status !== 401) flash(`Delete failed: ${error.detail}`, "error");
        }
      }) : null);
    if (reader) await loadLimits(limits, t.task);
    // A running task's progress moves without changing any count: read it again every second while it runs (unless
    // the refresh is off), until it ends.
    if (t.state === "active" && updatesMode() !== "0" && state.view === view) tick = setTimeout(() => state.view === view && refresh(), PROGRESS_POLL_MS);
  }
  const view = { load, setError };
  // The live stream: the task is read again (at most once a second) when a count of its queue moves.
  const reload = throttle(() => state.view === view && refresh(), 1000);
  view.onChanges = (data) => {
    if (listOf(data, "queues").some((change) => change.queue === queue)) reload();
  };
  return view;
}

// The unique / rate_limit / concurrency settings of a task type and their current use.
async function loadLimits(node, task) {
  let limits;
  try {
    limits = await api("GET", `/api/jobs/limits/${q(task)}`);
  } catch (error) {
    if (error.status === 401) throw error;
    replace(node, el("dt", {}, "Limits"), el("dd", { "data-field": "limits" }, `unavailable (${error.detail || error.message})`));
    return;
  }
  if (limits.unique == null && limits.rate_limit == null && limits.concurrency == null) {
    replace(node, el("dt", {}, "Limits"), el("dd", { "data-field": "limits" }, "none"));
    return;
  }
  const value = (v) => (v === null || v === undefined ? "none" : v);
  const rows = [
    ["unique", "Unique (s)", limits.unique == null ? "none" : `${limits.unique} s`],
    ["unique_key", "Unique key", limits.unique == null ? "none" : value(limits.unique_key ?? "(whole payload)")],
    ["rate_limit", "Rate limit", value(limits.rate_limit)],
    ["concurrency", "Concurrency", value(limits.concurrency)],
    ["running", "Running now", value(limits.running)],
    ["starts_in_window", "Starts in window", value(limits.starts_in_window)],
  ];
  replace(node, rows.map(([key, label, v]) => [el("dt", {}, label), el("dd", { "data-limit": key }, v)]));
}

// -- workflows ------------------------------------------------------------------------------------------------------
function workflowForm() {
  const input = el("input", { name: "workflow", id: "workflow-id", required: true, placeholder: "run id", autocomplete: "off", "aria-label": "Workflow run id" });
  return el("form", { class: "search", id: "workflow-form", onsubmit: (event) => {
    event.preventDefault();
    const id = input.value.trim();
    if (id) go(`#/workflow/${q(id)}`);
  } }, input, el("button", { type: "submit" }, "Open workflow run"));
}

function workflowView(root, parts) {
  const id = parts[0] || "";
  const badge = el("span", { class: "badge", id: "workflow-status" });
  const setError = page(root, `Workflow ${id}`, badge);
  const details = el("dl", { class: "details", id: "workflow" });
  const steps = table(["Step", "Group", "State", "Tasks"]);
  steps.node.id = "steps";
  append(root, details, el("h2", {}, "Steps"), steps.node);

  async function load() {
    const wf = await api("GET", `/api/jobs/workflows/${q(id)}`);
    badge.className = `badge ${wf.status}`;
    badge.textContent = wf.status;
    const failedTask = wf.failed_task && wf.failed_task.id && wf.failed_task.queue
      ? el("a", { href: `#/task/${q(wf.failed_task.queue)}/${q(wf.failed_task.id)}` }, `${wf.failed_task.queue} / ${wf.failed_task.id}`)
      : "—";
    const rows = [
      ["ID", "id", wf.id], ["Name", "name", wf.name], ["Status", "status", wf.status],
      ["Failed step", "failed_step", wf.failed_step ?? "—"], ["Failed task", "failed_task", failedTask],
      ["Created", "created", fmtTime(wf.created_at)], ["Finished", "finished", fmtTime(wf.finished_at)],
    ];
    replace(details, rows.map(([label, key, v]) => [el("dt", {}, label), el("dd", { "data-field": key }, v)]),
      el("dt", {}, "Error"), el("dd", {}, el("pre", { "data-field": "error", class: "error-text" }, wf.error || "—")),
      el("dt", {}, "Input"), el("dd", {}, el("pre", { "data-field": "input" }, json(wf.input ?? null))),
      el("dt", {}, "Result"), el("dd", {}, el("pre", { "data-field": "result" }, json(wf.result ?? null))));
    const list = listOf(wf.steps);
    replace(steps.body, list.length ? list.map((s) => el("tr", { "data-step": s.index },
      el("td", { class: "num" }, s.index), el("td", { "data-col": "group" }, s.group ? "yes" : "no"),
      el("td", { "data-col": "state" }, el("span", { class: `badge ${s.state}` }, s.state)),
      el("td", {}, el("ul", { class: "step-tasks" }, listOf(s.tasks).map((t) => el("li", { "data-task": t.task },
        t.id && t.queue ? el("a", { href: `#/task/${q(t.queue)}/${q(t.id)}` }, t.task) : el("span", {}, t.task),
        " ", el("span", { class: "muted", "data-col": "task-state" }, t.state || "—")))))))
      : el("tr", {}, el("td", { colspan: 4, class: "empty" }, "No steps.")));
  }
  return { load, setError };
}

// -- schedules ------------------------------------------------------------------------------------------------------
function schedulesView(root) {
  const setError = page(root, "Schedules");
  const list = table(["ID", "Task", "Spec", "Queue", "Timezone", "Source", "Next run", "Last run", "Payload", isAdmin() ? "Actions" : null].filter(Boolean));
  list.node.id = "schedules";
  append(root, list.node);
  if (isAdmin()) append(root, scheduleForm());

  async function load() {
    const entries = listOf(await api("GET", "/api/jobs/schedules"), "schedules", "entries", "items");
    replace(list.body, entries.length ? entries.map((s) => el("tr", { "data-schedule": s.id },
      el("td", { class: "mono" }, s.id), el("td", {}, s.task), el("td", { class: "mono" }, s.spec),
      el("td", {}, s.queue || "(task's)"), el("td", {}, s.timezone || "UTC"), el("td", {}, s.source || "—"),
      el("td", {}, fmtTime(s.next_run_at)), el("td", {}, fmtTime(s.last_run_at)),
      el("td", { class: "mono payload" }, short(JSON.stringify(s.payload || {}), 60)),
      isAdmin() ? el("td", {}, s.source === "api" ? adminButton("Remove", { "data-action": "remove", class: "danger" }, async () => {
        if (await confirmAction(`Remove schedule ${s.id}?`)) act("Remove", async () => (await api("DELETE", `/api/jobs/schedules/${q(s.id)}`), `Schedule ${s.id} removed`));
      }) : el("span", { class: "muted" }, "in code")) : null))
      : el("tr", {}, el("td", { colspan: 10, class: "empty" }, "No schedules.")));
  }
  return { load, setError };
}

function scheduleForm() {
  const field = (label, input) => el("label", {}, el("span", {}, label), input);
  const task = el("input", { name: "task", required: true, placeholder: "email:send", autocomplete: "off" });
  const payload = el("textarea", { name: "payload", rows: 3, placeholder: '{"to": "a@b.c"}', spellcheck: "false" });
  const kind = el("select", { name: "kind" }, el("option", { value: "once" }, "one time, at"), el("option", { value: "cron" }, "recurring, cron"), el("option", { value: "every" }, "recurring, every"));
  const at = el("input", { name: "at", type: "datetime-local", step: 1 });
  const spec = el("input", { name: "spec", placeholder: "0 2 * * *  or  @daily 3:00", hidden: true });
  const every = el("input", { name: "every", placeholder: "5m", hidden: true });
  const queue = el("input", { name: "queue", placeholder: "(the task's queue)" });
  const timezone = el("input", { name: "timezone", placeholder: "UTC" });
  const syncKind = () => {
    at.hidden = kind.value !== "once";
    spec.hidden = kind.value !== "cron";
    every.hidden = kind.value !== "every";
  };
  kind.addEventListener("change", syncKind);
  const form = el("form", { class: "card form", id: "schedule-form", onsubmit: async (event) => {
    event.preventDefault();
    let body;
    try {
      body = { task: task.value.trim(), payload: payload.value.trim() ? JSON.parse(payload.value) : {} };
    } catch (error) {
      flash(`The payload is not JSON: ${error.message}`, "error");
      return;
    }
    if (queue.value.trim()) body.queue = queue.value.trim();
    if (kind.value === "once") {
      if (!at.value) return flash("Pick a time", "error");
      body.at = new Date(at.value).toISOString();
    } else {
      if (timezone.value.trim()) body.timezone = timezone.value.trim();
      if (kind.value === "cron") body.cron = spec.value.trim();
      else body.every = every.value.trim();
    }
    await act("Add schedule", async () => {
      const created = await api("POST", "/api/jobs/schedules", body);
      form.reset();
      syncKind();
      return `Schedule ${(created && created.id) || ""} added`;
    });
  } },
  el("h2", {}, "Add a schedule"),
  el("div", { class: "fields" }, field("Task", task), field("When", kind), field("At / spec", el("span", {}, at, spec, every)),
    field("Queue", queue), field("Timezone", timezone), field("Payload (JSON)", payload)),
  el("button", { type: "submit" }, "Add schedule"));
  return form;
}

// -- workers and Redis ----------------------------------------------------------------------------------------------
function missingRoute(error) {
  return error.status === 404 || error.status === 405;
}

function workersView(root) {
  const setError = page(root, "Workers");
  const list = table(["Worker", "Host", "PID", "Queues", "Started", "Last heartbeat", "Busy"]);
  list.node.id = "workers";
  append(root, list.node);
  async function load() {
    let workers;
    try {
      workers = listOf(await api("GET", "/api/system/workers"), "workers");
    } catch (error) {
      if (!missingRoute(error)) throw error;
      replace(list.body, el("tr", {}, el("td", { colspan: 7, class: "empty" }, "This API has no workers route.")));
      return;
    }
    replace(list.body, workers.length ? workers.map((w) => el("tr", { "data-worker": w.id },
      el("td", { class: "mono" }, short(w.id, 12)), el("td", {}, w.host || "—"), el("td", { class: "num" }, w.pid ?? "—"),
      el("td", {}, (w.queues || []).join(", ") || "—"), el("td", {}, fmtTime(w.started_at)),
      el("td", {}, fmtTime(w.last_heartbeat_at)),
      el("td", { class: "num" }, w.threads ? `${w.busy} / ${w.threads}` : String(w.busy ?? "—"))))
      : el("tr", {}, el("td", { colspan: 7, class: "empty" }, "No live workers.")));
  }
  return { load, setError };
}

function redisView(root) {
  const setError = page(root, "Redis");
  const details = el("dl", { class: "details", id: "redis" });
  append(root, details);
  const labels = [["version", "Version"], ["mode", "Mode"], ["uptime_seconds", "Uptime (s)"], ["used_memory_human", "Memory used"],
    ["used_memory_peak_human", "Memory peak"], ["maxmemory_human", "Memory limit"], ["connected_clients", "Clients"],
    ["keys", "Keys in namespace"], ["namespace", "Namespace"], ["jobkit_memory_human", "jobkit's memory"]];
  async function load() {
    let info;
    try {
      info = await api("GET", "/api/system/redis");
    } catch (error) {
      if (!missingRoute(error)) throw error;
      replace(details, el("dt", {}, "Redis"), el("dd", {}, "This API has no Redis info route."));
      return;
    }
    replace(details, labels.filter(([k]) => info[k] !== undefined && info[k] !== null)
      .map(([k, label]) => [el("dt", {}, label), el("dd", { "data-field": k }, info[k])]));
  }
  return { load, setError };
}

// -- start ----------------------------------------------------------------------------------------------------------
function start() {
  const fromHash = location.hash.match(/^#token=([^&]+)/);
  if (fromHash) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(fromHash[1]));
    history.replaceState(null, "", `${location.pathname}#/overview`); // keep the token out of the address bar
  }
  const interval = document.getElementById("refresh");
  interval.value = localStorage.getItem(REFRESH_KEY) || "live";
  if (!interval.value) interval.value = "live";
  interval.addEventListener("change", () => {
    localStorage.setItem(REFRESH_KEY, interval.value);
    scheduleUpdates();
  });
  document.getElementById("logout").addEventListener("click", () => logout());
  document.getElementById("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    login(document.getElementById("token-input").value);
    document.getElementById("token-input").value = "";
  });
  window.addEventListener("hashchange", route);
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) login(saved);
  else show();
}

start();
