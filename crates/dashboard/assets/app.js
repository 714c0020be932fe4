// The dida dashboard page: draws each snapshot the server pushes (server-sent
// events) and the PuppetMaster's feed. Everything is built with DOM calls and
// textContent, never innerHTML: keys, values and outputs come from users.
"use strict";

// Each node's colour comes from the server (crates/dashboard/src/colours.rs): given
// when a node is first listed and kept while the dashboard runs, so it is the same
// whoever else fails, joins or leaves, and across reloads of the page. Colours of
// nodes no longer listed are remembered, for the timelines of executions they ran.
const colours = new Map();
function learnColours(nodes) {
  nodes.forEach((n) => { if (n.colour) colours.set(n.id, n.colour); });
}
function colour(name) {
  return colours.get(name) || "#8a8f99";
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") node.className = v;
    else if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

function badge(state) {
  return el("span", { class: "badge state-" + state }, state);
}

function percent(share) {
  return share === null || share === undefined ? "" : (share * 100).toFixed(1) + "%";
}

function orBlank(value) {
  return value === null || value === undefined ? "" : value;
}

function renderSummary(snapshot) {
  const counts = {};
  for (const node of snapshot.nodes) counts[node.state] = (counts[node.state] || 0) + 1;
  const parts = Object.entries(counts).map(([state, n]) => `${n} ${state}`);
  const s = snapshot.scheduler;
  if (s) parts.push(`${s.submitted} submitted, ${s.finished} finished, ${s.running} running`);
  document.getElementById("summary").textContent = `${snapshot.nodes.length} nodes: ` + parts.join(" · ");
}

function renderNodes(snapshot) {
  const body = document.querySelector("#nodes tbody");
  body.replaceChildren(...snapshot.nodes.map((n) =>
    el("tr", { "data-node": n.id, "data-role": n.role, "data-state": n.state, "data-process": n.process },
      el("td", {}, el("b", {}, n.id)),
      el("td", {}, n.role),
      el("td", { class: "state" }, badge(n.state)),
      el("td", { class: "note" }, n.detail),
      el("td", {}, orBlank(n.load)),
      el("td", {}, orBlank(n.keys)),
      el("td", {}, orBlank(n.records)),
      el("td", {}, percent(n.primary_share)),
      el("td", {}, percent(n.replica_share)),
      el("td", {}, orBlank(n.process)),
      el("td", {}, n.metrics ? el("a", { href: "http://" + n.metrics + "/metrics" }, n.metrics) : ""),
    )));
}

let drawnRing = "";
function renderRing(snapshot) {
  const ring = snapshot.ring;
  const note = document.getElementById("ring-note");
  const figure = document.getElementById("ring");
  if (!ring) {
    figure.replaceChildren();
    note.textContent = "no storage node answers";
    drawnRing = "";
    return;
  }
  const key = JSON.stringify(ring.excluded) + ring.ranges.length + ":" + ring.epoch;
  if (key === drawnRing) return;
  drawnRing = key;
  const arcs = [];
  // Inner band: the primary of each range; outer bands: its other replicas.
  for (const range of ring.ranges) {
    const end = range.end < range.start ? range.end + 1 : range.end;
    range.replicas.forEach((node, i) => {
      const inner = 55 + i * 15, outer = inner + 13;
      const arc = svg("path", { d: arcPath(range.start, end, inner, outer), fill: colour(node), opacity: i === 0 ? 1 : 0.55 });
      arc.append(svg("title"));
      arc.firstChild.textContent = `${i === 0 ? "leads" : "replica " + (i + 1)}: ${node} (${range.replicas.join(", ")})`;
      arcs.push(arc);
    });
  }
  const label = svg("text", { x: 0, y: 4, "text-anchor": "middle", "font-size": 11 });
  label.textContent = `${ring.ranges.length} ranges · RF ${ring.replication_factor}` + (ring.epoch == null ? "" : ` · epoch ${ring.epoch}`);
  figure.replaceChildren(...arcs, label);
  // A removed storage node is no longer part of the ring: left out of its legend.
  const storage = snapshot.nodes.filter((n) => n.role === "storage" && n.state !== "removed");
  document.getElementById("ring-legend").replaceChildren(...storage.map((n) =>
    el("span", { "data-node": n.id }, el("i", { style: "background:" + colour(n.id) }), `${n.id} leads ${percent(n.primary_share) || "0%"}`)));
  note.textContent = ring.excluded.length ? `out of the ring: ${ring.excluded.join(", ")}` : "every storage node is in the ring";
}

function arcPath(start, end, inner, outer) {
  const point = (f, r) => {
    const a = 2 * Math.PI * f - Math.PI / 2;
    return `${(r * Math.cos(a)).toFixed(2)} ${(r * Math.sin(a)).toFixed(2)}`;
  };
  const large = end - start > 0.5 ? 1 : 0;
  return `M ${point(start, outer)} A ${outer} ${outer} 0 ${large} 1 ${point(end, outer)} ` +
    `L ${point(end, inner)} A ${inner} ${inner} 0 ${large} 0 ${point(start, inner)} Z`;
}

function renderChart(id, series, lines, unit) {
  const figure = document.getElementById(id);
  const width = 400, height = 120, top = 14;
  const values = series.flatMap((p) => lines.map((l) => p[l.field])).filter((v) => v !== null && v !== undefined);
  const max = Math.max(1, ...values);
  const x = (i) => (series.length < 2 ? 0 : (i / (series.length - 1)) * width);
  const y = (v) => height - (v / max) * (height - top);
  const children = [];
  for (const line of lines) {
    const points = series.map((p, i) => (p[line.field] === null ? null : `${x(i).toFixed(1)},${y(p[line.field]).toFixed(1)}`)).filter(Boolean);
    children.push(svg("polyline", { points: points.join(" "), fill: "none", stroke: line.colour, "stroke-width": 2 }));
  }
  const caption = svg("text", { x: 2, y: 11, "font-size": 11 });
  const last = series.length ? series[series.length - 1] : null;
  caption.textContent = lines.map((l) => `${l.name}: ${last && last[l.field] !== null ? Number(last[l.field]).toFixed(1) : "–"}`).join("  ") + `  (max ${max.toFixed(1)} ${unit}, last minute)`;
  children.push(caption);
  figure.replaceChildren(...children);
}

// Operators of running executions reported by workers in debug mode, by
// execution id: runs travel with the outcome, but debug reports arrive as each
// operator finishes, so a running execution shows its progress.
const reported = new Map();

function renderExecutions(snapshot) {
  const body = document.querySelector("#executions tbody");
  body.replaceChildren(...snapshot.executions.map((e) => {
    const end = e.ended_unix_ms || snapshot.at_unix_ms;
    const span = Math.max(1, end - e.submitted_unix_ms);
    let timeline;
    if (e.runs.length || e.status !== "running") {
      timeline = el("div", { class: "timeline" }, ...e.runs.map((r) => {
        const left = Math.max(0, Math.min(100, ((r.started_unix_ms - e.submitted_unix_ms) / span) * 100));
        const width = Math.min(100 - left, (r.duration_us / 1000 / span) * 100);
        return el("span", {
          class: "run" + (r.error ? " error" : ""),
          "data-operator": r.operator, "data-worker": r.worker, "data-order": r.order,
          title: `#${r.order} ${r.operator} on ${r.worker}: ${(r.duration_us / 1000).toFixed(2)} ms${r.error ? " — " + r.error : ""}`,
          style: `left:${left}%;width:${width}%;background:${colour(r.worker)}`,
        }, `${r.operator}@${r.worker}`);
      }));
    } else {
      const done = reported.get(e.id) || [];
      timeline = el("div", { class: "note" },
        `running for ${end - e.submitted_unix_ms} ms`,
        ...done.map((r) => el("span", { class: "badge state-running", style: "margin-left:.5em" }, `#${r.order} ${r.operator}@${r.worker} done`)));
    }
    return el("tr", { "data-execution": e.id, "data-status": e.status },
      el("td", {}, el("code", {}, e.id)),
      el("td", {}, e.app),
      el("td", {}, badge(e.status), e.error ? el("div", { class: "note" }, e.error) : null),
      el("td", {}, e.ended_unix_ms ? e.ended_unix_ms - e.submitted_unix_ms : ""),
      el("td", {}, timeline));
  }));
}

function render(snapshot) {
  learnColours(snapshot.nodes);
  renderSummary(snapshot);
  renderNodes(snapshot);
  renderRing(snapshot);
  renderChart("throughput", snapshot.series, [{ field: "finished_per_s", name: "executions/s", colour: "#3b6fd8" }], "/s");
  renderChart("latency", snapshot.series, [
    { field: "p50_ms", name: "p50 ms", colour: "#2f9e5a" },
    { field: "p99_ms", name: "p99 ms", colour: "#d8643b" },
  ], "ms");
  renderExecutions(snapshot);
}

function appendFeed(line) {
  if (line.kind === "debug") {
    let report;
    try { report = JSON.parse(line.text); } catch { return; }
    if (!reported.has(report.id)) reported.set(report.id, []);
    while (reported.size > 500) reported.delete(reported.keys().next().value);
    reported.get(report.id).push({ order: report.order, operator: report.operator, worker: report.worker });
    const body = document.querySelector("#debug tbody");
    body.prepend(el("tr", { "data-execution": report.id },
      el("td", {}, el("code", {}, report.id)),
      el("td", {}, report.order),
      el("td", {}, report.operator),
      el("td", {}, report.worker),
      el("td", {}, report.error ? "error: " + report.error : orBlank(report.output)),
      el("td", {}, (report.written || []).map((w) => JSON.stringify(w)).join(" "))));
    while (body.children.length > 200) body.lastChild.remove();
    return;
  }
  const pane = document.getElementById("console");
  const atBottom = pane.scrollTop + pane.clientHeight >= pane.scrollHeight - 4;
  pane.append(el("div", { class: line.kind }, line.kind === "command" ? "» " + line.text : line.text));
  while (pane.children.length > 1000) pane.firstChild.remove();
  if (atBottom) pane.scrollTop = pane.scrollHeight;
}

function connect() {
  const events = new EventSource("/api/events");
  const status = document.getElementById("connection");
  events.addEventListener("open", () => { status.textContent = "live"; status.className = "badge state-alive"; });
  events.addEventListener("error", () => { status.textContent = "reconnecting"; status.className = "badge state-suspected"; });
  events.addEventListener("hello", (e) => {
    const hello = JSON.parse(e.data);
    document.getElementById("script-form").hidden = !hello.console;
    document.getElementById("console-note").hidden = hello.feed;
    document.getElementById("console").replaceChildren();
    document.querySelector("#debug tbody").replaceChildren();
  });
  events.addEventListener("snapshot", (e) => render(JSON.parse(e.data)));
  events.addEventListener("feed", (e) => appendFeed(JSON.parse(e.data)));
}

document.getElementById("script-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const input = document.getElementById("script-line");
  const line = input.value.trim();
  if (!line) return;
  input.value = "";
  const reply = await fetch("/api/script", {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ line }),
  });
  const answer = await reply.json().catch(() => ({ error: "no answer" }));
  if (answer.error) appendFeed({ kind: "diagnostic", text: "error: " + answer.error });
});

document.getElementById("records-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const key = document.getElementById("records-key").value.trim();
  const out = document.getElementById("records");
  if (!key) return;
  out.replaceChildren(el("p", { class: "note" }, "reading " + key + " from every node…"));
  const reply = await fetch("/api/records?key=" + encodeURIComponent(key));
  const view = await reply.json().catch(() => ({ error: "no answer" }));
  if (view.error) { out.replaceChildren(el("p", { class: "note" }, "error: " + view.error)); return; }
  out.replaceChildren(
    el("p", {}, `${view.key}: replicas ${view.replicas.join(", ")}; newest version ${view.newest || "none"}`),
    el("table", { id: "records-table" },
      el("thead", {}, el("tr", {}, el("th", {}, "node"), el("th", {}, "replica"), el("th", {}, "versions (newest first)"), el("th", {}, ""))),
      el("tbody", {}, ...view.nodes.map((h) => el("tr", { "data-node": h.node, class: h.stale ? "stale" : "" },
        el("td", {}, h.node),
        el("td", {}, h.replica ? (h.node === view.replicas[0] ? "primary" : "replica") : ""),
        el("td", {}, h.error ? "error: " + h.error : h.versions.map((v) => `${v.version} = ${v.value}`).join("  ·  ")),
        el("td", {}, h.stale ? el("span", { class: "badge state-suspected" }, "stale") : ""))))));
});

connect();
