// woflo ui: the run history, from the JSON API of `woflo ui` (no framework, no build step).
"use strict";

const STATES = ["pending", "running", "awaiting_retry", "completed", "cached", "failed",
  "crashed", "timed_out", "stopped", "upstream_failed"];
const OUTCOMES = ["completed", "failed", "crashed", "timed_out", "stopped", "running"];
const PAGE = 100;
const REFRESH_MS = 2000;

let refreshTimer = null;
let renderStarted = 0;
let generation = 0;  // one per route: a view drawn for an older one is dropped

// ---- helpers ------------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  return node;
}

async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) {
    const error = new Error(body.error || response.statusText);
    error.status = response.status;
    throw error;
  }
  return body;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 1) return `${(seconds * 1000).toFixed(seconds < 0.01 ? 2 : 0)} ms`;
  if (seconds < 120) return `${seconds.toFixed(2)} s`;
  return `${(seconds / 60).toFixed(1)} min`;
}

function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

function stateBadge(state) {
  return el("span", { class: `state ${state}`, text: state });
}

function runLink(runId) {
  return el("a", { href: `#/runs/${encodeURIComponent(runId)}`, class: "mono", text: runId });
}

class Superseded extends Error {}

function show(mine, ...nodes) {
  if (mine !== generation) throw new Superseded();  // (the user went elsewhere meanwhile)
  const view = document.getElementById("view");
  view.replaceChildren(...nodes);
}

function rendered(mine, view, extra) {
  // what the browser tests and benchmarks read: which view, drawn in how many ms
  if (mine !== generation) return;
  window.wofloRendered = Object.assign({ view, ms: performance.now() - renderStarted }, extra);
  document.body.dataset.rendered = view;
}

function setLive(on) {
  document.getElementById("live").classList.toggle("off", !on);
  clearInterval(refreshTimer);
  refreshTimer = null;
}

function failure(error) {
  const mine = generation;
  show(mine, el("h1", { text: error.status === 404 ? "Not found" : "Cannot read the history" }),
    el("p", { class: "error", id: "error", text: error.message }),
    el("p", {}, el("a", { href: "#/runs", text: "All runs" })));
  rendered(mine, "error");
}

// ---- the runs ----------------------------------------------------------------------------

function filtersFromHash(query) {
  const params = new URLSearchParams(query || "");
  return { task: params.get("task") || "", state: params.get("state") || "",
    program: params.get("program") || "" };
}

function runsQuery(filters, offset) {
  const params = new URLSearchParams();
  for (const key of ["task", "state", "program"]) if (filters[key]) params.set(key, filters[key]);
  params.set("limit", PAGE);
  params.set("offset", offset);
  return params.toString();
}

function runRow(run) {
  return el("tr", { "data-run-id": run.run_id, "data-state": run.state },
    el("td", {}, runLink(run.run_id)),
    el("td", { class: "task", text: run.task }),
    el("td", {}, stateBadge(run.state)),
    el("td", { class: "num", text: run.attempts }),
    el("td", { class: "num", text: duration(run.duration) }),
    el("td", { text: when(run.created_at) }),
    el("td", { class: "error", title: run.error || "", text: run.error || "" }));
}

async function runsView(query) {
  const mine = generation;
  const filters = filtersFromHash(query);
  const [status, tasks, programs] = await Promise.all([
    api("/api/status"), api("/api/tasks"), api("/api/programs?limit=200")]);
  document.getElementById("database").textContent = `history: ${status.database}`;
  if (!status.has_runs) {
    show(mine, el("div", { class: "empty", id: "empty" },
      el("h1", { text: "No runs recorded yet" }),
      el("p", {}, "Every run of a program that calls woflo tasks is recorded here by the ",
        el("code", { text: "history" }), " plugin, on by default (", el("code", {
          text: "WOFLO_HISTORY=off" }), " turns it off), in ", el("code", { text: status.database }),
        ". Run a program, for example:"),
      el("pre", { text: "from woflo import task\n\n@task\ndef hello(name):\n    return f\"hello {name}\"\n\nprint(hello(\"world\").get_result())" }),
      el("p", { class: "muted", text: "This page looks again every 2 seconds." })));
    rendered(mine, "empty");
    scheduleRefresh(() => runsView(query));
    return;
  }
  const choose = (name, values, labels) => el("select", { name, id: `filter-${name}`,
    onchange: (event) => applyFilter(name, event.target.value, filters) },
  el("option", { value: "", text: `any ${name}` }),
  values.map((value, i) => el("option", { value, selected: filters[name] === value,
    text: labels ? labels[i] : value })));
  const programLabels = programs.programs.map((p) =>
    `${when(p.started_at)}  ${p.argv.join(" ")}  (${p.runs} runs)`);
  const form = el("form", { class: "filters", onsubmit: (event) => event.preventDefault() },
    el("label", {}, "task", choose("task", tasks.tasks)),
    el("label", {}, "state", choose("state", STATES)),
    el("label", {}, "program", choose("program", programs.programs.map((p) => p.program_id),
      programLabels)),
    filters.program ? el("a", { href: `#/programs/${encodeURIComponent(filters.program)}`,
      id: "timeline-link", text: "timeline of this program" }) : null);
  const body = el("tbody", { id: "runs-body" });
  const more = el("button", { id: "more", type: "button", text: "Load more" });
  const table = el("table", { id: "runs" },
    el("thead", {}, el("tr", {}, ["run id", "task", "state", "attempts", "duration",
      "started", "error"].map((name) => el("th", { text: name })))), body);
  show(mine, el("h1", { text: "Runs" }), form, table, el("p", {}, more));
  let offset = 0;
  async function page() {
    const answer = await api(`/api/runs?${runsQuery(filters, offset)}`);
    body.append(...answer.runs.map(runRow));
    more.hidden = answer.next_offset === null;
    offset = answer.next_offset ?? offset;
    return answer;
  }
  more.addEventListener("click", () => page().catch(failure));
  const first = await page();
  if (!first.runs.length) body.append(el("tr", { id: "no-match" }, el("td", { colspan: 7,
    class: "muted", text: "No run matches these filters." })));
  rendered(mine, "runs", { rows: first.runs.length });
  scheduleRefresh(async () => {  // live: the newest page again, while nothing was paged in
    if (offset > PAGE) return;
    const answer = await api(`/api/runs?${runsQuery(filters, 0)}`);
    body.replaceChildren(...answer.runs.map(runRow));
    more.hidden = answer.next_offset === null;
    offset = answer.next_offset ?? answer.runs.length;
  });
}

function applyFilter(name, value, filters) {
  const next = Object.assign({}, filters, { [name]: value });
  const params = new URLSearchParams();
  for (const key of ["task", "state", "program"]) if (next[key]) params.set(key, next[key]);
  location.hash = `#/runs${params.toString() ? "?" + params : ""}`;
}

function scheduleRefresh(refresh) {
  document.getElementById("live").classList.remove("off");
  clearInterval(refreshTimer);  // (a view that draws itself again schedules once, not twice)
  const mine = generation;
  refreshTimer = setInterval(() => {
    if (document.hidden || mine !== generation) return;
    refresh().catch(() => {});
  }, REFRESH_MS);
}

// ---- one run -----------------------------------------------------------------------------

async function runView(runId) {
  const mine = generation;
  const run = await api(`/api/runs/${encodeURIComponent(runId)}`);
  const links = (ids) => ids.length ? ids.flatMap((id, i) => [i ? ", " : "", runLink(id)]) :
    [el("span", { class: "muted", text: "none" })];
  const facts = el("dl", { class: "facts" },
    el("dt", { text: "task" }), el("dd", { text: run.task }),
    el("dt", { text: "state" }), el("dd", {}, stateBadge(run.state)),
    el("dt", { text: "runner" }), el("dd", { text: run.runner }),
    el("dt", { text: "attempts" }), el("dd", { text: run.attempts }),
    el("dt", { text: "created" }), el("dd", { text: when(run.created_at) }),
    el("dt", { text: "ended" }), el("dd", { text: when(run.ended_at) }),
    el("dt", { text: "duration" }), el("dd", { text: duration(run.duration) }),
    el("dt", { text: "error" }), el("dd", { id: "run-error", text: run.error || "" }),
    el("dt", { text: "upstream" }), el("dd", { id: "upstream" }, links(run.upstream)),
    el("dt", { text: "downstream" }), el("dd", { id: "downstream" }, links(run.downstream)),
    el("dt", { text: "program" }), el("dd", {}, run.program ? el("a", {
      href: `#/programs/${encodeURIComponent(run.program.id)}`,
      text: `${(run.program.argv || []).join(" ")} (pid ${run.program.pid} on ${run.program.host})`,
    }) : ""));
  const attempts = el("table", { id: "attempts" },
    el("thead", {}, el("tr", {}, ["attempt", "started", "duration", "outcome", "pid", "error"]
      .map((name) => el("th", { text: name })))),
    el("tbody", {}, run.attempts_detail.map((a) => [
      el("tr", { "data-attempt": a.attempt },
        el("td", { class: "num", text: a.attempt }), el("td", { text: when(a.started_at) }),
        el("td", { class: "num", text: duration(a.duration) }),
        el("td", {}, a.outcome ? stateBadge(a.outcome) : stateBadge("running")),
        el("td", { class: "num", text: a.pid ?? "" }), el("td", { class: "error", text: a.error || "" })),
      a.traceback ? el("tr", {}, el("td", { colspan: 6 }, el("pre", { class: "traceback",
        text: a.traceback }))) : null])));
  show(mine, el("h1", {}, "Run ", el("span", { class: "mono", id: "run-id", text: run.run_id })),
    facts, el("h2", { text: "Attempts" }),
    run.attempts_detail.length ? attempts : el("p", { class: "muted", id: "no-attempts",
      text: run.state === "cached" ? "None: its value came from the cache." :
        "None: it never started." }));
  rendered(mine, "run");
  if (!["completed", "cached", "failed", "crashed", "timed_out", "stopped",
    "upstream_failed"].includes(run.state)) scheduleRefresh(() => runView(runId));
}

// ---- programs and their timelines ------------------------------------------------------------

async function programsView() {
  const mine = generation;
  const answer = await api("/api/programs?limit=200");
  show(mine, el("h1", { text: "Programs" }), el("table", { id: "programs" },
    el("thead", {}, el("tr", {}, ["started", "program", "host", "pid", "runs", "states"]
      .map((name) => el("th", { text: name })))),
    el("tbody", {}, answer.programs.map((p) => el("tr", { "data-program-id": p.program_id },
      el("td", {}, el("a", { href: `#/programs/${encodeURIComponent(p.program_id)}`,
        text: when(p.started_at) })),
      el("td", { class: "mono", text: p.argv.join(" ") }), el("td", { text: p.host }),
      el("td", { class: "num", text: p.pid }), el("td", { class: "num", text: p.runs }),
      el("td", {}, Object.entries(p.states).map(([s, n]) => [stateBadge(s), ` ${n} `])))))));
  rendered(mine, "programs");
  scheduleRefresh(programsView);
}

async function timelineView(programId) {
  const mine = generation;
  const data = await api(`/api/programs/${encodeURIComponent(programId)}/timeline`);
  const runsById = new Map(data.runs.map((r) => [r.run_id, r]));
  const now = Date.now() / 1000;
  const times = data.runs.flatMap((r) => [r.created_at, r.ended_at ?? now])
    .concat(data.attempts.map((a) => (a.started_at ?? now) + (a.duration ?? now - a.started_at)));
  const origin = Math.min(data.started_at, ...data.runs.map((r) => r.created_at));
  const span = Math.max(1e-3, Math.max(...times, origin) - origin);
  const lanes = [...new Set(data.attempts.map((a) => a.pid ?? "?"))].sort((a, b) => a - b);
  const laneOf = new Map(lanes.map((pid, i) => [pid, i]));
  const firstAttempt = new Map();
  for (const a of data.attempts) if (!firstAttempt.has(a.run_id)) firstAttempt.set(a.run_id, a);
  const LANE = 22, LEFT = 90, TOP = 24;
  let zoom = 1;
  const holder = el("div", { class: "chart", id: "chart" });

  function draw() {
    const width = Math.max(600, (holder.clientWidth || 1000) - 4) * zoom;
    const scale = (width - LEFT - 10) / span;
    const x = (t) => LEFT + (t - origin) * scale;
    const chart = svg("svg", { width, height: TOP + lanes.length * LANE + 10, id: "timeline" });
    for (let i = 0; i <= 10; i++) {
      const t = origin + (span * i) / 10;
      chart.append(svg("line", { class: "grid", x1: x(t), x2: x(t), y1: TOP - 6,
        y2: TOP + lanes.length * LANE }));
      const label = svg("text", { class: "axis", x: x(t) + 2, y: 12 });
      label.textContent = `${((t - origin)).toFixed(span < 10 ? 2 : 0)} s`;
      chart.append(label);
    }
    lanes.forEach((pid, i) => {
      chart.append(svg("rect", { class: "lane", x: LEFT, y: TOP + i * LANE, width: width - LEFT,
        height: LANE - 4 }));
      const label = svg("text", { class: "lane-label", x: 4, y: TOP + i * LANE + 14 });
      label.textContent = `pid ${pid}`;
      chart.append(label);
    });
    const fragment = document.createDocumentFragment();
    for (const [runId, a] of firstAttempt) {  // the wait: from the call to the first attempt
      const run = runsById.get(runId);
      if (!run || a.started_at === null || a.started_at - run.created_at < span / 2000) continue;
      const y = TOP + laneOf.get(a.pid ?? "?") * LANE + (LANE - 4) / 2;
      fragment.append(svg("line", { class: "wait", x1: x(run.created_at), x2: x(a.started_at),
        y1: y, y2: y, "data-run-id": runId }));
    }
    for (const a of data.attempts) {
      if (a.started_at === null) continue;
      const outcome = a.outcome || "running";
      const bar = svg("rect", { class: `bar ${outcome}`, x: x(a.started_at),
        y: TOP + laneOf.get(a.pid ?? "?") * LANE + 2,
        width: Math.max(1, (a.duration ?? (Date.now() / 1000 - a.started_at)) * scale),
        height: LANE - 8, "data-run-id": a.run_id, "data-attempt": a.attempt });
      const tip = svg("title", {});
      const run = runsById.get(a.run_id);
      tip.textContent = `${run ? run.task : ""} ${a.run_id} attempt ${a.attempt}: ${outcome}, ` +
        `${duration(a.duration)}`;
      bar.append(tip);
      fragment.append(bar);
    }
    chart.append(fragment);
    chart.addEventListener("click", (event) => {
      const runId = event.target.getAttribute && event.target.getAttribute("data-run-id");
      if (runId) location.hash = `#/runs/${encodeURIComponent(runId)}`;
    });
    holder.replaceChildren(chart);
  }

  const zoomBy = (factor) => { zoom = Math.min(200, Math.max(1, zoom * factor)); draw(); };
  holder.addEventListener("wheel", (event) => {
    if (!event.ctrlKey && !event.metaKey && !event.altKey) return;
    event.preventDefault();
    zoomBy(event.deltaY < 0 ? 1.25 : 0.8);
  }, { passive: false });
  const toolbar = el("div", { class: "toolbar" },
    el("button", { id: "zoom-in", type: "button", text: "zoom in", onclick: () => zoomBy(2) }),
    el("button", { id: "zoom-out", type: "button", text: "zoom out", onclick: () => zoomBy(0.5) }),
    el("button", { id: "zoom-reset", type: "button", text: "reset", onclick: () => { zoom = 1; draw(); } }),
    el("span", { class: "muted", text: "(or Alt + wheel)" }),
    el("span", { class: "legend" }, OUTCOMES.map((o) => el("span", {}, el("i", { class: o }), o))));

  const summary = new Map();
  for (const run of data.runs) {
    const row = summary.get(run.task) || { task: run.task, runs: 0, attempts: 0, total: 0,
      max: 0, states: {} };
    row.runs += 1; row.attempts += run.attempts;
    if (run.ended_at !== null) {  // (durations of the runs that ended)
      const spent = run.ended_at - run.created_at;
      row.ended = (row.ended || 0) + 1; row.total += spent; row.max = Math.max(row.max, spent);
    }
    row.states[run.state] = (row.states[run.state] || 0) + 1;
    summary.set(run.task, row);
  }
  const summaryTable = el("table", { id: "summary" },
    el("thead", {}, el("tr", {}, ["task", "runs", "attempts", "states", "total", "mean", "max"]
      .map((name) => el("th", { text: name })))),
    el("tbody", {}, [...summary.values()].map((r) => el("tr", { "data-task": r.task },
      el("td", { text: r.task }), el("td", { class: "num", text: r.runs }),
      el("td", { class: "num", text: r.attempts }),
      el("td", {}, Object.entries(r.states).map(([s, n]) => [stateBadge(s), ` ${n} `])),
      el("td", { class: "num", text: duration(r.total) }),
      el("td", { class: "num", text: r.ended ? duration(r.total / r.ended) : "" }),
      el("td", { class: "num", text: duration(r.max) })))));
  show(mine, el("h1", {}, "Timeline of program ", el("span", { class: "mono", text: programId })),
    el("p", { class: "muted" }, `${data.runs.length} runs, ${data.attempts.length} attempts, ` +
      `${lanes.length} worker processes, ${duration(span)}. `,
    el("a", { href: `#/runs?program=${encodeURIComponent(programId)}`, text: "its runs" })),
    toolbar, holder, el("h2", { text: "Per task" }), summaryTable);
  draw();
  rendered(mine, "timeline", { bars: data.attempts.filter((a) => a.started_at !== null).length });
  if (data.runs.some((r) => r.ended_at === null)) scheduleRefresh(() => timelineView(programId));
}

// ---- routing ---------------------------------------------------------------------------------

async function route() {
  setLive(false);
  renderStarted = performance.now();
  generation += 1;
  document.body.dataset.rendered = "";
  const [path, query] = (location.hash.slice(1) || "/runs").split("?");
  try {
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    if (parts[0] === "runs" && parts.length === 2) await runView(parts[1]);
    else if (parts[0] === "programs" && parts.length === 2) await timelineView(parts[1]);
    else if (parts[0] === "programs") await programsView();
    else await runsView(query);
  } catch (error) {
    if (!(error instanceof Superseded)) failure(error);
  }
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", route);
