// Weir's dashboard: polls the REST API every second and draws the jobs, one job's dataflow
// graph with live rates, its checkpoints, exceptions and SQL. A server started with a token
// needs it: open /#token=<token> once (kept for the browser tab).
"use strict";

const params = new URLSearchParams(location.hash.slice(1));
if (params.get("token")) sessionStorage.setItem("weir-token", params.get("token"));
let selected = params.get("job");

async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json" };
  const token = sessionStorage.getItem("weir-token");
  if (token) headers["Authorization"] = "Bearer " + token;
  const response = await fetch(path, { ...options, headers });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((body.errors || [response.statusText]).join("; "));
  return body;
}

const $ = (id) => document.getElementById(id);
function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}
function duration(ms) {
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
}
const count = (n) => Math.round(n).toLocaleString("en-US");
const bytes = (n) => n >= 1 << 20 ? (n / (1 << 20)).toFixed(1) + " MiB" : n >= 1024 ? (n / 1024).toFixed(1) + " KiB" : n + " B";
const time = (ms) => ms == null ? "-" : new Date(ms).toISOString().replace("T", " ").slice(0, 23);
const perSecond = (ms) => ms == null ? "-" : (ms / 10).toFixed(0) + " %";

async function refreshJobs() {
  const { jobs } = await api("/jobs");
  const body = $("jobs").tBodies[0];
  body.replaceChildren();
  for (const job of jobs) {
    const row = body.insertRow();
    row.dataset.id = job.id;
    if (job.id === selected) row.className = "selected";
    cell(row, job.name);
    cell(row, job.status).innerHTML = `<span class="status ${job.status}">${job.status}</span>`;
    cell(row, duration(job.duration));
    cell(row, job.id.slice(0, 8)).title = job.id;
    row.onclick = () => { selected = job.id; refresh(); };
  }
  $("no-jobs").hidden = jobs.length > 0;
  if (!selected && jobs.length) selected = jobs[0].id;
}

// Columns by depth in the graph, rows in order within a column.
function drawGraph(plan, vertices) {
  const svg = $("graph");
  const byId = new Map(vertices.map((v) => [v.id, v]));
  const depth = new Map();
  for (const node of plan.nodes) {
    const inputs = node.inputs.map((i) => depth.get(i.id) ?? 0);
    depth.set(node.id, inputs.length ? Math.max(...inputs) + 1 : 0);
  }
  const columns = [];
  for (const node of plan.nodes) (columns[depth.get(node.id)] ||= []).push(node);
  const W = 210, H = 74, GX = 60, GY = 20;
  const position = new Map();
  columns.forEach((nodes, c) => nodes.forEach((n, r) => position.set(n.id, { x: 10 + c * (W + GX), y: 10 + r * (H + GY) })));
  const width = 20 + columns.length * (W + GX), height = 20 + Math.max(...columns.map((c) => c.length)) * (H + GY);
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  let html = '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0L10,5L0,10z" fill="#8b98a9"/></marker></defs>';
  for (const node of plan.nodes) {
    const to = position.get(node.id);
    for (const input of node.inputs) {
      const from = position.get(input.id);
      const x1 = from.x + W, y1 = from.y + H / 2, x2 = to.x, y2 = to.y + H / 2;
      html += `<path class="edge" d="M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2},${y2}"/>`;
      html += `<text class="edge-label" x="${(x1 + x2) / 2 - 20}" y="${(y1 + y2) / 2 - 4}">${escape(input.ship_strategy.split("[")[0])}</text>`;
    }
  }
  for (const node of plan.nodes) {
    const { x, y } = position.get(node.id);
    const m = (byId.get(node.id) || {}).metrics || {};
    const bp = m["back-pressured-time-ms-per-second"] || 0;
    const name = node.id.length > 30 ? node.id.slice(0, 29) + "…" : node.id;
    html += `<g class="node${bp > 500 ? " backpressured" : ""}" data-id="${escape(node.id)}"><title>${escape(node.description)}</title>` +
      `<rect x="${x}" y="${y}" width="${W}" height="${H}"/>` +
      `<text x="${x + 8}" y="${y + 17}" font-weight="bold">${escape(name)} ×${node.parallelism}</text>` +
      `<text x="${x + 8}" y="${y + 35}" class="rate">${count(m["write-records-per-second"] || m["read-records-per-second"] || 0)} rows/s</text>` +
      `<text x="${x + 8}" y="${y + 51}">wm ${escape(time(m["current-input-watermark"]).slice(11))}</text>` +
      `<text x="${x + 8}" y="${y + 67}">backpressure ${perSecond(bp)}</text></g>`;
  }
  svg.innerHTML = html;
}

function escape(text) {
  return String(text).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

async function refreshJob() {
  if (!selected) { $("job").hidden = true; return; }
  const [job, plan, checkpoints, exceptions] = await Promise.all([
    api(`/jobs/${selected}`), api(`/jobs/${selected}/plan`),
    api(`/jobs/${selected}/checkpoints`), api(`/jobs/${selected}/exceptions`),
  ]);
  $("job").hidden = false;
  $("job-name").textContent = job.name;
  $("job-status").textContent = job.state;
  $("job-status").className = "status " + job.state;
  $("job-id").textContent = job.jid;
  $("job-uptime").textContent = duration(job.duration);
  $("job-parallelism").textContent = job.parallelism;
  $("job-restarts").textContent = job.restarts;
  $("job-savepoint").textContent = job.savepoint ? " · savepoint " + job.savepoint : "";
  const running = job.state === "RUNNING";
  $("stop").disabled = !running;
  $("cancel").disabled = !["RUNNING", "RESTARTING", "CREATED"].includes(job.state);
  drawGraph(plan.plan, job.vertices);
  const vertices = $("vertices").tBodies[0];
  vertices.replaceChildren();
  for (const v of job.vertices) {
    const m = v.metrics, row = vertices.insertRow();
    row.dataset.id = v.id;
    cell(row, v.name);
    cell(row, v.parallelism, "number");
    cell(row, count(m["read-records"]), "number rows-in");
    cell(row, count(m["write-records"]), "number rows-out");
    cell(row, count(m["write-records-per-second"]), "number");
    cell(row, time(m["current-input-watermark"]));
    cell(row, perSecond(m["busy-time-ms-per-second"]), "number");
    cell(row, perSecond(m["back-pressured-time-ms-per-second"]), "number");
  }
  const c = checkpoints.counts;
  $("checkpoint-counts").textContent = `completed ${c.completed} · failed ${c.failed}` +
    (checkpoints.latest.restored ? ` · restored from ${checkpoints.latest.restored.id}` : "");
  const rows = $("checkpoints").tBodies[0];
  rows.replaceChildren();
  for (const k of checkpoints.history) {
    const row = rows.insertRow();
    cell(row, k.id + (k.is_savepoint ? " (savepoint)" : ""));
    cell(row, k.status);
    cell(row, time(k.trigger_timestamp));
    cell(row, k.end_to_end_duration + " ms", "number");
    cell(row, bytes(k.state_size), "number");
    cell(row, bytes(k.checkpointed_size), "number");
    if (k.failure_message) row.title = k.failure_message;
  }
  $("exceptions").replaceChildren(...exceptions.exceptionHistory.entries.map((e) => {
    const div = document.createElement("div");
    div.className = "exception";
    div.textContent = time(e.timestamp) + "  " + e.stacktrace;
    return div;
  }));
  if (!exceptions.exceptionHistory.entries.length) $("exceptions").textContent = "None.";
  $("sql").textContent = job.sql;
}

async function refresh() {
  try {
    await refreshJobs();
    await refreshJob();
    $("server-status").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (error) {
    $("server-status").textContent = "error: " + error.message;
  }
}

$("stop").onclick = async () => {
  try {
    const { "request-id": trigger } = await api(`/jobs/${selected}/stop`, { method: "POST", body: "{}" });
    $("action-result").textContent = "savepoint requested…";
    for (;;) {
      await new Promise((r) => setTimeout(r, 500));
      const info = await api(`/jobs/${selected}/savepoints/${trigger}`);
      if (info.status.id === "COMPLETED") {
        $("action-result").textContent = info.operation.location ? "savepoint " + info.operation.location : "savepoint failed: " + info.operation["failure-cause"];
        break;
      }
    }
  } catch (error) { $("action-result").textContent = "error: " + error.message; }
  refresh();
};
$("cancel").onclick = async () => {
  try {
    await api(`/jobs/${selected}?mode=cancel`, { method: "PATCH" });
    $("action-result").textContent = "cancel requested";
  } catch (error) { $("action-result").textContent = "error: " + error.message; }
  refresh();
};

refresh();
setInterval(refresh, 1000);
