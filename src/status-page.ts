// The admin endpoint's status page (GET /): one self-contained HTML document, no external
// scripts, fonts or styles, served with a Content-Security-Policy that admits exactly its own
// inline script and style by hash (CSP Level 2 hash sources; the hashes are computed here, at
// load, so the policy can never drift from the page). The script refreshes from /ring,
// /ring/arcs, /metrics and /last-reload on the same origin and builds the DOM with textContent
// only: backend ids come from the config and are shown as text, never parsed as HTML.

import { createHash } from 'node:crypto';

/** How often the page refreshes; the next refresh is scheduled when one ends, so they never overlap. */
export const REFRESH_MS = 2000;

const STYLE = String.raw`
:root { color-scheme: light dark; --bg: #fff; --fg: #1c2128; --muted: #57606a; --line: #d0d7de;
  --panel: #f6f8fa; --down: #cf222e; --drain: #9a6700; --up: #1a7f37; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #0d1117; --fg: #e6edf3; --muted: #8d96a0; --line: #30363d; --panel: #161b22;
    --down: #ff7b72; --drain: #d29922; --up: #3fb950; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 4px 16px; padding: 12px 16px;
  border-bottom: 1px solid var(--line); }
h1 { margin: 0; font-size: 18px; }
#summary { color: var(--muted); }
#status { margin-left: auto; color: var(--muted); }
#status.error { color: var(--down); font-weight: 600; }
main { display: grid; grid-template-columns: minmax(240px, 340px) minmax(0, 1fr); gap: 16px; padding: 16px;
  max-width: 1400px; }
section { min-width: 0; }
#ring { width: 100%; height: auto; display: block; }
#ring .track { fill: none; stroke: var(--line); }
#ring path { fill: none; }
#ring text { fill: var(--fg); text-anchor: middle; }
#ring .big { font-size: 22px; font-weight: 600; }
#ring .small { font-size: 9px; fill: var(--muted); }
.note { color: var(--muted); font-size: 12px; margin: 4px 0 0; text-align: center; }
dl { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: 6px 16px; margin: 0;
  padding: 12px 16px; background: var(--panel); border: 1px solid var(--line); border-radius: 6px; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.table-panel { grid-column: 1 / -1; overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--line); text-align: left; white-space: nowrap; }
th { position: sticky; top: 0; background: var(--panel); }
th button { all: unset; cursor: pointer; font-weight: 600; }
th button:focus-visible { outline: 2px solid var(--up); }
th[aria-sort="ascending"] button::after { content: " \25B2"; font-size: 10px; }
th[aria-sort="descending"] button::after { content: " \25BC"; font-size: 10px; }
.num { text-align: right; }
tbody tr:last-child td { border-bottom: 0; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; }
.state-down td { background: color-mix(in srgb, var(--down) 10%, transparent); }
.state-down .col-state { color: var(--down); font-weight: 600; }
.state-draining .col-state { color: var(--drain); font-weight: 600; }
.state-up .col-state { color: var(--up); }
@media (max-width: 720px) {
  main { grid-template-columns: minmax(0, 1fr); padding: 8px; gap: 10px; }
  header { padding: 8px; }
  #ring { max-width: 280px; margin: 0 auto; }
  th, td { padding: 4px 6px; }
  .col-address { display: none; }
}
`;

// Plain ES2020 in the page; no template literals, so this file's String.raw needs no escapes.
const SCRIPT = String.raw`
"use strict";
var REFRESH_MS = ${REFRESH_MS};
var COLUMNS = [
  { key: "id", label: "backend", numeric: false },
  { key: "address", label: "address", numeric: false },
  { key: "state", label: "state", numeric: false },
  { key: "weight", label: "weight", numeric: true },
  { key: "share", label: "share", numeric: true },
  { key: "active", label: "open", numeric: true },
  { key: "misplaced", label: "misplaced", numeric: true },
  { key: "connRate", label: "conn/s", numeric: true },
  { key: "byteRate", label: "bytes/s", numeric: true }
];
var STATE_ORDER = { up: 0, draining: 1, down: 2 };
var SVG = "http://www.w3.org/2000/svg";
var sort = { key: "id", dir: 1 };
var previous = null;   // the last /metrics sample: { at, conns, bytes }
var rows = [];         // the rows last drawn
var arcsKey = "";      // routing hash and states the drawn arcs belong to
var refreshes = 0;

function $(id) { return document.getElementById(id); }

var colours = new Map(); // backend id -> colour, from the last /ring

// Golden-angle hues over the backends in id order: any few neighbours in the list get clearly
// different colours (a hash of the id gave two blues to three backends). A reload that adds
// or removes a backend can recolour those after it; the table's swatches always match the ring.
function colourAt(i) {
  return "hsl(" + ((210 + i * 137.508) % 360).toFixed(1) + " " + (62 + (i % 2) * 14) + "% " + [46, 36, 56][i % 3] + "%)";
}

function get(path, json) {
  return fetch(path, { cache: "no-store" }).then(function (res) {
    if (!res.ok) throw new Error(path + ": HTTP " + res.status);
    return json ? res.json() : res.text();
  });
}

// The samples of the few metrics the page uses, from Prometheus text format.
function parseMetrics(text) {
  var wanted = { ringlb_connections_total: 1, ringlb_bytes_total: 1, process_start_time_seconds: 1, ringlb_max_connections: 1 };
  var out = { conns: new Map(), bytes: new Map(), start: null, max: null };
  var lines = text.split("\n");
  for (var i = 0; i < lines.length; i++) {
    var line = lines[i];
    if (line === "" || line.charAt(0) === "#") continue;
    var m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m || !wanted[m[1]]) continue;
    var value = Number(m[3]);
    var backend = null;
    var lm = /(?:^|,)backend="((?:[^"\\]|\\.)*)"/.exec(m[2] || "");
    if (lm) backend = lm[1].replace(/\\(.)/g, function (_, c) { return c === "n" ? "\n" : c; });
    if (m[1] === "process_start_time_seconds") out.start = value;
    else if (m[1] === "ringlb_max_connections") out.max = value;
    else if (backend !== null) {
      var map = m[1] === "ringlb_connections_total" ? out.conns : out.bytes;
      map.set(backend, (map.get(backend) || 0) + value);
    }
  }
  return out;
}

function rate(now, before, id, seconds) {
  if (!before || seconds <= 0) return null;
  var delta = (now.get(id) || 0) - (before.get(id) || 0);
  return delta < 0 ? null : delta / seconds; // a counter reset (restart): no rate this time
}

function percent(x) { return (x * 100).toFixed(2) + "%"; }
function perSecond(x) { return x === null ? "\u2013" : x.toFixed(1); }
function bytesPerSecond(x) {
  if (x === null) return "\u2013";
  var units = ["B/s", "kB/s", "MB/s", "GB/s"];
  var u = 0;
  while (x >= 1000 && u < units.length - 1) { x /= 1000; u++; }
  return (u === 0 ? x.toFixed(0) : x.toFixed(1)) + " " + units[u];
}
function duration(seconds) {
  seconds = Math.max(0, Math.floor(seconds));
  var d = Math.floor(seconds / 86400), h = Math.floor(seconds / 3600) % 24, m = Math.floor(seconds / 60) % 60, s = seconds % 60;
  if (d > 0) return d + "d " + h + "h";
  if (h > 0) return h + "h " + m + "m";
  if (m > 0) return m + "m " + s + "s";
  return s + "s";
}
function display(row, key) {
  var v = row[key];
  if (key === "share") return percent(v);
  if (key === "connRate") return perSecond(v);
  if (key === "byteRate") return bytesPerSecond(v);
  return String(v);
}

function compare(a, b) {
  var k = sort.key, x = a[k], y = b[k];
  if (k === "state") { x = STATE_ORDER[x]; y = STATE_ORDER[y]; }
  if (x === null) x = -Infinity;
  if (y === null) y = -Infinity;
  var c = x < y ? -1 : x > y ? 1 : 0;
  if (c === 0 && k !== "id") c = a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  return c * sort.dir;
}

function drawTable() {
  var sorted = rows.slice().sort(compare);
  var body = document.createDocumentFragment();
  for (var i = 0; i < sorted.length; i++) {
    var row = sorted[i];
    var tr = document.createElement("tr");
    tr.className = "state-" + row.state;
    tr.dataset.id = row.id;
    for (var c = 0; c < COLUMNS.length; c++) {
      var col = COLUMNS[c];
      var td = document.createElement("td");
      td.className = "col-" + col.key + (col.numeric ? " num" : "");
      td.dataset.col = col.key;
      if (col.numeric) td.dataset.value = row[col.key] === null ? "" : String(row[col.key]);
      if (col.key === "id") {
        var sw = document.createElement("span");
        sw.className = "swatch";
        sw.style.background = colours.get(row.id);
        td.appendChild(sw);
      }
      td.appendChild(document.createTextNode(display(row, col.key)));
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
  document.querySelector("#backends tbody").replaceChildren(body);
  var ths = document.querySelectorAll("#backends th");
  for (var j = 0; j < ths.length; j++) {
    var key = ths[j].dataset.key;
    if (key === sort.key) ths[j].setAttribute("aria-sort", sort.dir > 0 ? "ascending" : "descending");
    else ths[j].removeAttribute("aria-sort");
  }
}

function point(fraction, r) {
  var a = fraction * 2 * Math.PI - Math.PI / 2; // clockwise from the top, hash 0 at 12 o'clock
  return (r * Math.cos(a)).toFixed(3) + " " + (r * Math.sin(a)).toFixed(3);
}

function drawArcs(body) {
  var g = $("arcs");
  var frag = document.createDocumentFragment();
  var R = 90;
  for (var i = 0; i < body.arcs.length; i++) {
    var arc = body.arcs[i];
    if (arc.backend === null) continue; // nobody serves: the grey track shows through
    var path = document.createElementNS(SVG, "path");
    // A hair past its end, so antialiasing leaves no grey seam between neighbouring arcs.
    var end = Math.min(arc.end + 0.0004, 1);
    var span = end - arc.start;
    // An arc command cannot draw a whole circle: split one that covers it into two halves.
    var d = span >= 0.999999
      ? "M " + point(0, R) + " A " + R + " " + R + " 0 1 1 " + point(0.5, R) + " A " + R + " " + R + " 0 1 1 " + point(0, R)
      : "M " + point(arc.start, R) + " A " + R + " " + R + " 0 " + (span > 0.5 ? 1 : 0) + " 1 " + point(end, R);
    path.setAttribute("d", d);
    path.setAttribute("stroke", colours.get(arc.backend) || "gray");
    path.setAttribute("stroke-width", "18");
    path.dataset.backend = arc.backend;
    var title = document.createElementNS(SVG, "title");
    title.textContent = arc.backend;
    path.appendChild(title);
    frag.appendChild(path);
  }
  g.replaceChildren(frag);
  $("ring-note").textContent = body.drawn === "shares"
    ? "one arc per backend, sized by its share (this algorithm has no ring positions)"
    : body.exact
      ? body.arcs.length + " arcs, exact"
      : "drawn at " + body.arcs.length + " arcs (" + body.resolution + " bins): backends with a tiny share may not show";
}

function describeReload(r) {
  if (r === null) return "none since start";
  var when = new Date(r.at);
  var text = when.toLocaleTimeString() + " (" + duration((Date.now() - when.getTime()) / 1000) + " ago, " + r.trigger + "): ";
  if (r.result === "failure") return text + "failed, config kept: " + r.errors.join("; ");
  if (r.unchanged) return text + "config unchanged";
  var parts = ["moved " + percent(r.moved) + " of the hash space"];
  var list = function (label, ids) {
    if (ids.length === 0) return;
    parts.push(label + " " + (ids.length > 5 ? ids.slice(0, 5).join(", ") + " and " + (ids.length - 5) + " more" : ids.join(", ")));
  };
  list("added", r.added);
  list("removed", r.removed);
  list("changed", r.changed);
  if (r.misplaced > 0) parts.push(r.misplaced + " open connections misplaced");
  return text + parts.join("; ");
}

function render(ring, metrics, reload, at) {
  var seconds = previous ? (at - previous.at) / 1000 : 0;
  var open = 0, up = 0, down = 0, draining = 0, connRate = 0, anyRate = false;
  colours = new Map(ring.backends.map(function (b, i) { return [b.id, colourAt(i)]; }));
  rows = ring.backends.map(function (b) {
    var r = rate(metrics.conns, previous && previous.conns, b.id, seconds);
    if (r !== null) { connRate += r; anyRate = true; }
    open += b.active;
    if (b.state === "up") up++; else if (b.state === "down") down++; else draining++;
    return {
      id: b.id, address: b.address, state: b.state, weight: b.weight, share: b.share,
      active: b.active, misplaced: b.misplaced, connRate: r,
      byteRate: rate(metrics.bytes, previous && previous.bytes, b.id, seconds)
    };
  });
  previous = { at: at, conns: metrics.conns, bytes: metrics.bytes };
  drawTable();
  $("summary").textContent = ring.backends.length + " backends: " + up + " up, " + down + " down, " + draining + " draining";
  $("ring-up").textContent = up + "/" + ring.backends.length;
  $("ring-hash").textContent = "routing " + ring.routingHash.slice(0, 12);
  $("config-hash").textContent = ring.configHash;
  $("routing-hash").textContent = ring.routingHash;
  $("uptime").textContent = metrics.start === null ? "\u2013" : duration(Date.now() / 1000 - metrics.start);
  $("open-total").textContent = open + (metrics.max ? " of at most " + metrics.max : "");
  $("rate-total").textContent = anyRate ? connRate.toFixed(1) : "\u2013";
  $("last-reload").textContent = describeReload(reload.lastReload);
}

function setStatus(text, error) {
  var s = $("status");
  s.textContent = text;
  s.className = error ? "error" : "";
}

function refresh() {
  if (document.hidden) { setTimeout(refresh, REFRESH_MS); return; }
  Promise.all([get("/ring", true), get("/metrics", false), get("/last-reload", true)])
    .then(function (got) {
      var ring = got[0];
      var key = ring.routingHash + " " + ring.backends.map(function (b) { return b.state; }).join();
      // The arcs change only with the routing config or a backend's state.
      var arcs = key === arcsKey ? null : get("/ring/arcs", true);
      render(ring, parseMetrics(got[1]), got[2], performance.now());
      return arcs && arcs.then(function (body) { drawArcs(body); arcsKey = key; });
    })
    .then(function () { setStatus("updated " + new Date().toLocaleTimeString(), false); },
          function (err) { setStatus("cannot refresh: " + err.message, true); })
    .then(function () {
      refreshes++;
      document.body.dataset.refreshes = String(refreshes);
      setTimeout(refresh, REFRESH_MS);
    });
}

(function init() {
  var tr = document.querySelector("#backends thead tr");
  COLUMNS.forEach(function (col) {
    var th = document.createElement("th");
    th.dataset.key = col.key;
    th.className = "col-" + col.key + (col.numeric ? " num" : "");
    th.scope = "col";
    var button = document.createElement("button");
    button.type = "button";
    button.textContent = col.label;
    button.addEventListener("click", function () {
      // The same column again reverses; a new numeric column starts with the largest first.
      if (sort.key === col.key) sort.dir = -sort.dir;
      else sort = { key: col.key, dir: col.numeric ? -1 : 1 };
      drawTable();
    });
    th.appendChild(button);
    tr.appendChild(th);
  });
  refresh();
})();
`;

const BODY = String.raw`<header>
<h1>ringlb</h1><span id="summary">loading…</span><span id="status" role="status"></span>
</header>
<main>
<section aria-label="the hash ring">
<svg id="ring" viewBox="-110 -110 220 220" role="img" aria-label="the hash ring, each backend's arcs in its colour">
<circle class="track" r="90" stroke-width="18"></circle>
<g id="arcs"></g>
<text id="ring-up" class="big" y="4"></text>
<text class="small" y="20">backends up</text>
<text id="ring-hash" class="small" y="34"></text>
</svg>
<p id="ring-note" class="note"></p>
</section>
<section aria-label="the daemon">
<dl>
<dt>config hash</dt><dd><code id="config-hash"></code></dd>
<dt>routing hash</dt><dd><code id="routing-hash"></code></dd>
<dt>uptime</dt><dd id="uptime"></dd>
<dt>open connections</dt><dd id="open-total"></dd>
<dt>connections/s</dt><dd id="rate-total"></dd>
<dt>last reload</dt><dd id="last-reload"></dd>
<dt>refresh</dt><dd>every ${REFRESH_MS / 1000} s; click a column to sort</dd>
</dl>
</section>
<section class="table-panel" aria-label="backends">
<table id="backends"><thead><tr></tr></thead><tbody></tbody></table>
</section>
</main>`;

const sha256 = (text: string): string => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;

/**
 * The policy: nothing but the page's own script and style (by hash), fetches to its own origin,
 * and images from itself or data: (the empty favicon, so the browser asks for no /favicon.ico).
 */
export const STATUS_PAGE_CSP = [
  "default-src 'none'",
  `script-src ${sha256(SCRIPT)}`,
  `style-src ${sha256(STYLE)}`,
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ringlb status</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
${BODY}
<script>${SCRIPT}</script>
</body>
</html>
`;
