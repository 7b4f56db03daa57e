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

function graphSvg(tasks, states = {}, { selected = null, clickable = false, compact = false } = {}) {
  if (!tasks.length) return `<p class="muted">No tasks.</p>`;
  const byId = Object.fromEntries(tasks.map((t) => [t.task_id, t]));
  const rank = {};
  const rankOf = (id, seen = new Set()) => {
    if (rank[id] !== undefined) return rank[id];
    if (seen.has(id)) return 0;
    seen.add(id);
    const ups = (byId[id]?.upstream || []).filter((u) => byId[u]);
    rank[id] = ups.length ? Math.max(...ups.map((u) => rankOf(u, seen))) + 1 : 0;
    return rank[id];
  };
  tasks.forEach((t) => rankOf(t.task_id));
  const columns = [];
  tasks.forEach((t) => (columns[rank[t.task_id]] ||= []).push(t.task_id));
  const w = compact ? 112 : 150, h = compact ? 26 : 34, gx = compact ? 36 : 56, gy = compact ? 10 : 16, pad = 8;
  const pos = {};
  const tallest = Math.max(...columns.map((c) => c.length));
  columns.forEach((col, ci) => col.forEach((id, ri) => {
    const offset = ((tallest - col.length) * (h + gy)) / 2;
    pos[id] = { x: pad + ci * (w + gx), y: pad + offset + ri * (h + gy) };
  }));
  const width = pad * 2 + columns.length * w + (columns.length - 1) * gx;
  const height = pad * 2 + tallest * h + (tallest - 1) * gy;
  let edges = "";
  tasks.forEach((t) => (t.upstream || []).forEach((u) => {
    if (!pos[u]) return;
    const a = pos[u], b = pos[t.task_id];
    const x1 = a.x + w, y1 = a.y + h / 2, x2 = b.x - 4, y2 = b.y + h / 2, mx = (x1 + x2) / 2;
    edges += `<path class="edge" marker-end="url(#arrow)" d="M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}"/>`;
  }));
  const label = (id) => (id.length > (compact ? 15 : 20) ? id.slice(0, compact ? 14 : 19) + "…" : id);
  const nodes = tasks.map((t) => {
    const p = pos[t.task_id];
    const cls = `node t-${esc(states[t.task_id] || "plain")}${clickable ? " clickable" : ""}${selected === t.task_id ? " selected" : ""}`;
    return `<g class="${cls}" data-task="${esc(t.task_id)}" transform="translate(${p.x},${p.y})"><title>${esc(t.task_id)}${states[t.task_id] ? ": " + esc(states[t.task_id]) : ""}</title>` +
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
    return `<div class="name"><a data-log="${esc(t.task_id)}" class="task-link">${esc(t.task_id)}</a> ${badge(t.state)}</div>` +
      `<div class="track" title="${esc(t.task_id)}">${bar}</div><div class="small muted">${esc(duration(t.started_at, t.ended_at))}${t.try_number > 1 ? ` · try ${t.try_number}` : ""}</div>`;
  }).join("");
  return `<div class="gantt">${rows}</div><div class="row spread small muted" style="margin-top:6px;margin-left:180px;margin-right:100px"><span>0</span><span>${esc(duration(new Date(t0).toISOString(), new Date(t1).toISOString()))}</span></div>`;
}

function chartSvg(counts) {
  const width = 640, height = 120, pad = 18;
  const max = Math.max(1, ...counts.map((c) => c.count));
  const bw = (width - pad * 2) / counts.length;
  const bars = counts.map((c, i) => {
    if (!c.count) return "";
    const bh = ((height - pad * 2) * c.count) / max;
    return `<rect class="bar" x="${(pad + i * bw + 1).toFixed(1)}" y="${(height - pad - bh).toFixed(1)}" width="${Math.max(bw - 2, 1).toFixed(1)}" height="${bh.toFixed(1)}"><title>${c.count} event(s) from ${new Date(c.start).toLocaleTimeString()}</title></rect>`;
  }).join("");
  const first = counts.length ? new Date(counts[0].start).toLocaleTimeString() : "";
  return `<svg class="chart" viewBox="0 0 ${width} ${height}" role="img" aria-label="events over time" style="width:100%;max-width:${width}px">` +
    `<line x1="${pad}" y1="${height - pad}" x2="${width - pad}" y2="${height - pad}" stroke="#dee2e6"/>${bars}` +
    `<text x="${pad}" y="${height - 4}">${esc(first)}</text><text x="${width - pad}" y="${height - 4}" text-anchor="end">now</text>` +
    `<text x="${pad}" y="12">max ${max}/slice</text></svg>`;
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
        <div class="small muted">${nextTrigger(d)}${d.description ? " · " + esc(d.description) : ""}</div>
        <div style="margin:10px 0">${graphSvg(d.tasks, {}, { compact: true })}</div>
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
      <h2>Runs</h2><div id="dag-runs"></div>`;
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
      <button id="pause" class="${dag.is_paused ? "" : "secondary"}">${dag.is_paused ? "Unpause" : "Pause"}</button></div>`;
    $("#pause", el).addEventListener("click", (e) => act(e.target, `/dags/${enc(dagId)}/${dag.is_paused ? "unpause" : "pause"}`));
    const latest = runs.items[0];
    let states = {};
    if (latest) {
      const detail = await api(`/runs/${enc(latest.run_id)}`);
      states = Object.fromEntries(detail.tasks.map((t) => [t.task_id, t.state]));
      $("#dag-graph-note", el).innerHTML = `Colours: the newest run, ${runLink(latest.run_id)} ${badge(latest.state)}`;
    }
    $("#dag-graph", el).innerHTML = graphSvg(dag.tasks, states);
    $("#dag-runs", el).innerHTML = runsTable(runs.items, false) + pager(runs);
    bindPager(el, this);
  },
};

function runsTable(runs, withDag = true) {
  if (!runs.length) return `<div class="empty">No runs.</div>`;
  return `<table class="runs"><thead><tr><th>Run</th>${withDag ? "<th>DAG</th>" : ""}<th>State</th><th>Type</th><th>Queued</th><th>Duration</th><th>Events</th></tr></thead><tbody>` +
    runs.map((r) => `<tr data-run="${esc(r.run_id)}"><td>${runLink(r.run_id)}</td>${withDag ? `<td><a href="#/dags/${enc(r.dag_id)}">${esc(r.dag_id)}</a></td>` : ""}` +
      `<td>${badge(r.state)}</td><td>${esc(r.run_type)}</td><td title="${esc(r.queued_at)}">${esc(ago(r.queued_at))}</td>` +
      `<td>${esc(duration(r.started_at, r.ended_at))}</td><td>${r.event_ids.map(eventLink).join(", ")}</td></tr>`).join("") + `</tbody></table>`;
}

views.runs = {
  mount(el) {
    this.offset = 0;
    el.innerHTML = `<div class="row spread"><div><h1>Runs</h1><div class="sub">Newest first, with the events each consumed.</div></div>
      <select id="run-state" aria-label="state"><option value="">every state</option><option>queued</option><option>running</option><option>success</option><option>failed</option></select></div><div id="run-list"></div>`;
    $("#run-state", el).addEventListener("change", () => { this.offset = 0; refreshNow(); });
  },
  async refresh(el) {
    const state = $("#run-state", el).value;
    const page = await api(`/runs?limit=50&offset=${this.offset}${state ? `&state=${state}` : ""}`);
    $("#run-list", el).innerHTML = runsTable(page.items) + pager(page);
    bindPager(el, this);
  },
};

views.run = {
  mount(el, [runId]) {
    this.runId = runId;
    this.selected = null;
    el.innerHTML = `<div id="run-head"></div><div class="card"><h2 style="margin-top:0">Tasks</h2><div id="run-graph"></div><div id="run-gantt" style="margin-top:14px"></div></div>
      <div class="card" id="log-card" hidden><div class="row spread"><h2 style="margin:0" id="log-title"></h2><button class="secondary" id="retry-task" hidden>Retry this task</button></div><pre id="log"></pre></div>
      <div class="card"><h2 style="margin-top:0">Caused by</h2><div id="run-events"></div></div>`;
    el.addEventListener("click", (e) => {
      const target = e.target.closest("[data-log], [data-task]");
      if (target) { this.selected = target.dataset.log || target.dataset.task; refreshNow(); }
    });
    $("#retry-task", el).addEventListener("click", (e) => act(e.target, `/runs/${enc(runId)}/tasks/${enc(this.selected)}/retry`, undefined, () => toast(`Retrying ${this.selected}`)));
  },
  async refresh(el) {
    const run = await api(`/runs/${enc(this.runId)}`);
    const dag = await api(`/dags/${enc(run.dag_id)}`).catch(() => ({ tasks: run.tasks.map((t) => ({ task_id: t.task_id, upstream: [] })) }));
    $("#run-head", el).innerHTML = `<div class="row spread"><div><h1 class="mono" style="font-size:17px">${esc(run.run_id)}</h1>
      <div class="sub"><a href="#/dags/${enc(run.dag_id)}">${esc(run.dag_id)}</a> · <span id="run-state">${badge(run.state)}</span> · ${esc(run.run_type)} · queued ${esc(ago(run.queued_at))}
      ${run.started_at ? ` · ran ${esc(duration(run.started_at, run.ended_at))}` : ""}${Object.keys(run.conf || {}).length ? ` · conf <code>${esc(JSON.stringify(run.conf))}</code>` : ""}</div></div>
      ${run.state === "failed" ? `<button id="retry-run">Retry failed tasks</button>` : ""}</div>`;
    const retry = $("#retry-run", el);
    if (retry) retry.addEventListener("click", (e) => act(e.target, `/runs/${enc(run.run_id)}/retry`, undefined, (r) => toast(`Retrying ${r.retried.join(", ") || "the run"}`)));
    const states = Object.fromEntries(run.tasks.map((t) => [t.task_id, t.state]));
    $("#run-graph", el).innerHTML = graphSvg(dag.tasks, states, { clickable: true, selected: this.selected });
    $("#run-gantt", el).innerHTML = gantt(run);
    $("#run-events", el).innerHTML = run.events.length ? `<table><thead><tr><th>Event</th><th>Asset</th><th>Source</th><th>When</th><th>Payload</th><th>Runs it caused</th></tr></thead><tbody>` +
      run.events.map((ev) => `<tr><td>${eventLink(ev.id)}</td><td><a href="#/assets/${enc(ev.asset)}">${esc(ev.asset)}</a></td><td class="mono">${esc(ev.source)}</td>` +
        `<td>${esc(ago(ev.timestamp))}</td><td><code>${esc(JSON.stringify(ev.extra.payload ?? ev.extra)).slice(0, 120)}</code></td><td>${ev.runs.map((r) => runLink(r.run_id, r.run_id === run.run_id ? "this run" : r.run_id)).join("<br>")}</td></tr>`).join("") + `</tbody></table>`
      : `<p class="muted">No event: a ${esc(run.run_type)} run.</p>`;
    const card = $("#log-card", el);
    if (this.selected && states[this.selected] !== undefined) {
      const log = await api(`/runs/${enc(run.run_id)}/tasks/${enc(this.selected)}/log`);
      card.hidden = false;
      $("#log-title", el).innerHTML = `Log of ${esc(log.task_id)} ${badge(log.state)} <span class="small muted">try ${log.try_number}</span>`;
      $("#log", el).textContent = (log.log || "(nothing printed)") + (log.error ? `\n--- error ---\n${log.error}` : "");
      $("#retry-task", el).hidden = log.state !== "failed" || run.state !== "failed";
    } else {
      card.hidden = true;
    }
  },
};

function eventsTable(events) {
  if (!events.length) return `<div class="empty">No events.</div>`;
  return `<table class="events"><thead><tr><th>Event</th><th>Asset</th><th>Source</th><th>When</th><th>Payload</th><th>Message</th><th>Runs it caused</th></tr></thead><tbody>` +
    events.map((ev) => {
      const m = ev.extra.message || {};
      const where = [m.broker, m.queue || m.topic || m.stream, m.partition !== undefined ? `p${m.partition}` : "", m.offset !== undefined ? `@${m.offset}` : "", m.message_id].filter((x) => x !== undefined && x !== "").join(" ");
      return `<tr data-event="${ev.id}"><td>${eventLink(ev.id)}</td><td><a href="#/assets/${enc(ev.asset)}">${esc(ev.asset)}</a></td><td class="mono">${esc(ev.source)}</td><td title="${esc(ev.timestamp)}">${esc(ago(ev.timestamp))}</td>` +
        `<td><code>${esc(JSON.stringify(ev.extra.payload !== undefined ? ev.extra.payload : ev.extra).slice(0, 100))}</code></td><td class="small mono">${esc(where)}</td>` +
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
    el.innerHTML = `<h1>Events</h1><div class="sub">Every asset event, newest first: where it came from and which runs it caused.</div><div id="event-list"></div>`;
  },
  async refresh(el) {
    const page = await api(`/events?limit=50&offset=${this.offset}`);
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
    $("#event-message", el).innerHTML = message ? json(message) : "(not from a message)";
    $("#event-runs", el).innerHTML = ev.runs.length ? `<table><thead><tr><th>Run</th><th>DAG</th><th>State</th></tr></thead><tbody>` +
      ev.runs.map((r) => `<tr><td>${runLink(r.run_id)}</td><td><a href="#/dags/${enc(r.dag_id)}">${esc(r.dag_id)}</a></td><td>${badge(r.state)}</td></tr>`).join("") + `</tbody></table>`
      : `<p class="muted">No run yet (a paused DAG, a batch still filling, or no DAG scheduled on ${esc(ev.asset)}).</p>`;
  },
};

views.watchers = {
  mount(el) {
    el.innerHTML = `<h1>Watchers</h1><div class="sub">Each watcher turns messages from one queue into events of one asset.</div><div id="watcher-list"></div>`;
  },
  async refresh(el) {
    const page = await api("/watchers?limit=500");
    $("#watcher-list", el).innerHTML = page.items.length ? `<table><thead><tr><th>Watcher</th><th>Queue</th><th>State</th><th>Last message</th><th>Received</th><th>Events</th><th>Deduped</th><th>Skipped</th><th>Dead letters</th><th>Lag</th><th>Last error</th></tr></thead><tbody>` +
      page.items.map((w) => `<tr><td><a href="#/assets/${enc(w.asset)}">${esc(w.asset)}</a> / ${esc(w.name)}</td><td class="mono small">${esc(w.url)}</td><td>${badge(w.state)}</td>` +
        `<td>${esc(ago(w.last_message_at)) || '<span class="muted">never</span>'}</td><td>${w.received}</td><td>${w.events}</td><td>${w.deduped}</td><td>${w.skipped}</td>` +
        `<td>${w.dead_lettered ? `<a href="#/dead-letters">${w.dead_lettered}</a>` : 0}</td><td>${w.lag ?? ""}</td><td class="small error">${esc(w.last_error || "")}</td></tr>`).join("") + `</tbody></table>`
      : `<div class="empty">No watchers.</div>`;
  },
};

views["dead-letters"] = {
  mount(el) {
    this.offset = 0;
    el.innerHTML = `<h1>Dead letters</h1><div class="sub">Messages that could not become events, kept with the reason. Replay runs one through its watcher's trigger again.</div><div id="dead-list"></div>`;
    el.addEventListener("click", (e) => {
      const b = e.target.closest("[data-replay]");
      if (b) act(b, `/dead-letters/${b.dataset.replay}/replay`, undefined, () => toast(`Replay of dead letter ${b.dataset.replay} requested`));
    });
  },
  async refresh(el) {
    const page = await api(`/dead-letters?limit=50&offset=${this.offset}`);
    $("#dead-list", el).innerHTML = page.items.length ? `<table><thead><tr><th>#</th><th>Source</th><th>Reason</th><th>Body</th><th>When</th><th>Replay</th></tr></thead><tbody>` +
      page.items.map((d) => `<tr data-dead="${d.id}"><td>${d.id}</td><td class="mono small">${esc(d.source)}</td><td class="error">${esc(d.error)}</td>` +
        `<td><code>${esc(d.body.slice(0, 120))}</code>${d.body_encoding ? ` <span class="small muted">(${esc(d.body_encoding)})</span>` : ""}</td><td>${esc(ago(d.created_at))}</td><td class="replay-state">` +
        (d.replayed_at ? `replayed ${esc(ago(d.replayed_at))}` : d.replay_requested_at ? `<span class="badge s-queued">replay requested</span>` : `<button class="secondary" data-replay="${d.id}">Replay</button>`) +
        `</td></tr>`).join("") + `</tbody></table>` + pager(page)
      : `<div class="empty">No dead letters: every message became an event.</div>`;
    bindPager(el, this);
  },
};

// -- routing, polling, login --------------------------------------------------------------------

const routes = [
  [/^#\/dags\/(.+)$/, "dag"], [/^#\/dags\/?$/, "dags"], [/^#\/runs\/(.+)$/, "run"], [/^#\/runs\/?$/, "runs"],
  [/^#\/assets\/(.+)$/, "asset"], [/^#\/assets\/?$/, "assets"], [/^#\/events\/(\d+)$/, "event"], [/^#\/events\/?$/, "events"],
  [/^#\/watchers\/?$/, "watchers"], [/^#\/dead-letters\/?$/, "dead-letters"],
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
