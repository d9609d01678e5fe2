/// The monitor page: one self-contained HTML document (CSS and JavaScript inline, charts drawn as inline SVG), built
/// into the binary so it works on a machine without internet and needs no JavaScript registry to build. It only
/// reads: it opens the WebSocket at `/ws` and renders each snapshot (docs/MONITOR.md); it sends nothing.
///
/// Element ids (`ring-published`, `sources`, `subscriptions`, `alerts`, …) and the `data-value` attributes holding
/// raw numbers are what Tools/monitor_check.py reads; keep them when restyling.
enum MonitorPage {
    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tickwire monitor</title>
<link rel="icon" href="data:,">
<style>
:root { color-scheme:dark; --bg:#0d1117; --panel:#161b22; --line:#30363d; --text:#e6edf3; --dim:#8b949e; --ok:#3fb950; --warn:#d29922; --bad:#f85149; --p50:#58a6ff; --p99:#f0883e; --thr:#a371f7; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--text); font:13px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
header { display:flex; align-items:center; gap:18px; padding:10px 16px; border-bottom:1px solid var(--line); }
header h1 { font-size:16px; margin:0; letter-spacing:.04em; }
#status { padding:2px 8px; border-radius:10px; background:var(--line); }
#status.live { background:#123d1f; color:var(--ok); }
#status.down { background:#4a1416; color:var(--bad); }
header .kv { color:var(--dim); }
header .kv b { color:var(--text); font-weight:600; }
main { display:grid; grid-template-columns:repeat(auto-fit, minmax(420px, 1fr)); gap:12px; padding:12px 16px; }
section { background:var(--panel); border:1px solid var(--line); border-radius:6px; padding:10px 12px; min-width:0; }
section h2 { font-size:12px; text-transform:uppercase; letter-spacing:.08em; color:var(--dim); margin:0 0 8px; }
table { width:100%; border-collapse:collapse; }
th, td { padding:2px 6px; text-align:right; white-space:nowrap; }
th:first-child, td:first-child { text-align:left; overflow:hidden; text-overflow:ellipsis; max-width:240px; }
th { color:var(--dim); font-weight:normal; border-bottom:1px solid var(--line); }
tr.bad td { color:var(--bad); }
.stats { display:flex; flex-wrap:wrap; gap:6px 18px; margin-bottom:6px; }
.stat span { color:var(--dim); }
.empty { color:var(--dim); font-style:italic; }
svg { width:100%; height:120px; display:block; background:#0b0f14; border:1px solid var(--line); border-radius:4px; }
.legend { color:var(--dim); font-size:11px; margin-top:4px; }
.legend i { display:inline-block; width:10px; height:3px; vertical-align:middle; margin:0 4px 0 10px; }
#alerts { list-style:none; margin:0; padding:0; max-height:260px; overflow-y:auto; overflow-x:hidden; }
#alerts li { padding:3px 0; border-bottom:1px solid var(--line); display:grid; grid-template-columns:100px 130px 70px 1fr; gap:8px; white-space:nowrap; }
#alerts li span { overflow:hidden; text-overflow:ellipsis; }
#alerts li.new { animation: flash 2s ease-out; }
#alerts .rule { color:var(--warn); min-width:150px; }
#alerts .time { color:var(--dim); }
@keyframes flash { from { background:#3d2e00; } to { background:transparent; } }
.bar { height:8px; background:var(--line); border-radius:4px; overflow:hidden; min-width:80px; }
.bar div { height:100%; background:var(--ok); }
.bar.warn div { background:var(--warn); } .bar.bad div { background:var(--bad); }
footer { color:var(--dim); padding:4px 16px 14px; font-size:11px; }
</style>
</head>
<body>
<header>
  <h1>TICKWIRE</h1>
  <span id="status">connecting</span>
  <span class="kv">uptime <b id="uptime">-</b></span>
  <span class="kv">updated <b id="updated">-</b></span>
</header>
<main>
  <section id="ring-section">
    <h2>Ring</h2>
    <div class="stats">
      <div class="stat"><span>published</span> <b id="ring-published" data-value="">-</b></div>
      <div class="stat"><span>events/s</span> <b id="ring-rate">-</b></div>
      <div class="stat"><span>occupancy</span> <b id="ring-occupancy">-</b></div>
      <div class="stat"><span>capacity</span> <b id="ring-capacity">-</b></div>
      <div class="stat"><span>subjects</span> <b id="subjects" data-value="">-</b></div>
    </div>
    <h2>Sources</h2>
    <table id="sources"><thead><tr><th>source</th><th>events/s</th><th>counters</th></tr></thead><tbody></tbody></table>
  </section>
  <section>
    <h2>Publish latency and throughput</h2>
    <svg id="chart-latency" viewBox="0 0 400 120" preserveAspectRatio="none"></svg>
    <div class="legend"><i style="background:var(--p50)"></i>p50 <b id="publish-p50">-</b>
      <i style="background:var(--p99)"></i>p99 <b id="publish-p99">-</b> <span id="latency-max"></span></div>
    <svg id="chart-throughput" viewBox="0 0 400 120" preserveAspectRatio="none" style="margin-top:8px"></svg>
    <div class="legend"><i style="background:var(--thr)"></i>events/s <span id="throughput-max"></span>
      &nbsp; remote subscribers <b id="remote-subscribers">-</b> · send failures <b id="publish-failures">-</b></div>
  </section>
  <section>
    <h2>Subscriptions (<span id="subscriptions-total">0</span>)</h2>
    <table id="subscriptions"><thead><tr><th>subscription</th><th>delivered</th><th>dropped</th><th>lag</th><th>resyncs</th><th>stalls</th></tr></thead><tbody></tbody></table>
  </section>
  <section>
    <h2>Trades</h2>
    <div class="stats">
      <div class="stat"><span>acked/s</span> <b id="trades-rate">-</b></div>
      <div class="stat"><span>fsync p50</span> <b id="fsync-p50">-</b></div>
      <div class="stat"><span>p99</span> <b id="fsync-p99">-</b></div>
      <div class="stat"><span>syncs in the last interval</span> <b id="fsync-count">-</b></div>
    </div>
    <table id="trade-outcomes"><thead><tr><th>outcome / rejected by risk limit</th><th>count</th></tr></thead><tbody></tbody></table>
    <h2 style="margin-top:10px">Desk limit use (RISK.&lt;DESK&gt;)</h2>
    <table id="risk"><thead><tr><th>desk</th><th>position</th><th>notional</th><th>P&amp;L</th><th>limit used</th></tr></thead><tbody></tbody></table>
  </section>
  <section>
    <h2>Alerts <span id="alerts-fired"></span></h2>
    <ul id="alerts"><li class="empty">none yet</li></ul>
  </section>
  <section>
    <h2>Peers</h2>
    <table id="peers"><thead><tr><th>peer</th><th>role</th><th>health</th><th>detail</th></tr></thead><tbody></tbody></table>
    <h2 style="margin-top:10px">Store</h2>
    <div class="stats" id="store"></div>
  </section>
</main>
<footer>read-only · one snapshot a second over <code>/ws</code> · same numbers as <code>tickwire stats</code> · <span id="monitor-counters"></span></footer>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const fmt = (n) => (n === null || n === undefined) ? "-" : Number(n).toLocaleString("en-US", { maximumFractionDigits: 1 });
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const us = (s) => (s === null || s === undefined) ? "-" : (s * 1e6 < 1000 ? (s * 1e6).toFixed(1) + " µs" : (s * 1e3).toFixed(2) + " ms");
function setNum(id, v) { const e = $(id); e.textContent = fmt(v); e.dataset.value = String(v); }
function rows(tbody, items, render) {
  tbody.innerHTML = items.length ? items.map(render).join("") : '<tr><td class="empty" colspan="9">none</td></tr>';
}
function duration(s) {
  const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, sec = Math.floor(s % 60);
  return (h ? h + "h " : "") + (h || m ? m + "m " : "") + sec + "s";
}
function chart(svg, series, colors) {
  const W = 400, H = 120, pad = 4;
  let max = 0, n = 0;
  for (const s of series) for (const v of s) { if (v !== null && v > max) max = v; n = Math.max(n, s.length); }
  if (max <= 0) max = 1;
  let out = "";
  for (let g = 1; g < 4; g++) out += `<line x1="0" x2="${W}" y1="${H * g / 4}" y2="${H * g / 4}" stroke="#21262d" stroke-width="1"/>`;
  series.forEach((s, k) => {
    const pts = [];
    s.forEach((v, i) => { if (v !== null) pts.push(`${(n <= 1 ? W : i * W / (n - 1)).toFixed(1)},${(H - pad - (v / max) * (H - 2 * pad)).toFixed(1)}`); });
    if (pts.length) out += `<polyline fill="none" stroke="${colors[k]}" stroke-width="1.6" vector-effect="non-scaling-stroke" points="${pts.join(" ")}"/>`;
  });
  svg.innerHTML = out;
  return max;
}
let lastSeq = 0;
function render(m) {
  window.lastSnapshot = m;
  $("uptime").textContent = duration(m.uptimeSeconds); $("uptime").dataset.value = String(m.uptimeSeconds);
  $("updated").textContent = new Date(m.timeNanos / 1e6).toISOString().substring(11, 19) + " UTC";
  setNum("ring-published", m.ring.published);
  setNum("ring-rate", m.ring.publishedPerSecond);
  $("ring-occupancy").textContent = (m.ring.occupancy * 100).toFixed(1) + "%";
  setNum("ring-capacity", m.ring.capacity);
  setNum("subjects", m.ring.subjects);
  rows($("sources").tBodies[0], m.sources, (s) => {
    const c = Object.keys(s.counters).sort().map((k) => `${esc(k)}=${fmt(s.counters[k])}`).join(" ");
    const bad = Object.keys(s.counters).some((k) => /malformed|gap|stale|error/.test(k) && s.counters[k] > 0 && k !== "gaps_open");
    return `<tr data-name="${esc(s.name)}"${bad ? ' class="bad"' : ""}><td>${esc(s.name)}</td><td data-value="${s.eventsPerSecond}">${fmt(s.eventsPerSecond)}</td><td style="text-align:left">${c}</td></tr>`;
  });
  $("subscriptions-total").textContent = m.subscriptions.total;
  rows($("subscriptions").tBodies[0], m.subscriptions.shown, (s) =>
    `<tr data-name="${esc(s.name)}"${s.dropped > 0 ? ' class="bad"' : ""}><td>${esc(s.name)}</td>` +
    ["delivered", "dropped", "lag", "resyncs", "stalls"].map((k) => `<td data-field="${k}" data-value="${s[k]}">${fmt(s[k])}</td>`).join("") + "</tr>");
  const lat = m.publish.latency;
  $("publish-p50").textContent = us(lat.p50Seconds); $("publish-p99").textContent = us(lat.p99Seconds);
  const h = m.history;
  const lmax = chart($("chart-latency"), [h.publishP50Seconds.map((v) => v === null ? null : v * 1e6), h.publishP99Seconds.map((v) => v === null ? null : v * 1e6)], ["var(--p50)", "var(--p99)"]);
  $("latency-max").textContent = `(top ${fmt(lmax)} µs, last ${h.uptimeSeconds.length} s)`;
  const tmax = chart($("chart-throughput"), [h.publishedPerSecond], ["var(--thr)"]);
  $("throughput-max").textContent = `(top ${fmt(tmax)})`;
  $("remote-subscribers").textContent = fmt(m.publish.remoteSubscribers);
  $("publish-failures").textContent = fmt(m.publish.failures);
  setNum("trades-rate", m.trades.acceptedPerSecond);
  $("fsync-p50").textContent = us(m.trades.journalFsync.p50Seconds);
  $("fsync-p99").textContent = us(m.trades.journalFsync.p99Seconds);
  $("fsync-count").textContent = fmt(m.trades.journalFsync.samples);
  const outcomes = Object.keys(m.trades.outcomes).sort().map((k) => [k, m.trades.outcomes[k]])
    .concat(Object.keys(m.trades.rejectedByReason).sort().filter((k) => m.trades.rejectedByReason[k] > 0).map((k) => ["risk: " + k, m.trades.rejectedByReason[k]]));
  rows($("trade-outcomes").tBodies[0], outcomes, ([k, v]) => `<tr><td>${esc(k)}</td><td data-value="${v}">${fmt(v)}</td></tr>`);
  rows($("risk").tBodies[0], m.risk, (d) => {
    const pct = Math.min(100, d.usedBasisPoints / 100), cls = pct >= 90 ? "bad" : pct >= 70 ? "warn" : "";
    return `<tr data-name="${esc(d.desk)}"><td>${esc(d.desk)}</td><td>${esc(d.position)}</td><td>${esc(d.notional)}</td><td>${esc(d.pnl)}</td>` +
      `<td><div class="bar ${cls}" title="${(d.usedBasisPoints / 100).toFixed(2)}%"><div style="width:${pct}%"></div></div></td></tr>`;
  });
  const fired = Object.values(m.alerts.firedByRule).reduce((a, b) => a + b, 0);
  $("alerts-fired").textContent = `(${fmt(fired)} raised)`;
  if (m.alerts.latest.length) {
    $("alerts").innerHTML = m.alerts.latest.map((a) =>
      `<li data-seq="${a.seq}" data-subject="${esc(a.subject)}"${a.seq > lastSeq && lastSeq > 0 ? ' class="new"' : ""}>` +
      `<span class="time">${new Date(a.eventTimeNanos / 1e6).toISOString().substring(11, 23)}</span>` +
      `<span class="rule" title="${esc(a.subject)}">${esc(a.rule)}</span><span>${esc(a.symbol)}</span>` +
      `<span class="time">${esc(a.value)} (threshold ${esc(a.threshold)})</span></li>`).join("");
    lastSeq = Math.max(lastSeq, m.alerts.latest[0].seq);
  }
  rows($("peers").tBodies[0], m.peers, (p) => `<tr data-name="${esc(p.name)}"${p.health !== "ok" ? ' class="bad"' : ""}><td>${esc(p.name)}</td><td>${esc(p.role)}</td><td>${esc(p.health)}</td><td style="text-align:left">${esc(p.detail)}</td></tr>`);
  $("store").innerHTML = Object.keys(m.store).sort().map((k) => `<div class="stat"><span>${esc(k)}</span> <b>${fmt(m.store[k])}</b></div>`).join("");
  $("monitor-counters").textContent = Object.keys(m.monitor).sort().map((k) => `${k} ${m.monitor[k]}`).join(" · ");
}
function connect() {
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
  ws.onopen = () => { $("status").textContent = "live"; $("status").className = "live"; };
  ws.onmessage = (e) => {
    let m; try { m = JSON.parse(e.data); } catch (_) { return; }
    if (m.type === "snapshot") render(m);
  };
  ws.onclose = () => { $("status").textContent = "disconnected, retrying"; $("status").className = "down"; setTimeout(connect, 2000); };
}
connect();
</script>
</body>
</html>
"""#
}
