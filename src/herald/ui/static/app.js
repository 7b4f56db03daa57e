// Herald's web UI: a hash-routed page over /api/v1, refreshed by polling. No build step.
"use strict";

const TOKEN_KEY = "herald.token";
const POLL_MS = 1500;
const $ = (sel, root = document) => root.querySelector(sel);

// -- helpers ------------------------------------------------------------------------------------

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
const enc = encodeURIComponent;
// A name (a DAG id, a run type) may wrap after "_", "." or "-" but not inside a word: its
// cell is `td.name`, which breaks a word only when it cannot fit at all.
const words = (name) => esc(name).replace(/([_.-])/g, "$1<wbr>");
const badge = (state) => `<span class="badge s-${esc(state)}">${esc(String(state).replace(/_/g, " "))}</span>`;
const runLink = (runId, text) => `<a href="#/runs/${enc(runId)}" class="mono">${esc(text ?? runId)}</a>`;
const eventLink = (id) => `<a href="#/events/${id}" class="event-link">event ${id}</a>`;
const json = (value) => esc(JSON.stringify(value, null, 2));

function ago(iso) {
  if (!iso) return "";
  const s = (Date.now() - new Date(iso).getTime()) / 1000;
  if (s < 1) return "just now";
  if (s < 60) return `${Math.round(s)}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return new Date(iso).toLocaleString();
}

function duration(start, end) {
  if (!start) return "";
  const ms = (end ? new Date(end) : new Date()) - new Date(start);
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)}m ${Math.round((ms % 60000) / 1000)}s`;
}

function toast(message, bad = false) {
  const el = $("#toast");
  el.textContent = message;
  el.className = bad ? "toast bad" : "toast";
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 4000);
}

// -- the API ------------------------------------------------------------------------------------

class ApiError extends Error {}

async function api(path, options = {}) {
  const token = localStorage.getItem(TOKEN_KEY);
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`/api/v1${path}`, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  if (response.status === 401) {
    localStorage.removeItem(TOKEN_KEY);
    showLogin("Your token is missing or no longer valid.");
    throw new ApiError("unauthorized");
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const message = data && data.message ? data.message + (data.hint ? ` (${data.hint})` : "") : response.statusText;
    throw new ApiError(message);
  }
  return data;
}

async function act(button, path, body, done) {
  button.disabled = true;
  try {
    const result = await api(path, { method: "POST", body });
    if (done) done(result);
    refreshNow();
  } catch (err) {
    if (!(err instanceof ApiError && err.message === "unauthorized")) toast(err.message, true);
  } finally {
    button.disabled = false;
  }
}

// -- pictures: the task graph, the Gantt bars, the events chart --------------------------------

// Task ids are user text ("constructor", "__proto__"...): every lookup by id is a Map, never a plain object.
function graphSvg(tasks, states = new Map(), { selected = null, clickable = false, compact = false } = {}) {
  if (!tasks.length) return `<p class="muted">No tasks.</p>`;
  const byId = new Map(tasks.map((t) => [t.task_id, t]));
  const rank = new Map();
  const rankOf = (id, seen = new Set()) => {
    if (rank.has(id)) return rank.get(id);
    if (seen.has(id)) return 0;
    seen.add(id);
    const ups = (byId.get(id)?.upstream || []).filter((u) => byId.has(u));
    rank.set(id, ups.length ? Math.max(...ups.map((u) => rankOf(u, seen))) + 1 : 0);
    return rank.get(id);
  };
  tasks.forEach((t) => rankOf(t.task_id));
  const columns = [];
  tasks.forEach((t) => (columns[rank.get(t.task_id)] ||= []).push(t.task_id));
  const w = compact ? 112 : 150, h = compact ? 26 : 34, gx = compact ? 36 : 56, gy = compact ? 10 : 16, pad = 8;
  const pos = new Map();
  const tallest = Math.max(...columns.map((c) => c.length));
  columns.forEach((col, ci) => col.forEach((id, ri) => {
    const offset = ((tallest - col.length) * (h + gy)) / 2;
    pos.set(id, { x: pad + ci * (w + gx), y: pad + offset + ri * (h + gy) });
  }));
  const width = pad * 2 + columns.length * w + (columns.length - 1) * gx;
  const height = pad * 2 + tallest * h + (tallest - 1) * gy;
  let edges = "";
  tasks.forEach((t) => (t.upstream || []).forEach((u) => {
    if (!pos.has(u)) return;
    const a = pos.get(u), b = pos.get(t.task_id);
    const x1 = a.x + w, y1 = a.y + h / 2, x2 = b.x - 4, y2 = b.y + h / 2, mx = (x1 + x2) / 2;
    edges += `<path class="edge" marker-end="url(#arrow)" d="M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}"/>`;
  }));
  const label = (id) => (id.length > (compact ? 15 : 20) ? id.slice(0, compact ? 14 : 19) + "…" : id);
  const nodes = tasks.map((t) => {
    const p = pos.get(t.task_id);
    const state = states.get(t.task_id);
    const cls = `node t-${esc(state || "plain")}${clickable ? " clickable" : ""}${selected === t.task_id ? " selected" : ""}`;
    return `<g class="${cls}" data-task="${esc(t.task_id)}" transform="translate(${p.x},${p.y})"><title>${esc(t.task_id)}${state ? ": " + esc(state) : ""}</title>` +
      `<rect width="${w}" height="${h}" rx="6"/><text x="${w / 2}" y="${h / 2}">${esc(label(t.task_id))}</text></g>`;
  }).join("");
  return `<svg class="graph" role="img" aria-label="task graph" viewBox="0 0 ${width} ${height}" style="max-width:${width}px">` +
    `<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">` +
    `<path d="M0,0 L10,5 L0,10 z" fill="#98a2b3"/></marker></defs>${edges}${nodes}</svg>`;
}

function gantt(run) {
  const tasks = run.tasks || [];
  if (!tasks.length) return `<p class="muted">No task has started yet.</p>`;
  const t0 = new Date(run.started_at || run.queued_at).getTime();
  const ends = tasks.map((t) => (t.ended_at ? new Date(t.ended_at).getTime() : t.started_at ? Date.now() : t0));
  const t1 = Math.max(t0 + 1, ...ends, run.ended_at ? new Date(run.ended_at).getTime() : t0 + 1);
  const span = t1 - t0;
  const rows = tasks.map((t) => {
    let bar = "";
    if (t.started_at) {
      const s = new Date(t.started_at).getTime();
      const e = t.ended_at ? new Date(t.ended_at).getTime() : Date.now();
      const left = ((s - t0) / span) * 100, width = Math.max(((e - s) / span) * 100, 0.4);
      bar = `<div class="bar s-${esc(t.state)}${t.state === "running" ? " running-stripes" : ""}" style="left:${left.toFixed(2)}%;width:${width.toFixed(2)}%"></div>`;
    }
    // a mapped task's tries: one row per map index, named task[i]
    const name = t.map_index >= 0 ? `${t.task_id}[${t.map_index}]` : t.task_id;
    return `<div class="name"><a data-log="${esc(t.task_id)}" data-map="${esc(t.map_index ?? -1)}" class="task-link">${esc(name)}</a> ${badge(t.state)}</div>` +
      `<div class="track" title="${esc(name)}">${bar}</div><div class="small muted">${esc(duration(t.started_at, t.ended_at))}${t.try_number > 1 ? ` · try ${t.try_number}` : ""}</div>`;
  }).join("");
  return `<div class="gantt">${rows}</div><div class="row spread small muted" style="margin-top:6px;margin-left:180px;margin-right:100px"><span>0</span><span>${esc(duration(new Date(t0).toISOString(), new Date(t1).toISOString()))}</span></div>`;
}

// An asset's events over time: the stacked chart with one series.
function chartSvg(counts) {
  return stackedSvg(counts.map((c) => ({ start: c.start, values: { events: c.count } })), "events over time");
}

// Stacked bars: one bar per slice, one segment per series (a state, or events and dead letters).
const CHART_COLOURS = { success: "var(--success)", failed: "var(--failed)", running: "var(--running)", queued: "var(--queued)",
  up_for_retry: "var(--retry)", skipped: "#adb5bd", cancelled: "#495057", events: "var(--accent)", dead_letters: "var(--failed)", lag: "var(--retry)" };
function stackedSvg(slices, label, scale = (max) => `max ${max}/slice`) {
  const width = 640, height = 130, pad = 18;
  const totals = slices.map((s) => Object.values(s.values).reduce((a, b) => a + b, 0));
  const max = Math.max(1, ...totals);
  const bw = (width - pad * 2) / Math.max(slices.length, 1);
  const bars = slices.map((s, i) => {
    let y = height - pad;
    return Object.entries(s.values).filter(([, n]) => n > 0).map(([name, n]) => {
      const bh = ((height - pad * 2) * n) / max;
      y -= bh;
      return `<rect class="bar seg" data-series="${esc(name)}" style="fill:${CHART_COLOURS[name] || "var(--queued)"}" x="${(pad + i * bw + 1).toFixed(1)}" y="${y.toFixed(1)}" width="${Math.max(bw - 2, 1).toFixed(1)}" height="${bh.toFixed(1)}"><title>${n} ${esc(name.replace(/_/g, " "))} from ${new Date(s.start).toLocaleTimeString()}</title></rect>`;
    }).join("");
  }).join("");
  const first = slices.length ? new Date(slices[0].start).toLocaleTimeString() : "";
  return `<svg class="chart" viewBox="0 0 ${width} ${height}" role="img" aria-label="${esc(label)}" style="width:100%;max-width:${width}px">` +
    `<line x1="${pad}" y1="${height - pad}" x2="${width - pad}" y2="${height - pad}" stroke="#dee2e6"/>${bars}` +
    `<text x="${pad}" y="${height - 4}">${esc(first)}</text><text x="${width - pad}" y="${height - 4}" text-anchor="end">now</text>` +
    `<text x="${pad}" y="12">${esc(scale(max))}</text></svg>`;
}
// A watcher's lag over the last hour: the samples in 60 slices, each the largest lag seen in it.
function lagChart(samples, minutes = 60, buckets = 60) {
  const known = samples.filter((x) => x.lag !== null && x.lag !== undefined);
  if (!known.length) return `<div class="empty">No lag sampled yet${samples.length ? " (this broker does not tell its lag)" : ""}.</div>`;
  const since = Date.now() - minutes * 60000, width = (minutes * 60000) / buckets;
  const slices = Array.from({ length: buckets }, (_, i) => ({ start: new Date(since + i * width).toISOString(), values: { lag: 0 } }));
  for (const x of known) {
    const i = Math.min(buckets - 1, Math.max(0, Math.floor((new Date(x.at).getTime() - since) / width)));
    slices[i].values.lag = Math.max(slices[i].values.lag, x.lag);
  }
  const last = known[known.length - 1];
  return stackedSvg(slices, "lag over time", (max) => `highest ${max} waiting`) + `<div class="small muted" id="lag-now">now ${last.lag} waiting · ${samples.length} sample(s)</div>`;
}
const seconds = (v) => (v === null || v === undefined ? "–" : v < 1 ? `${Math.round(v * 1000)} ms` : `${v.toFixed(1)} s`);
function figures(name, p) {
  return `<div class="figure" data-figure="${esc(name)}"><div class="small muted">${esc(name)}</div><b>p50 ${seconds(p.p50)}</b> · p95 ${seconds(p.p95)} · p99 ${seconds(p.p99)} <span class="small muted">(${p.count} run(s))</span></div>`;
}
// Charts change slowly: fetched every CHART_MS, not at every poll.
const CHART_MS = 10000;
function chartDue(view) {
  const now = Date.now();
  if (view.chartAt && now - view.chartAt < CHART_MS) return false;
  view.chartAt = now;
  return true;
}

// Filters live in the URL (#/runs?dag=x&state=failed&since=1h): a filtered page can be
// bookmarked, shared and reloaded. Changing one rewrites the URL without a new view.
function hashParams() {
  return new URLSearchParams(location.hash.split("?")[1] || "");
}
function setHashParams(values) {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(values)) if (v) params.set(k, v);
  const base = location.hash.split("?")[0];
  history.replaceState(null, "", params.toString() ? `${base}?${params}` : base);
}
const SINCE = { "15m": 15, "1h": 60, "24h": 1440, "7d": 10080 };
function sinceIso(key) {
  return SINCE[key] ? new Date(Date.now() - SINCE[key] * 60000).toISOString() : "";
}
function sinceSelect(id, chosen) {
  return `<select id="${id}" aria-label="since"><option value="">any time</option>${Object.keys(SINCE).map((k) => `<option value="${k}"${k === chosen ? " selected" : ""}>last ${k}</option>`).join("")}</select>`;
}
function optionsOf(values, chosen, every) {
  return `<option value="">${esc(every)}</option>` + values.map((v) => `<option value="${esc(v)}"${v === chosen ? " selected" : ""}>${esc(v)}</option>`).join("");
}
// A filter bar: its selects and inputs (by id -> URL key) rewrite the URL and refresh the view.
function bindFilters(el, view, keys) {
  const apply = () => {
    view.offset = 0;
    setHashParams(Object.fromEntries(Object.entries(keys).map(([id, key]) => [key, $(`#${id}`, el).value])));
    refreshNow();
  };
  for (const id of Object.keys(keys)) $(`#${id}`, el).addEventListener("change", apply);
}

function pager(page, onPage) {
  const prev = page.offset > 0 ? `<button class="secondary" data-page="${Math.max(0, page.offset - page.limit)}">← Newer</button>` : "";
  const next = page.next_offset !== null ? `<button class="secondary" data-page="${page.next_offset}">Older →</button>` : "";
  return prev || next ? `<div class="row pager">${prev}${next}</div>` : "";
}

function bindPager(root, state) {
  root.querySelectorAll("[data-page]").forEach((b) => b.addEventListener("click", () => { state.offset = Number(b.dataset.page); refreshNow(); }));
}

function nextTrigger(dag) {
  const n = dag.next_trigger;
  if (n.kind === "asset") return `on <span class="mono">${esc(n.text)}</span>`;
  if (n.kind === "cron") return `cron <span class="mono">${esc(n.text)}</span>${n.next_at ? ` · next ${esc(new Date(n.next_at).toLocaleString())}` : ""}`;
  return "manual only";
}

// -- views --------------------------------------------------------------------------------------
// Each view: mount(el, params) draws what stays (forms), refresh() redraws what changes.

const views = {};

views.dags = {
  mount(el) {
    el.innerHTML = `<h1>DAGs</h1><div class="sub">Each DAG's tasks, what triggers it, and its newest runs.</div><div id="dag-errors"></div><div id="dag-list" class="grid"></div>`;
  },
  async refresh(el) {
    const [page, errors] = await Promise.all([api("/dags?limit=200"), api("/import-errors?limit=20")]);
    $("#dag-errors", el).innerHTML = errors.items.length
      ? `<div class="card error"><b>${errors.items.length} DAG file(s) failed to import</b>${errors.items.map((e) => `<details><summary class="mono">${esc(e.fileloc)}</summary><pre>${esc(e.error)}</pre></details>`).join("")}</div>`
      : "";
    $("#dag-list", el).innerHTML = page.items.length ? page.items.map((d) => `
      <div class="card dag-card" data-dag="${esc(d.dag_id)}">
        <div class="row spread"><a href="#/dags/${enc(d.dag_id)}"><b>${esc(d.dag_id)}</b></a>${d.is_paused ? badge("paused") : ""}</div>
        <div class="small muted">${nextTrigger(d)}${d.description ? " · " + esc(d.description) : ""}${(d.warnings || []).length ? ` · <span class="warn" title="${esc(d.warnings.join("\n"))}">${d.warnings.length} warning(s)</span>` : ""}</div>
        <div style="margin:10px 0">${graphSvg(d.tasks, new Map(), { compact: true })}</div>
        <div class="row small"><span class="muted">last runs</span><span class="dots">${d.last_runs.map((r) => `<a class="dot s-${esc(r.state)}" title="${esc(r.run_id)}: ${esc(r.state)}" href="#/runs/${enc(r.run_id)}"></a>`).join("") || '<span class="muted">none yet</span>'}</span></div>
      </div>`).join("") : `<div class="empty">No DAGs yet: drop a file into the DAGs folder.</div>`;
  },
};

views.dag = {
  mount(el, [dagId]) {
    this.dagId = dagId;
    this.offset = 0;
    el.innerHTML = `<div id="dag-head"></div>
      <div class="card"><h2 style="margin-top:0">Graph</h2><div id="dag-graph"></div><div class="small muted" id="dag-graph-note"></div></div>
      <div class="card" id="trigger-card"><h2 style="margin-top:0">Trigger a run</h2>
        <label class="small muted" for="conf">conf (JSON object, tasks see it as <code>params</code>)</label>
        <textarea id="conf">{}</textarea><div class="row" style="margin-top:8px"><button id="trigger">Trigger</button></div></div>
      <div class="card"><h2 style="margin-top:0">Last hour</h2><div id="dag-activity"></div></div>
      <div class="card"><h2 style="margin-top:0">Grid</h2><div class="small muted">The newest runs (columns, oldest left) by task (rows).</div><div id="dag-grid"></div></div>
      <h2>Runs</h2><div id="dag-runs"></div>`;
    this.chartAt = 0;
    $("#trigger", el).addEventListener("click", (e) => {
      let conf;
      try { conf = JSON.parse($("#conf", el).value || "{}"); } catch (err) { toast(`conf is not JSON: ${err.message}`, true); return; }
      act(e.target, `/dags/${enc(dagId)}/runs`, { conf }, (run) => toast(`Queued run ${run.run_id}`));
    });
  },
  async refresh(el) {
    const dagId = this.dagId;
    const [dag, runs] = await Promise.all([api(`/dags/${enc(dagId)}`), api(`/runs?dag_id=${enc(dagId)}&limit=25&offset=${this.offset}`)]);
    $("#dag-head", el).innerHTML = `<div class="row spread"><div><h1>${esc(dag.dag_id)} ${dag.is_paused ? badge("paused") : ""}</h1>
      <div class="sub">${nextTrigger(dag)} · <span class="mono small">${esc(dag.fileloc)}</span>${dag.max_active_runs ? ` · max ${dag.max_active_runs} active runs` : ""}</div></div>
      <button id="pause" class="${dag.is_paused ? "" : "secondary"}">${dag.is_paused ? "Unpause" : "Pause"}</button></div>` +
      ((dag.warnings || []).length
        ? `<div class="card warning" id="dag-warnings"><b>${dag.warnings.length} warning(s)</b><ul>${dag.warnings.map((w) => `<li>${esc(w)}</li>`).join("")}</ul></div>`
        : "");
    $("#pause", el).addEventListener("click", (e) => act(e.target, `/dags/${enc(dagId)}/${dag.is_paused ? "unpause" : "pause"}`));
    const latest = runs.items[0];
    let states = new Map();
    if (latest) {
      const detail = await api(`/runs/${enc(latest.run_id)}`);
      states = taskStates(detail.tasks);
      $("#dag-graph-note", el).innerHTML = `Colours: the newest run, ${runLink(latest.run_id)} ${badge(latest.state)}`;
    }
    $("#dag-graph", el).innerHTML = graphSvg(dag.tasks, states);
    // events a window or an absence holds, and those a cancel_on event cancelled before a run took them
    const held = dag.schedule
      ? await api(`/held_events?dag_id=${enc(dagId)}&limit=25`).catch(() => ({ items: [] })) : { items: [] };
    $("#dag-runs", el).innerHTML = heldTable(held.items) + runsTable(runs.items, false) + pager(runs);
    bindPager(el, this);
    if (chartDue(this)) {
      const [activity, grid] = await Promise.all([api(`/dags/${enc(dagId)}/activity?minutes=60&buckets=30`), api(`/dags/${enc(dagId)}/grid?limit=25`)]);
      $("#dag-activity", el).innerHTML = stackedSvg(activity.runs.map((r) => ({ start: r.start, values: r.states })), "runs per slice by state") +
        `<div class="row figures">${figures("run duration", activity.duration_seconds)}${figures("event to first task", activity.event_to_task_seconds)}</div>`;
      $("#dag-grid", el).innerHTML = gridTable(dag.tasks, grid);
    }
  },
};

// Airflow's grid: a row per task, a column per run, a cell coloured by the task's state.
function gridTable(tasks, runs) {
  if (!runs.length) return `<div class="empty">No runs yet.</div>`;
  const head = runs.map((r) => `<th class="grid-run"><a href="#/runs/${enc(r.run_id)}" title="${esc(r.run_id)}: ${esc(r.state)}" class="dot s-${esc(r.state)}"></a></th>`).join("");
  const rows = tasks.map((task) => `<tr data-task="${esc(task.task_id)}"><td class="mono small">${esc(task.task_id)}</td>` + runs.map((r) => {
    const cell = r.tasks[task.task_id];
    return cell ? `<td class="grid-cell"><a href="#/runs/${enc(r.run_id)}" class="dot s-${esc(cell.state)}" title="${esc(task.task_id)} in ${esc(r.run_id)}: ${esc(cell.state)}${cell.count > 1 ? ` (${cell.count} mapped)` : ""}"></a></td>` : `<td class="grid-cell"><span class="dot"></span></td>`;
  }).join("") + `</tr>`).join("");
  return `<div class="grid-wrap"><table class="grid-view"><thead><tr><th>task</th>${head}</tr></thead><tbody>${rows}</tbody></table></div>`;
}

// One state per task for the graph: a mapped task shows its most telling map index.
const STATE_ORDER = ["failed", "upstream_failed", "running", "deferred", "up_for_retry", "queued", "scheduled", "none", "success", "skipped", "removed"];
function taskStates(tasks) {
  const out = new Map();
  for (const t of tasks) {
    const seen = out.get(t.task_id);
    if (seen === undefined || STATE_ORDER.indexOf(t.state) < STATE_ORDER.indexOf(seen)) out.set(t.task_id, t.state);
  }
  return out;
}

// Events no run yet: a window waits for their partners, or an absence watches their key.
function heldTable(events) {
  if (!events.length) return "";
  return `<h3>Held events</h3><table class="runs"><thead><tr><th>Event</th><th>Held by</th><th>Key</th><th>Since</th><th>Until</th><th></th></tr></thead><tbody>` +
    events.map((e) => `<tr><td>${eventLink(e.event_id)}</td><td>${badge(e.held_by)}</td><td class="mono">${esc(e.key ?? "")}</td>` +
      `<td title="${esc(e.since)}">${esc(ago(e.since))}</td><td class="mono small">${esc(e.held_until)}</td><td class="muted">${esc(e.detail)}</td></tr>`).join("") + `</tbody></table>`;
}

function runsTable(runs, withDag = true) {
  if (!runs.length) return `<div class="empty">No runs.</div>`;
  return `<table class="runs"><thead><tr><th>Run</th>${withDag ? "<th>DAG</th>" : ""}<th>State</th><th>Type</th><th>Queued</th><th>Duration</th><th>Events</th></tr></thead><tbody>` +
    runs.map((r) => `<tr data-run="${esc(r.run_id)}"><td>${runLink(r.run_id)}</td>${withDag ? `<td class="name"><a href="#/dags/${enc(r.dag_id)}">${words(r.dag_id)}</a></td>` : ""}` +
      `<td>${badge(r.state)}${r.held_by ? ` <span class="muted" title="flow control">${esc(r.held_by)}</span>` : ""}</td><td class="name">${words(r.run_type)}</td><td title="${esc(r.queued_at)}">${esc(ago(r.queued_at))}</td>` +
      `<td>${esc(duration(r.started_at, r.ended_at))}</td><td>${r.event_ids.map(eventLink).join(", ")}</td></tr>`).join("") + `</tbody></table>`;
}

const RUN_STATES = ["queued", "running", "success", "failed", "skipped", "cancelled"];
views.runs = {
  mount(el) {
    this.offset = 0;
    const q = hashParams();
    el.innerHTML = `<div class="row spread"><div><h1>Runs</h1><div class="sub">Newest first, with the events each consumed.</div></div>
      <div class="row filters"><select id="run-dag" aria-label="DAG">${optionsOf(q.get("dag") ? [q.get("dag")] : [], q.get("dag"), "every DAG")}</select>
      <select id="run-state" aria-label="state">${optionsOf(RUN_STATES, q.get("state"), "every state")}</select>${sinceSelect("run-since", q.get("since"))}
      <button id="retry-filter" class="secondary" hidden>Retry these failed runs</button></div></div><div id="run-list"></div>`;
    bindFilters(el, this, { "run-dag": "dag", "run-state": "state", "run-since": "since" });
    $("#retry-filter", el).addEventListener("click", (e) => {
      const f = hashParams();
      act(e.target, "/runs/retry", { dag_id: f.get("dag") || null, since: sinceIso(f.get("since")) || null }, (r) => toast(`Retrying ${r.retried.length} failed run(s)`));
    });
    api("/dags?limit=1000").then((dags) => { $("#run-dag", el).innerHTML = optionsOf(dags.items.map((d) => d.dag_id), hashParams().get("dag"), "every DAG"); }).catch(() => {});
  },
  async refresh(el) {
    const q = hashParams();
    const filter = new URLSearchParams({ limit: "50", offset: String(this.offset) });
    if (q.get("dag")) filter.set("dag_id", q.get("dag"));
    if (q.get("state")) filter.set("state", q.get("state"));
    if (sinceIso(q.get("since"))) filter.set("since", sinceIso(q.get("since")));
    const page = await api(`/runs?${filter}`);
    $("#retry-filter", el).hidden = q.get("state") !== "failed" || !page.items.length;
    $("#run-list", el).innerHTML = runsTable(page.items) + pager(page);
    bindPager(el, this);
  },
};

views.run = {
  mount(el, [runId]) {
    this.runId = runId;
    this.selected = null;
    this.autoOpened = false;
    el.innerHTML = `<div id="run-head"></div><div class="card"><h2 style="margin-top:0">Tasks</h2><div id="run-graph"></div><div id="run-gantt" style="margin-top:14px"></div></div>
      <div class="card"><h2 style="margin-top:0">Each task</h2><div id="run-tasks"></div></div>
      <div class="card" id="conf-card" hidden><h2 style="margin-top:0">conf</h2><pre class="light" id="run-conf"></pre></div>
      <div class="card" id="callbacks-card" hidden><h2 style="margin-top:0">DAG callbacks</h2><div id="run-callbacks"></div></div>
      <div class="card" id="log-card" hidden><div class="row spread"><h2 style="margin:0" id="log-title"></h2><button class="secondary" id="retry-task" hidden>Retry this task</button></div><pre id="log"></pre></div>
      <div class="card"><h2 style="margin-top:0">Caused by</h2><div id="run-events"></div></div>`;
    el.addEventListener("click", (e) => {
      const target = e.target.closest("[data-log], [data-task]");
      if (target) {
        this.selected = target.dataset.log || target.dataset.task;
        this.selectedMap = target.dataset.map !== undefined && Number(target.dataset.map) >= 0 ? Number(target.dataset.map) : null;
        refreshNow();
      }
    });
    $("#retry-task", el).addEventListener("click", (e) => act(e.target, `/runs/${enc(runId)}/tasks/${enc(this.selected)}/retry`, undefined, () => toast(`Retrying ${this.selected}`)));
  },
  async refresh(el) {
    const run = await api(`/runs/${enc(this.runId)}`);
    const dag = await api(`/dags/${enc(run.dag_id)}`).catch(() => ({ tasks: run.tasks.map((t) => ({ task_id: t.task_id, upstream: [] })) }));
    $("#run-head", el).innerHTML = `<div class="row spread"><div><h1 class="mono" style="font-size:17px">${esc(run.run_id)}</h1>
      <div class="sub"><a href="#/dags/${enc(run.dag_id)}">${esc(run.dag_id)}</a> · <span id="run-state">${badge(run.state)}</span> · ${esc(run.run_type)}${run.logical_date ? ` · logical date <span class="mono">${esc(run.logical_date)}</span>` : ""} · queued ${esc(ago(run.queued_at))}${run.held_by ? ` · <span title="flow control">${esc(run.held_by)}</span>` : ""}${run.cancelled_by_event != null ? ` · cancelled by event <a class="mono" href="#/events/${enc(run.cancelled_by_event)}">${esc(run.cancelled_by_event)}</a>` : ""}
      ${run.started_at ? ` · ran ${esc(duration(run.started_at, run.ended_at))}` : ""}${Object.keys(run.conf || {}).length ? ` · conf <code>${esc(JSON.stringify(run.conf))}</code>` : ""}</div></div>
      ${run.state === "failed" ? `<button id="retry-run">Retry failed tasks</button>` : ""}</div>`;
    const retry = $("#retry-run", el);
    if (retry) retry.addEventListener("click", (e) => act(e.target, `/runs/${enc(run.run_id)}/retry`, undefined, (r) => toast(`Retrying ${r.retried.join(", ") || "the run"}`)));
    const states = taskStates(run.tasks);
    // A failed run opens on its (first) failed task's log: what went wrong is what one comes to see.
    if (this.selected === null && !this.autoOpened) {
      const failed = run.tasks.find((t) => t.state === "failed");
      if (failed) { this.selected = failed.task_id; this.selectedMap = failed.map_index >= 0 ? failed.map_index : null; }
      this.autoOpened = true;
    }
    $("#run-tasks", el).innerHTML = tasksTable(run.tasks);
    const conf = run.conf || {};
    $("#conf-card", el).hidden = !Object.keys(conf).length;
    $("#run-conf", el).innerHTML = json(conf);
    // on_success_callback / on_failure_callback of each end of the run: how it went, and why not
    const callbacks = run.callbacks || [];
    $("#callbacks-card", el).hidden = !callbacks.length;
    $("#run-callbacks", el).innerHTML = callbacks.length ? `<table><thead><tr><th>Callback</th><th>Reason</th><th>State</th><th>Ended</th><th>Error or log</th></tr></thead><tbody>` +
      callbacks.map((c) => `<tr data-callback="${esc(c.kind)}"><td class="mono" style="white-space:nowrap">${esc(c.kind)}</td><td style="white-space:nowrap">${esc(c.reason)}</td><td>${badge(c.state)}</td>` +
        `<td>${c.ended_at ? esc(ago(c.ended_at)) : ""}</td><td><pre class="light">${esc(c.error || c.log || "")}</pre></td></tr>`).join("") + `</tbody></table>` : "";
    $("#run-graph", el).innerHTML = graphSvg(dag.tasks, states, { clickable: true, selected: this.selected });
    $("#run-gantt", el).innerHTML = gantt(run);
    $("#run-events", el).innerHTML = run.events.length ? `<table><thead><tr><th>Event</th><th>Asset</th><th>Source</th><th>When</th><th>Payload</th><th>Runs it caused</th></tr></thead><tbody>` +
      run.events.map((ev) => `<tr><td>${eventLink(ev.id)}</td><td><a href="#/assets/${enc(ev.asset)}">${esc(ev.asset)}</a></td><td class="mono">${esc(ev.source)}</td>` +
        `<td>${esc(ago(ev.timestamp))}</td><td><code>${payloadCell(ev, 120)}</code></td><td>${ev.runs.map((r) => runLink(r.run_id, r.run_id === run.run_id ? "this run" : r.run_id)).join("<br>")}</td></tr>`).join("") + `</tbody></table>`
      : `<p class="muted">No event: a ${esc(run.run_type)} run.</p>`;
    const card = $("#log-card", el);
    if (this.selected && states.has(this.selected)) {
      const mapIndex = this.selectedMap ?? null;
      const log = await api(`/runs/${enc(run.run_id)}/tasks/${enc(this.selected)}/log${mapIndex !== null ? `?map_index=${mapIndex}` : ""}`);
      card.hidden = false;
      const shown = log.map_index >= 0 ? `${log.task_id}[${log.map_index}]` : log.task_id;
      $("#log-title", el).innerHTML = `Log of ${esc(shown)} ${badge(log.state)} <span class="small muted">try ${log.try_number}</span>`;
      $("#log", el).textContent = (log.log || "(nothing printed)") + (log.error ? `\n--- error ---\n${log.error}` : "");
      $("#retry-task", el).hidden = log.state !== "failed" || run.state !== "failed";
    } else {
      card.hidden = true;
    }
  },
};

// What a state means, for the states whose name alone does not say why.
const STATE_WHY = {
  upstream_failed: "not run: a task it depends on failed",
  skipped: "not run: skipped by a branch, a short-circuit or its trigger rule",
  up_for_retry: "failed, will run again after its retry delay",
  removed: "no longer in the DAG",
  none: "waiting for the tasks it depends on",
};
// Why a try ended, spelled out; the states it ended in, where they add to it.
const END_TEXT = { success: "succeeded", failed: "failed", timed_out: "timed out", lost_worker: "worker lost",
  upstream_failed: "upstream failed", cancelled: "cancelled", skipped: "skipped" };
function triesList(tries) {
  // one successful try says nothing the task's row does not
  if (!tries.length || (tries.length === 1 && tries[0].reason === "success")) return "";
  return `<ol class="tries">` + tries.map((x) => {
    const then = x.state === "up_for_retry" ? ", will retry" : x.reason === "lost_worker" ? ", requeued" : "";
    const why = (x.error || "").split("\n").filter(Boolean).slice(-1)[0] || "";
    const ran = x.started_at ? ` · ${esc(duration(x.started_at, x.ended_at))}` : "";
    const host = x.hostname ? ` · <span class="mono">${esc(x.hostname)}</span>` : "";
    return `<li class="try" data-try="${x.try_number}" data-reason="${esc(x.reason)}"><span class="try-n">${x.try_number ? `try ${x.try_number}` : "not run"}</span> ` +
      `<span class="end e-${esc(x.reason)}">${esc(END_TEXT[x.reason] || x.reason)}${then}</span>${ran}${host}` +
      `${x.ended_at ? ` · <span title="${esc(x.ended_at)}">${esc(ago(x.ended_at))}</span>` : ""}${why ? `<div class="why">${esc(why)}</div>` : ""}</li>`;
  }).join("") + `</ol>`;
}
function tasksTable(tasks) {
  if (!tasks.length) return `<div class="empty">No tasks yet.</div>`;
  return `<table class="run-tasks"><thead><tr><th>Task</th><th>State</th><th>Try</th><th>Ran</th><th>Result or error</th></tr></thead><tbody>` +
    tasks.map((t) => {
      const name = t.map_index >= 0 ? `${t.task_id}[${t.map_index}]` : t.task_id;
      const why = STATE_WHY[t.state] ? `<div class="small muted">${esc(STATE_WHY[t.state])}</div>` : "";
      const shown = t.error ? `<span class="error">${esc(t.error.split("\n").filter(Boolean).slice(-1)[0] || t.error)}</span>`
        : t.result_preview ? `<code>${esc(t.result_preview.slice(0, 160))}…</code>`
        : t.result !== null && t.result !== undefined ? `<code>${esc(JSON.stringify(t.result).slice(0, 160))}</code>` : "";
      const lost = triesList(t.tries || []);
      return `<tr data-task-row="${esc(name)}"><td><a data-log="${esc(t.task_id)}" data-map="${t.map_index}" class="mono">${esc(name)}</a></td><td>${badge(t.state)}${why}</td>` +
        `<td>${t.try_number}/${t.max_tries}</td><td>${t.started_at ? esc(duration(t.started_at, t.ended_at)) : ""}</td><td>${shown}${lost}</td></tr>`;
    }).join("") + `</tbody></table>`;
}

// Listings carry a large extra as the start of its JSON text (extra_preview); the event's own page has it whole.
function payloadCell(ev, width) {
  if (ev.extra_preview) return `${esc(ev.extra_preview.slice(0, width))}… <span class="small muted">(${ev.extra_size} bytes)</span>`;
  return esc(JSON.stringify(ev.extra.payload !== undefined ? ev.extra.payload : ev.extra).slice(0, width));
}

function eventsTable(events) {
  if (!events.length) return `<div class="empty">No events.</div>`;
  return `<table class="events"><thead><tr><th>Event</th><th>Asset</th><th>Source</th><th>When</th><th>Payload</th><th>Message</th><th>Runs it caused</th></tr></thead><tbody>` +
    events.map((ev) => {
      const m = ev.extra.message || {};
      const where = [m.broker, m.queue || m.topic || m.stream, m.partition !== undefined ? `p${m.partition}` : "", m.offset !== undefined ? `@${m.offset}` : "", m.message_id].filter((x) => x !== undefined && x !== "").join(" ");
      return `<tr data-event="${ev.id}"><td>${eventLink(ev.id)}</td><td><a href="#/assets/${enc(ev.asset)}">${esc(ev.asset)}</a></td><td class="mono">${esc(ev.source)}</td><td title="${esc(ev.timestamp)}">${esc(ago(ev.timestamp))}</td>` +
        `<td><code>${payloadCell(ev, 100)}</code></td><td class="small mono">${esc(where)}</td>` +
        `<td>${ev.runs.map((r) => `${runLink(r.run_id, r.dag_id)} ${badge(r.state)}`).join("<br>") || '<span class="muted">none yet</span>'}</td></tr>`;
    }).join("") + `</tbody></table>`;
}

views.assets = {
  mount(el) {
    el.innerHTML = `<h1>Assets</h1><div class="sub">Named data whose events run the DAGs scheduled on them.</div><div id="asset-list"></div>`;
  },
  async refresh(el) {
    const page = await api("/assets?limit=500");
    $("#asset-list", el).innerHTML = page.items.length ? `<table><thead><tr><th>Asset</th><th>URI</th><th>Scheduled DAGs</th></tr></thead><tbody>` +
      page.items.map((a) => `<tr><td><a href="#/assets/${enc(a.name)}">${esc(a.name)}</a></td><td class="mono">${esc(a.uri)}</td><td>${a.consumers.map((d) => `<a href="#/dags/${enc(d)}">${esc(d)}</a>`).join(", ")}</td></tr>`).join("") + `</tbody></table>`
      : `<div class="empty">No assets.</div>`;
  },
};

views.asset = {
  mount(el, [name]) {
    this.name = name;
    this.offset = 0;
    el.innerHTML = `<div id="asset-head"></div><div class="card"><div class="row spread"><h2 style="margin-top:0">Events over the last hour</h2></div><div id="asset-chart"></div></div>
      <div class="card"><h2 style="margin-top:0">Send an event</h2><label class="small muted" for="extra">extra (JSON object)</label><textarea id="extra">{"payload": {"hello": "world"}}</textarea>
      <div class="row" style="margin-top:8px"><button id="emit">Send</button><span class="small muted">POST /api/v1/assets/${esc(name)}/events</span></div></div>
      <h2>Events</h2><div id="asset-events"></div>`;
    $("#emit", el).addEventListener("click", (e) => {
      let extra;
      try { extra = JSON.parse($("#extra", el).value || "{}"); } catch (err) { toast(`extra is not JSON: ${err.message}`, true); return; }
      act(e.target, `/assets/${enc(name)}/events`, { extra }, (ev) => toast(`Recorded event ${ev.id}`));
    });
  },
  async refresh(el) {
    const name = this.name;
    const [asset, counts, events] = await Promise.all([
      api(`/assets/${enc(name)}`), api(`/assets/${enc(name)}/event-counts?minutes=60&buckets=60`), api(`/events?asset=${enc(name)}&limit=50&offset=${this.offset}`),
    ]);
    $("#asset-head", el).innerHTML = `<h1>${esc(asset.name)}</h1><div class="sub">${asset.event_count} event(s)${asset.last_event_at ? `, the last ${esc(ago(asset.last_event_at))}` : ""}
      · watchers: ${asset.watchers.map((w) => `<a href="#/watchers">${esc(w)}</a>`).join(", ") || "none"} · scheduled DAGs: ${asset.consumers.map((d) => `<a href="#/dags/${enc(d)}">${esc(d)}</a>`).join(", ") || "none"}</div>`;
    $("#asset-chart", el).innerHTML = chartSvg(counts);
    $("#asset-events", el).innerHTML = eventsTable(events.items) + pager(events);
    bindPager(el, this);
  },
};

views.events = {
  mount(el) {
    this.offset = 0;
    const q = hashParams();
    el.innerHTML = `<div class="row spread"><div><h1>Events</h1><div class="sub">Every asset event, newest first: where it came from and which runs it caused.</div></div>
      <div class="row filters"><select id="event-asset" aria-label="asset">${optionsOf(q.get("asset") ? [q.get("asset")] : [], q.get("asset"), "every asset")}</select>
      ${sinceSelect("event-since", q.get("since"))}<input id="event-q" type="search" placeholder="search the payloads" aria-label="search the payloads" value="${esc(q.get("q") || "")}"></div></div><div id="event-list"></div>`;
    bindFilters(el, this, { "event-asset": "asset", "event-since": "since", "event-q": "q" });
    api("/assets?limit=1000").then((assets) => { $("#event-asset", el).innerHTML = optionsOf(assets.items.map((a) => a.name), hashParams().get("asset"), "every asset"); }).catch(() => {});
  },
  async refresh(el) {
    const q = hashParams();
    const filter = new URLSearchParams({ limit: "50", offset: String(this.offset) });
    if (q.get("asset")) filter.set("asset", q.get("asset"));
    if (sinceIso(q.get("since"))) filter.set("since", sinceIso(q.get("since")));
    if (q.get("q")) filter.set("q", q.get("q"));
    const page = await api(`/events?${filter}`);
    $("#event-list", el).innerHTML = eventsTable(page.items) + pager(page);
    bindPager(el, this);
  },
};

views.event = {
  mount(el, [id]) {
    this.id = id;
    el.innerHTML = `<div id="event-head"></div><div class="grid"><div class="card"><h2 style="margin-top:0">Payload</h2><pre class="light" id="event-payload"></pre></div>
      <div class="card"><h2 style="margin-top:0">Message</h2><pre class="light" id="event-message"></pre></div></div>
      <div class="card"><div class="row spread"><h2 style="margin-top:0">Runs it caused</h2><button id="replay-event" class="secondary">Replay: run again</button></div><div id="event-runs"></div></div>`;
    $("#replay-event", el).addEventListener("click", (e) => act(e.target, `/events/${id}/replay`, undefined, (r) => toast(`Replayed as ${r.runs.map((x) => x.run_id).join(", ")}`)));
  },
  async refresh(el) {
    const ev = await api(`/events/${this.id}`);
    $("#event-head", el).innerHTML = `<h1>Event ${ev.id}</h1><div class="sub">of <a href="#/assets/${enc(ev.asset)}">${esc(ev.asset)}</a> · source <span class="mono">${esc(ev.source)}</span> · ${esc(new Date(ev.timestamp).toLocaleString())}${ev.dedupe_key ? ` · dedupe key <span class="mono">${esc(ev.dedupe_key)}</span>` : ""}</div>`;
    const { message, ...rest } = ev.extra;
    $("#event-payload", el).innerHTML = json(rest.payload !== undefined && Object.keys(rest).length === 1 ? rest.payload : rest);
    // a task's event: the try that emitted it (Airflow's source_*) and the aliases it went through
    const emitted = ev.source_dag_id ? { dag_id: ev.source_dag_id, task_id: ev.source_task_id, run_id: ev.source_run_id, map_index: ev.source_map_index, aliases: (ev.source_aliases || []).map((a) => a.name) } : null;
    $("#event-message", el).innerHTML = message ? json(message) : emitted ? json(emitted) : "(not from a message)";
    $("#event-runs", el).innerHTML = ev.runs.length ? `<table><thead><tr><th>Run</th><th>DAG</th><th>State</th></tr></thead><tbody>` +
      ev.runs.map((r) => `<tr><td>${runLink(r.run_id)}</td><td class="name"><a href="#/dags/${enc(r.dag_id)}">${words(r.dag_id)}</a></td><td>${badge(r.state)}</td></tr>`).join("") + `</tbody></table>`
      : `<p class="muted">No run yet (a paused DAG, a batch still filling, or no DAG scheduled on ${esc(ev.asset)}).</p>`;
  },
};

views.watchers = {
  mount(el) {
    el.innerHTML = `<h1>Watchers</h1><div class="sub">Each watcher turns messages from one queue into events of one asset.</div><div id="watcher-list"></div>` +
      `<h2>Triggerers</h2><div class="sub">Live triggerers share the watchers: each holds the lease of about its share; a shareable queue (SQS, RabbitMQ, Kafka, Redis streams, NATS, PostgreSQL) is read by all of them.</div><div id="triggerer-list"></div>`;
  },
  async refresh(el) {
    const triggerers = await api("/triggerers");
    $("#triggerer-list", el).innerHTML = triggerers.length ? `<table><thead><tr><th>Triggerer</th><th>Heartbeat</th><th>Delivered</th><th>Leases held</th><th>Reads</th></tr></thead><tbody>` +
      triggerers.map((t) => `<tr data-triggerer="${esc(t.name)}"><td class="mono small">${esc(t.name)}</td><td>${t.alive ? esc(ago(t.heartbeat_at)) : `<span class="badge s-failed">dead</span> ${esc(ago(t.heartbeat_at))}`}</td><td>${t.received}</td>` +
        `<td>${t.leases.length} <span class="small muted">${esc(t.leases.join(", "))}</span></td><td class="small">${esc(t.consuming.join(", "))}</td></tr>`).join("") + `</tbody></table>`
      : `<div class="empty">No triggerer is running.</div>`;
    const page = await api("/watchers?limit=500");
    $("#watcher-list", el).innerHTML = page.items.length ? `<table><thead><tr><th>Watcher</th><th>Queue</th><th>State</th><th>Last message</th><th>Received</th><th>Events</th><th>Deduped</th><th>Skipped</th><th>Dead letters</th><th>Lag</th><th>Last error</th></tr></thead><tbody>` +
      page.items.map((w) => `<tr data-watcher="${w.id}"><td><a href="#/assets/${enc(w.asset)}">${esc(w.asset)}</a> / <a href="#/watchers/${w.id}" class="watcher-link">${esc(w.name)}</a></td><td class="mono small">${esc(w.url)}${w.delivery && !w.delivery.startsWith("nothing lost") ? `<div class="small warn">${esc(w.delivery)}</div>` : ""}</td><td>${badge(w.state)}</td>` +
        `<td>${esc(ago(w.last_message_at)) || '<span class="muted">never</span>'}</td><td>${w.received}</td><td>${w.events}</td><td>${w.deduped}</td><td>${w.skipped}</td>` +
        `<td>${w.dead_lettered ? `<a href="#/dead-letters?watcher=${w.id}">${w.dead_lettered}</a>` : 0}</td><td>${w.lag ?? ""}</td><td class="small error">${esc(w.last_error || "")}</td></tr>`).join("") + `</tbody></table>`
      : `<div class="empty">No watchers.</div>`;
  },
};

views.watcher = {
  mount(el, [id]) {
    this.id = Number(id);
    this.chartAt = 0;
    el.innerHTML = `<div id="watcher-head"></div><div class="card"><h2 style="margin-top:0">Last hour</h2><div id="watcher-activity"></div>
      <h2>Lag</h2><div class="small muted">Messages waiting in the broker, as the triggerer holding the watcher sampled it.</div><div id="watcher-lag"></div></div>
      <div class="card"><h2 style="margin-top:0">Errors</h2><div id="watcher-errors"></div></div>
      <div class="card"><div class="row spread"><h2 style="margin-top:0">Dead letters</h2><button id="replay-watcher" class="secondary">Replay all of them</button></div><div id="watcher-dead"></div></div>`;
    $("#replay-watcher", el).addEventListener("click", (e) => act(e.target, `/watchers/${this.id}/dead-letters/replay`, undefined, (r) => toast(`Replay of ${r.requested ?? r.count ?? "the"} dead letter(s) requested`)));
    el.addEventListener("click", (e) => {
      const b = e.target.closest("[data-pause]");
      if (b) act(b, `/watchers/${this.id}/${b.dataset.pause}`, undefined, (r) => toast(`${r.asset} / ${r.name} is ${r.state}`));
    });
  },
  async refresh(el) {
    const [list, dead, triggerers] = await Promise.all([
      api("/watchers?limit=1000"), api(`/dead-letters?watcher_id=${this.id}&limit=20`), api("/triggerers").catch(() => []),
    ]);
    const w = list.items.find((x) => x.id === this.id);
    if (!w) { $("#watcher-head", el).innerHTML = `<h1>No watcher ${this.id}</h1><div class="sub"><a href="#/watchers">All watchers</a></div>`; return; }
    const name = `${w.asset}/${w.name}`;
    const holder = triggerers.filter((tr) => tr.alive && tr.leases.includes(name)).map((tr) => tr.name);
    const readers = triggerers.filter((tr) => tr.alive && tr.consuming.includes(name)).map((tr) => tr.name);
    const paused = w.state === "paused";
    $("#watcher-head", el).innerHTML = `<div class="row spread"><div><h1>${esc(w.asset)} / ${esc(w.name)} ${badge(w.state)}</h1><div class="sub mono small">${esc(w.url || "")}</div></div>
      <button data-pause="${paused ? "resume" : "pause"}" class="${paused ? "" : "secondary"}" id="pause-watcher">${paused ? "Resume" : "Pause"}</button></div>
      <div class="kv card" id="watcher-lease"><div>lease held by</div><div class="mono small">${esc(holder.join(", ") || "nobody")}</div><div>read by</div><div class="mono small">${esc(readers.join(", ") || "nobody")}</div></div>
      <div class="kv card"><div>last message</div><div>${esc(ago(w.last_message_at)) || "never"}</div><div>received</div><div>${w.received}</div><div>events</div><div>${w.events}</div>
      <div>deduped</div><div>${w.deduped}</div><div>skipped</div><div>${w.skipped}</div><div>dead letters</div><div>${w.dead_lettered}</div><div>lag</div><div>${w.lag ?? "–"}</div>
      <div>delivery</div><div class="small">${esc(w.delivery || "")}</div><div>last error</div><div class="small ${w.last_error ? "error" : "muted"}">${esc(w.last_error || "none")}</div></div>`;
    $("#watcher-dead", el).innerHTML = dead.items.length ? `<table><thead><tr><th>#</th><th>Reason</th><th>When</th><th>Replay</th></tr></thead><tbody>` +
      dead.items.map((d) => `<tr><td>${d.id}</td><td class="error">${esc(d.error)}</td><td>${esc(ago(d.created_at))}</td><td>${d.replayed_at ? `replayed ${esc(ago(d.replayed_at))}` : d.replay_requested_at ? "requested" : ""}</td></tr>`).join("") + `</tbody></table>`
      : `<div class="empty">None.</div>`;
    if (chartDue(this)) {
      const slices = await api(`/watchers/${this.id}/activity?minutes=60&buckets=30`);
      $("#watcher-activity", el).innerHTML = stackedSvg(slices.map((x) => ({ start: x.start, values: { events: x.events, dead_letters: x.dead_letters } })), "events and dead letters per slice");
      const history = await api(`/watchers/${this.id}/history?minutes=60`);
      $("#watcher-lag", el).innerHTML = lagChart(history.samples);
      $("#watcher-errors", el).innerHTML = history.errors.length ? `<table class="watcher-errors"><thead><tr><th>Error</th><th>State</th><th>First seen</th><th>Last seen</th></tr></thead><tbody>` +
        history.errors.map((x) => `<tr data-error-at="${esc(x.first_seen)}"><td class="error small">${esc(x.error)}</td><td>${badge(x.state)}</td>` +
          `<td title="${esc(x.first_seen)}" style="white-space:nowrap">${esc(new Date(x.first_seen).toLocaleString())}</td><td title="${esc(x.last_seen)}" style="white-space:nowrap">${esc(ago(x.last_seen))}</td></tr>`).join("") + `</tbody></table>`
        : `<div class="empty">No error in the last hour.</div>`;
    }
  },
};

// What became of a dead letter's replay: the event it made, a failure (the reason is the new error), or a button.
function replayOutcome(d) {
  if (d.replayed_at) return d.replayed_event_id ? `replayed as ${eventLink(d.replayed_event_id)} ${esc(ago(d.replayed_at))}` : `replayed ${esc(ago(d.replayed_at))}: the trigger skips it now`;
  if (d.replay_requested_at) return `<span class="badge s-queued">replay requested</span>`;
  if (d.body_truncated) return `<span class="small muted">body cut: cannot replay</span>`;
  const failed = d.replay_failed_at ? `<div class="small error replay-failed">replay failed again ${esc(ago(d.replay_failed_at))}</div>` : "";
  return `${failed}<button class="secondary" data-replay="${d.id}">Replay</button>`;
}

views["dead-letters"] = {
  mount(el) {
    this.offset = 0;
    const q = hashParams();
    el.innerHTML = `<div class="row spread"><div><h1>Dead letters</h1><div class="sub">Messages that could not become events, kept with the reason. Replay runs one through its watcher's trigger again.</div></div>
      <div class="row filters"><select id="dead-watcher" aria-label="watcher"><option value="">every watcher</option></select>
      <input id="dead-error" type="search" placeholder="reason contains" aria-label="reason contains" value="${esc(q.get("error") || "")}">
      <button id="replay-filter" class="secondary">Replay these</button></div></div><div id="dead-list"></div>`;
    bindFilters(el, this, { "dead-watcher": "watcher", "dead-error": "error" });
    $("#replay-filter", el).addEventListener("click", (e) => {
      const f = hashParams();
      act(e.target, "/dead-letters/replay", { watcher_id: f.get("watcher") ? Number(f.get("watcher")) : null, error: f.get("error") || null }, (r) => toast(`Replay of ${r.requested} dead letter(s) requested`));
    });
    api("/watchers?limit=1000").then((ws) => {
      const chosen = hashParams().get("watcher");
      $("#dead-watcher", el).innerHTML = `<option value="">every watcher</option>` + ws.items.map((w) => `<option value="${w.id}"${String(w.id) === chosen ? " selected" : ""}>${esc(w.asset)} / ${esc(w.name)}</option>`).join("");
    }).catch(() => {});
    el.addEventListener("click", (e) => {
      const b = e.target.closest("[data-replay]");
      if (b) act(b, `/dead-letters/${b.dataset.replay}/replay`, undefined, () => toast(`Replay of dead letter ${b.dataset.replay} requested`));
    });
  },
  async refresh(el) {
    const f = hashParams();
    const filter = new URLSearchParams({ limit: "50", offset: String(this.offset) });
    if (f.get("watcher")) filter.set("watcher_id", f.get("watcher"));
    if (f.get("error")) filter.set("error", f.get("error"));
    const page = await api(`/dead-letters?${filter}`);
    $("#dead-list", el).innerHTML = page.items.length ? `<table><thead><tr><th>#</th><th>Source</th><th>Reason</th><th>Body</th><th>When</th><th>Replay</th></tr></thead><tbody>` +
      page.items.map((d) => `<tr data-dead="${d.id}"><td>${d.id}</td><td class="mono small">${esc(d.source)}</td><td class="error">${esc(d.error)}</td>` +
        `<td><code>${esc(d.body.slice(0, 120))}</code>${d.body_encoding ? ` <span class="small muted">(${esc(d.body_encoding)})</span>` : ""}` +
        `${d.body.length > 120 || d.body_preview || d.body_truncated ? ` <span class="small muted">(${d.body_size} bytes${d.body_truncated ? ", only the start kept" : ""})</span>` : ""}</td><td>${esc(ago(d.created_at))}</td><td class="replay-state">` +
        replayOutcome(d) +
        `</td></tr>`).join("") + `</tbody></table>` + pager(page)
      : `<div class="empty">No dead letters: every message became an event.</div>`;
    bindPager(el, this);
  },
};

views.variables = {
  mount(el) {
    this.offset = 0;
    el.innerHTML = `<h1>Variables</h1><div class="sub">What DAGs read with <code>Variable.get</code>; set them with <code>herald variables set</code>. A value whose key names a secret is shown as ***.</div><div id="variable-list"></div>`;
  },
  async refresh(el) {
    const page = await api(`/variables?limit=50&offset=${this.offset}`);
    $("#variable-list", el).innerHTML = page.items.length ? `<table><thead><tr><th>Key</th><th>Value</th><th>Description</th><th>Updated</th></tr></thead><tbody>` +
      page.items.map((v) => `<tr data-variable="${esc(v.key)}"><td class="mono">${esc(v.key)}</td><td><code>${esc(v.value.slice(0, 200))}</code>${v.masked ? ' <span class="small muted">(secret)</span>' : ""}</td>` +
        `<td>${esc(v.description || "")}</td><td>${esc(ago(v.updated_at))}</td></tr>`).join("") + `</tbody></table>` + pager(page)
      : `<div class="empty">No variables.</div>`;
    bindPager(el, this);
  },
};

// -- routing, polling, login --------------------------------------------------------------------

const routes = [
  [/^#\/dags\/(.+)$/, "dag"], [/^#\/dags\/?$/, "dags"], [/^#\/runs\/?(?:\?.*)?$/, "runs"], [/^#\/runs\/(.+)$/, "run"],
  [/^#\/assets\/(.+)$/, "asset"], [/^#\/assets\/?$/, "assets"], [/^#\/events\/(\d+)$/, "event"], [/^#\/events\/?(?:\?.*)?$/, "events"],
  [/^#\/watchers\/(\d+)$/, "watcher"], [/^#\/watchers\/?$/, "watchers"], [/^#\/dead-letters\/?(?:\?.*)?$/, "dead-letters"],
  [/^#\/variables\/?$/, "variables"],
];
let current = null;
let pollTimer = null;
let generation = 0;

function route() {
  const hash = location.hash || "#/dags";
  for (const [pattern, name] of routes) {
    const m = hash.match(pattern);
    if (m) return [name, m.slice(1).map(decodeURIComponent)];
  }
  return ["dags", []];
}

function navigate() {
  if (!localStorage.getItem(TOKEN_KEY)) { showLogin(); return; }
  const [name, params] = route();
  const main = $("#main");
  const fresh = main.cloneNode(false); // drop the old view's listeners
  main.replaceWith(fresh);
  const view = Object.create(views[name]);
  view.mount(fresh, params);
  current = { view, el: fresh };
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", name.startsWith(a.dataset.nav.replace(/s$/, ""))));
  refreshNow();
}

async function refreshNow() {
  clearTimeout(pollTimer);
  const mine = ++generation;
  if (current) {
    try {
      await current.view.refresh(current.el);
      $("#live").textContent = `live · ${new Date().toLocaleTimeString()}`;
      $("#live").classList.remove("stale");
    } catch (err) {
      $("#live").classList.add("stale");
      if (!(err instanceof ApiError && err.message === "unauthorized") && mine === generation) {
        current.el.querySelector(".load-error")?.remove();
        current.el.insertAdjacentHTML("afterbegin", `<div class="card error load-error">${esc(err.message)}</div>`);
      }
    }
  }
  if (mine === generation && localStorage.getItem(TOKEN_KEY)) pollTimer = setTimeout(refreshNow, POLL_MS);
}

function showLogin(message = "") {
  clearTimeout(pollTimer);
  current = null;
  $("#login").hidden = false;
  $("#logout").hidden = true;
  $("#who").textContent = "";
  $("#login-error").textContent = message;
  $("#main").innerHTML = "";
  $("#token").focus();
}

async function login(token) {
  localStorage.setItem(TOKEN_KEY, token);
  try {
    const me = await api("/auth/whoami");
    $("#login").hidden = true;
    $("#logout").hidden = false;
    $("#who").textContent = `${me.name} (${me.scope})`;
    navigate();
  } catch (err) {
    if (!(err instanceof ApiError && err.message === "unauthorized")) $("#login-error").textContent = err.message;
    else $("#login-error").textContent = "That token is not valid.";
    localStorage.removeItem(TOKEN_KEY);
  }
}

$("#login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const token = $("#token").value.trim();
  $("#token").value = "";
  if (token) login(token);
});
$("#logout").addEventListener("click", () => { localStorage.removeItem(TOKEN_KEY); showLogin("Logged out."); });
window.addEventListener("hashchange", navigate);
document.addEventListener("visibilitychange", () => { if (!document.hidden) refreshNow(); });

const saved = localStorage.getItem(TOKEN_KEY);
if (saved) login(saved); else showLogin();
