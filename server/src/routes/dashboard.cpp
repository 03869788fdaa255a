// GET / on the admin listener: a live dashboard of the pool and the server. One self-contained page
// (inline style and script, nothing fetched but /stats from this same listener) that polls /stats every
// second and redraws inline SVG charts from the last 120 samples. Rates are computed against the
// server's own uptime_s, so they are right whatever the browser's clock does.
#include <string_view>

#include "routes/table.hpp"

namespace bufpool::server::routes {

namespace {
constexpr std::string_view page = R"HTML(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>bufpool-server</title>
<style>
body{font:14px sans-serif;margin:20px;color:#222;max-width:980px}
h1{font-size:19px;margin:0 0 4px}#meta{color:#555;margin-bottom:10px}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:14px}
.card{border:1px solid #ddd;border-radius:6px;padding:8px}
.card h2{font-size:13px;margin:0 0 4px}.v{font:bold 16px sans-serif}
svg{width:100%;height:150px}svg text{font:11px sans-serif;fill:#555}
.lg span{display:inline-block;margin-right:10px;font-size:12px}.lg i{display:inline-block;width:10px;height:4px;margin-right:3px;vertical-align:middle}
#err{color:#b00}
</style></head>
<body data-updates="0">
<h1>bufpool-server</h1><div id="meta">waiting for /stats ...</div><div id="err"></div>
<div class="grid">
<div class="card"><h2>Gets by tier (share of gets, per second)</h2><div class="lg" id="tiers-lg"></div><svg id="tiers" viewBox="0 0 460 150"></svg></div>
<div class="card"><h2>Idle bytes against the cap <span class="v" id="idle-v"></span></h2><svg id="idle" viewBox="0 0 460 150"></svg></div>
<div class="card"><h2>Requests per second <span class="v" id="rps-v"></span></h2><svg id="rps" viewBox="0 0 460 150"></svg></div>
<div class="card"><h2>Buffers held by connections, and lent to the kernel (dashed) <span class="v" id="out-v"></span></h2><svg id="out" viewBox="0 0 460 150"></svg></div>
<div class="card"><h2>Connections per thread <span class="v" id="conn-v"></span></h2><svg id="conn" viewBox="0 0 460 150"></svg></div>
<div class="card"><h2>Rotations and buffers freed by rotation <span class="v" id="rot-v"></span></h2><svg id="rot" viewBox="0 0 460 150"></svg></div>
</div>
<script>
"use strict";
const N = 120, hist = [];
const tiers = [["hits_private","private","#2ca02c"],["hits_shared","shared","#1f77b4"],["hits_stolen","stolen","#ff7f0e"],
               ["hits_victim","victim","#9467bd"],["misses","miss","#d62728"]];
document.getElementById("tiers-lg").innerHTML = tiers.map(t => `<span><i style="background:${t[2]}"></i>${t[1]}</span>`).join("");
const fmt = v => v >= 1e9 ? (v/1e9).toFixed(2)+"G" : v >= 1e6 ? (v/1e6).toFixed(2)+"M" : v >= 1e3 ? (v/1e3).toFixed(1)+"k" : (+v).toFixed(v % 1 ? 2 : 0);
function lines(id, sets, ymax) {
  const W = 460, H = 150, L = 44, B = 16;
  let max = ymax || 0;
  for (const s of sets) for (const v of s.v) if (v > max) max = v;
  if (!(max > 0)) max = 1;
  let g = "";
  for (let i = 0; i <= 3; i++) {
    const y = H - B - (H - B - 6) * i / 3;
    g += `<line x1="${L}" x2="${W}" y1="${y}" y2="${y}" stroke="#eee"/><text x="${L-4}" y="${y+4}" text-anchor="end">${fmt(max*i/3)}</text>`;
  }
  for (const s of sets) {
    if (!s.v.length) continue;
    const pts = s.v.map((v, i) => `${L + (W - L) * (i + N - s.v.length) / (N - 1)},${H - B - (H - B - 6) * Math.min(v, max) / max}`);
    g += `<polyline fill="none" stroke="${s.c}" stroke-width="2" ${s.dash ? 'stroke-dasharray="4 3"' : ""} points="${pts.join(" ")}"/>`;
  }
  g += `<text x="${L}" y="${H-2}">-${N} s</text><text x="${W}" y="${H-2}" text-anchor="end">now</text>`;
  document.getElementById(id).innerHTML = g;
}
function bars(id, values) {
  const W = 460, H = 150, B = 16, max = Math.max(1, ...values), w = (W - 20) / Math.max(1, values.length);
  let g = "";
  values.forEach((v, i) => {
    const h = (H - B - 10) * v / max;
    g += `<rect x="${10 + i * w + 2}" y="${H - B - h}" width="${w - 4}" height="${h}" fill="#1f77b4"/>` +
         `<text x="${10 + i * w + w / 2}" y="${H - 2}" text-anchor="middle">t${i}: ${v}</text>`;
  });
  document.getElementById(id).innerHTML = g;
}
function sum(o) { let n = 0; for (const k in o) n += o[k]; return n; }
async function poll() {
  try {
    const r = await fetch("/stats", {cache: "no-store"});
    const s = await r.json();
    const t = s.pool.totals, sv = s.server;
    hist.push({up: sv.uptime_s, t, req: sum(sv.requests), cap: s.pool.config.max_idle_bytes,
               held: sv.buffers.held_by_connections, lent: sv.buffers.lent_to_kernel,
               conns: sv.connections.per_thread.map(p => p.http_active + p.echo_active)});
    if (hist.length > N + 1) hist.shift();
    const d = [];
    for (let i = 1; i < hist.length; i++) {
      const a = hist[i - 1], b = hist[i], dt = Math.max(1e-3, b.up - a.up), gets = b.t.gets - a.t.gets;
      d.push({rps: (b.req - a.req) / dt, share: tiers.map(x => gets > 0 ? 100 * (b.t[x[0]] - a.t[x[0]]) / gets : 0),
              idle: b.t.pooled_bytes, cap: b.cap, out: b.held, lent: b.lent, rot: b.t.rotations, freed: b.t.freed_by_rotation});
    }
    lines("tiers", tiers.map((x, k) => ({c: x[2], v: d.map(e => e.share[k])})), 100);
    lines("idle", [{c: "#1f77b4", v: d.map(e => e.idle)}, {c: "#d62728", dash: true, v: d.map(e => e.cap)}]);
    lines("rps", [{c: "#1f77b4", v: d.map(e => e.rps)}]);
    lines("out", [{c: "#ff7f0e", v: d.map(e => e.out)}, {c: "#7f7f7f", dash: true, v: d.map(e => e.lent)}]);
    lines("rot", [{c: "#9467bd", v: d.map(e => e.freed)}]);
    bars("conn", hist[hist.length - 1].conns);
    const last = d[d.length - 1];
    if (last) {
      document.getElementById("rps-v").textContent = fmt(last.rps);
      document.getElementById("idle-v").textContent = fmt(last.idle) + " / " + fmt(last.cap) + " B";
      document.getElementById("out-v").textContent = fmt(last.out) + " held, " + fmt(last.lent) + " lent";
      document.getElementById("rot-v").textContent = last.rot + " rotations, " + fmt(last.freed) + " freed";
    }
    document.getElementById("conn-v").textContent = fmt(sum(hist[hist.length - 1].conns));
    document.getElementById("meta").textContent = `${sv.threads} threads, up ${sv.uptime_s.toFixed(0)} s, pool classes ` +
      `${s.pool.config.min_class}..${s.pool.config.max_class} B${sv.draining ? ", DRAINING" : ""}`;
    document.getElementById("err").textContent = "";
    document.body.dataset.updates = String(+document.body.dataset.updates + 1);
    document.body.dataset.rps = last ? String(Math.round(last.rps)) : "0";
  } catch (e) {
    document.getElementById("err").textContent = "cannot read /stats: " + e;
  }
}
poll();
setInterval(poll, 1000);
</script></body></html>
)HTML";
}  // namespace

std::string_view dashboard_html() noexcept { return page; }

}  // namespace bufpool::server::routes
