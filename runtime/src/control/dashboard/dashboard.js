// The job's dashboard: reads the control API's /status and /checkpoints
// every second and draws them; the button posts /savepoints (with the
// control token typed in, if the job has one) and follows the savepoint.
"use strict";

const $ = (id) => document.getElementById(id);
const samples = []; // [milliseconds, recordsIn], the last two minutes
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

async function json(path) {
  const answer = await fetch(path, { cache: "no-store" });
  if (!answer.ok) throw new Error(`${path}: ${answer.status}`);
  return answer.json();
}

function showStatus(s, now) {
  $("job").textContent = s.job;
  const shape = [`parallelism ${s.parallelism}`];
  if (s.pod) shape.push(`pod ${s.pod.index} of ${s.pod.pods}`);
  if (s.startedAt) shape.push(`up ${duration(now - Date.parse(s.startedAt))}`);
  $("shape").textContent = shape.join(" · ");
  $("state").textContent = s.state;
  $("state").className = `state ${s.state}`;
  $("error").hidden = !s.error;
  $("error").textContent = s.error ? `Error: ${s.error}` : "";
  $("records-in").textContent = number(s.recordsIn);
  $("watermark").textContent = s.watermark ? s.watermark.replace("T", " ").replace("Z", "") : "–";
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
  samples.push([now, s.recordsIn]);
  while (samples.length && samples[0][0] < now - WINDOW_MS) samples.shift();
  drawChart(now);
}

function drawChart(now) {
  const rates = [];
  for (let i = 1; i < samples.length; i++) {
    const [t0, n0] = samples[i - 1];
    const [t1, n1] = samples[i];
    rates.push([t1, ((n1 - n0) * 1000) / Math.max(1, t1 - t0)]);
  }
  const top = Math.max(1, ...rates.map(([, r]) => r));
  $("line").setAttribute("points", rates
    .map(([t, r]) => `${(600 * (t - (now - WINDOW_MS))) / WINDOW_MS},${78 - (74 * r) / top}`)
    .join(" "));
}

function showCheckpoints(list) {
  const rows = list.slice().reverse().map((c) => {
    const row = document.createElement("tr");
    const cells = [c.id, c.kind, new Date(c.completedAt).toLocaleTimeString("en-GB"),
      `${c.durationMs} ms`, bytes(c.bytes), c.path];
    for (const [i, text] of cells.entries()) {
      const cell = document.createElement("td");
      cell.textContent = text;
      if (i === 5) cell.className = "path";
      row.appendChild(cell);
    }
    return row;
  });
  $("checkpoints").replaceChildren(...rows);
}

async function refresh() {
  const now = Date.now();
  try {
    showStatus(await json("/status"), now);
    showCheckpoints(await json("/checkpoints"));
  } catch (e) {
    $("state").textContent = "unreachable";
    $("state").className = "state unreachable";
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
