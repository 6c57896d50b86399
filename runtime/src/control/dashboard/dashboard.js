// The job's dashboard: reads the control API's /status and /checkpoints
// every second and draws them; the button posts /savepoints (with the
// control token typed in, if the job has one) and follows the savepoint.
"use strict";

const $ = (id) => document.getElementById(id);
const samples = []; // [milliseconds, recordsIn, recordsOut], the last two minutes
const WINDOW_MS = 120000;
let last = null; // the previous /status, for rates

const duration = (ms) => {
  const s = Math.max(0, Math.floor(ms / 1000));
  const [h, m] = [Math.floor(s / 3600), Math.floor((s % 3600) / 60)];
  return h ? `${h}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
};
const number = (n) => (n === null || n === undefined ? "–" : n.toLocaleString("en"));
const bytes = (n) => {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
};
const time = (rfc3339) => (rfc3339 ? rfc3339.replace("T", " ").replace("Z", "") : "–");
const clock = (rfc3339) => new Date(rfc3339).toLocaleTimeString("en-GB");
const percent = (share) => `${Math.round(share * 100)}%`;
const stages = (s) => (s ? ["read", "decode", "route", "window"]
  .map((stage) => `${stage} ${percent(s[stage])}`).join(" · ") : "–");

async function json(path) {
  const answer = await fetch(path, { cache: "no-store" });
  if (!answer.ok) throw new Error(`${path}: ${answer.status}`);
  return answer.json();
}

// A table row of cells: text, or [text, class], or a node.
function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    if (cell instanceof Node) td.appendChild(cell);
    else if (Array.isArray(cell)) { td.textContent = cell[0]; td.className = cell[1]; }
    else td.textContent = cell;
    tr.appendChild(td);
  }
  return tr;
}

// Fills a table body with rows, or one that says there are none.
function fill(id, rows, none) {
  if (rows.length) { $(id).replaceChildren(...rows); return; }
  const columns = $(id).parentElement.querySelectorAll("th").length;
  const tr = row([[none, "empty"]]);
  tr.cells[0].colSpan = columns;
  $(id).replaceChildren(tr);
}

// A worker's last second as a bar of busy, idle and blocked time.
function timeBar(t) {
  const bar = document.createElement("div");
  bar.className = "bar";
  for (const [share, kind] of [[t.busy, "busy"], [t.idle, "idle"],
    [t.blockedOnExchange, "exchange"], [t.blockedOnSink, "sink"],
    [t.blockedOnDecode, "decode"]]) {
    const part = document.createElement("span");
    part.className = kind;
    part.style.width = percent(share);
    bar.appendChild(part);
  }
  return bar;
}

function showStatus(s, now) {
  $("job").textContent = s.job;
  const shape = [`parallelism ${s.parallelism}`];
  if (s.pod) shape.push(`pod ${s.pod.index} of ${s.pod.pods}`);
  if (s.startedAt) shape.push(`up ${duration(now - Date.parse(s.startedAt))}`);
  shape.push(s.restoredFrom ? `restored from ${s.restoredFrom}` : "started without a snapshot");
  $("shape").textContent = shape.join(" · ");
  $("state").textContent = s.state;
  $("state").className = `state ${s.state}`;
  $("error").hidden = !s.error;
  $("error").textContent = s.error ? `Error: ${s.error}` : "";
  $("records-in").textContent = number(s.recordsIn);
  $("watermark").textContent = time(s.watermark);
  $("lag").textContent = number(s.lag);
  $("late").textContent = number(s.late);
  $("malformed").textContent = number(s.malformed);
  $("unmatched").textContent = number(s.unmatched);
  $("restarts").textContent = number(s.restarts);
  if (last) {
    const seconds = (now - last.at) / 1000;
    $("in-rate").textContent = number(Math.round((s.recordsIn - last.status.recordsIn) / seconds));
    $("out-rate").textContent = number(Math.round((s.recordsOut - last.status.recordsOut) / seconds));
  }
  last = { at: now, status: s };
  samples.push([now, s.recordsIn, s.recordsOut]);
  while (samples.length && samples[0][0] < now - WINDOW_MS) samples.shift();
  drawChart(now);

  const workers = s.workers || [];
  fill("workers", workers.map((w) => row([w.index, timeBar(w.time), percent(w.time.busy),
    percent(w.time.idle),
    percent(w.time.blockedOnExchange + w.time.blockedOnSink + w.time.blockedOnDecode),
    [stages(w.stages), "stages"], time(w.watermark)])), "no worker has reported yet");
  fill("partitions", workers.flatMap((w) => w.partitions.map((p) => row([p.id, w.index,
    p.state, number(p.records), time(p.watermark), number(p.lag)]))), "none yet");
  fill("checkpoint-failures", (s.checkpointFailures || []).slice().reverse()
    .map((f) => row([f.id, f.kind, clock(f.at), [f.error, "why"]])), "none");
  fill("restart-list", (s.recentRestarts || []).slice().reverse()
    .map((r) => row([clock(r.at), [r.error, "why"]])), "none");
  fill("malformed-list", (s.recentMalformed || []).slice().reverse()
    .map((m) => row([clock(m.at), m.location, [m.error, "why"]])), "none");
}

function drawChart(now) {
  const rates = (column) => {
    const points = [];
    for (let i = 1; i < samples.length; i++) {
      const [t0, t1] = [samples[i - 1][0], samples[i][0]];
      points.push([t1, ((samples[i][column] - samples[i - 1][column]) * 1000) / Math.max(1, t1 - t0)]);
    }
    return points;
  };
  const [ins, outs] = [rates(1), rates(2)];
  const top = Math.max(1, ...ins.map(([, r]) => r), ...outs.map(([, r]) => r));
  const line = (points) => points
    .map(([t, r]) => `${(600 * (t - (now - WINDOW_MS))) / WINDOW_MS},${78 - (74 * r) / top}`)
    .join(" ");
  $("line").setAttribute("points", line(ins));
  $("line-out").setAttribute("points", line(outs));
}

function showCheckpoints(list) {
  fill("checkpoints", list.slice(-10).reverse().map((c) => {
    const p = c.phases;
    const phases = p ? `${p.alignmentMs} / ${p.syncMs} / ${p.uploadMs} / ${p.commitMs}` : "–";
    return row([c.id, c.kind, new Date(c.completedAt).toLocaleTimeString("en-GB"),
      `${c.durationMs} ms`, phases, bytes(c.bytes), [c.path, "path"]]);
  }), "none completed yet");
}

async function refresh() {
  const now = Date.now();
  try {
    showStatus(await json("/status"), now);
    showCheckpoints(await json("/checkpoints"));
  } catch (e) {
    // The process is gone (a failed job's pod restarting) or unreachable:
    // keep what it last said, and say so.
    $("state").textContent = "unreachable";
    $("state").className = "state unreachable";
    const seen = last ? ` It last said: ${last.status.state}` +
      (last.status.error ? `: ${last.status.error}` : "") : "";
    $("error").hidden = false;
    $("error").textContent = `The job's control API does not answer.${seen}`;
  }
}

async function takeSavepoint() {
  const result = $("savepoint-result");
  const headers = { "Content-Type": "application/json" };
  const token = $("token").value.trim();
  if (token) headers.Authorization = `Bearer ${token}`;
  result.textContent = "requested…";
  try {
    const answer = await fetch("/savepoints", { method: "POST", headers, body: "{}" });
    const body = await answer.json();
    if (!answer.ok) { result.textContent = `refused: ${body.error}`; return; }
    for (;;) {
      const s = await json(`/savepoints/${body.id}`);
      if (s.state === "completed") { result.textContent = `savepoint ${body.id} completed: ${s.path}`; break; }
      if (s.state === "failed") { result.textContent = `savepoint ${body.id} failed: ${s.error}`; break; }
      result.textContent = `savepoint ${body.id} in progress…`;
      await new Promise((done) => setTimeout(done, 500));
    }
  } catch (e) {
    result.textContent = `failed: ${e.message}`;
  }
  refresh();
}

$("savepoint").addEventListener("click", takeSavepoint);
refresh();
setInterval(refresh, 1000);
