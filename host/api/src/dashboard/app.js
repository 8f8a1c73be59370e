// The dashboard's core and its overview: polls the REST API, listens to the
// WebSocket event stream, steers the host (halt / resume / kill) and routes
// between the views (#/overview, #/symbol/SYM, #/tuner, #/events, #/versions,
// #/settings; the others live in views.js). Charts are TradingView's
// Lightweight Charts (vendor/, embedded); no build step, no CDN.
// Every call carries the API token (taken once from ?token= or the form).
"use strict";

const TOKEN_KEY = "hostApiToken";
const $ = (id) => document.getElementById(id);
let lastSeq = null;
let ws = null;
let refreshTimer = null;

function token() { return localStorage.getItem(TOKEN_KEY) || ""; }

// Jupyter-style login: `host run` prints http://ADDR/?token=...; the page keeps
// the token in localStorage and drops it from the address bar and history.
(function takeTokenFromUrl() {
  const p = new URLSearchParams(location.search);
  const t = p.get("token");
  if (t === null) return;
  if (t.trim()) localStorage.setItem(TOKEN_KEY, t.trim());
  p.delete("token");
  const rest = p.toString();
  history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
})();

function showError(msg) {
  const e = $("error");
  e.textContent = msg || "";
  e.hidden = !msg;
}

async function api(path, opts = {}) {
  const headers = { "Content-Type": "application/json" };
  if (token()) headers.Authorization = "Bearer " + token();
  const r = await fetch("/api/v1/" + path, { ...opts, headers });
  let body = null;
  try { body = await r.json(); } catch (_) { body = null; }
  if (r.status === 401) {
    showError("The API needs its token: open the URL `host run` printed, or enter HOST_API_TOKEN (or data/api.token) above.");
    throw new Error("unauthorized");
  }
  if (!r.ok) throw new Error((body && body.error) || ("HTTP " + r.status));
  return body;
}

function num(s) { return s === null || s === undefined ? NaN : Number(s); }
function fmt(s, dp = 2) {
  const n = num(s);
  return Number.isFinite(n) ? n.toLocaleString(undefined, { minimumFractionDigits: dp, maximumFractionDigits: dp }) : "–";
}
function signed(el, s) {
  const n = num(s);
  el.textContent = (n > 0 ? "+" : "") + fmt(s);
  el.className = el.className.replace(/\b(up|down)\b/g, "").trim() + (n > 0 ? " up" : n < 0 ? " down" : "");
}
function time(ts) {
  return ts ? new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 16) : "–";
}
function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
}

function renderStatus(st) {
  $("mode").textContent = st.mode + (st.running ? "" : " (stopped)");
  $("equity").textContent = fmt(st.equity);
  $("cash").textContent = "cash " + fmt(st.cash) + " · fees " + fmt(st.fees_paid);
  signed($("pnl-today"), st.daily_pnl);
  signed($("pnl-all"), st.total_pnl);

  const body = $("positions").querySelector("tbody");
  body.replaceChildren();
  for (const p of st.positions) {
    const tr = document.createElement("tr");
    tr.dataset.symbol = p.symbol;
    cell(tr, p.symbol);
    cell(tr, p.qty);
    cell(tr, fmt(p.avg_entry));
    cell(tr, fmt(p.mark));
    const n = num(p.unrealized_pnl);
    cell(tr, fmt(p.unrealized_pnl), n > 0 ? "up" : n < 0 ? "down" : "");
    cell(tr, p.stop_loss ? fmt(p.stop_loss) : "–");
    cell(tr, p.take_profit ? fmt(p.take_profit) : "–");
    body.appendChild(tr);
  }
  $("no-positions").hidden = st.positions.length > 0;

  const risk = $("risk-state");
  if (st.killed) { risk.textContent = "KILLED — every position closed, signals refused"; risk.className = "risk killed"; }
  else if (st.halt) { risk.textContent = "HALTED — " + st.halt; risk.className = "risk halted"; }
  else { risk.textContent = "Trading"; risk.className = "risk ok"; }
  risk.dataset.state = st.killed ? "killed" : st.halt ? "halted" : "ok";

  const l = st.limits;
  const dl = $("limits");
  dl.replaceChildren();
  for (const [k, v] of [
    ["Drawdown", fmt(st.drawdown_pct) + "% of " + l.max_drawdown_pct + "%"],
    ["Daily loss limit", l.max_daily_loss_pct + "%"],
    ["Positions", st.positions.length + " of " + l.max_open_positions],
    ["Trade size", l.default_trade_pct + "% (max " + l.max_trade_pct + "%)"],
    ["Open orders", String(st.open_orders)],
    ["Scans", st.scan_seq + " · clock " + time(st.clock)],
  ]) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    dl.append(dt, dd);
  }
}

// A time series as Lightweight Charts wants it: ascending, one point per second.
function series(points) {
  const out = [];
  for (const [t, v] of points.slice().sort((a, b) => a[0] - b[0])) {
    if (!Number.isFinite(v)) continue;
    if (out.length && out[out.length - 1].time === t) out[out.length - 1].value = v;
    else out.push({ time: t, value: v });
  }
  return out;
}

const CHART_OPTS = {
  layout: { background: { color: "#0f1419" }, textColor: "#8b98a5" },
  grid: { vertLines: { color: "#1c252e" }, horzLines: { color: "#1c252e" } },
  timeScale: { timeVisible: true, secondsVisible: false, borderColor: "#2b3640" },
  rightPriceScale: { borderColor: "#2b3640" },
  autoSize: true,
};

// A line chart in `el` (made once, data replaced); el.dataset.points says how many.
function lineChart(el, points, color) {
  if (!el._chart) {
    el._chart = LightweightCharts.createChart(el, CHART_OPTS);
    el._series = el._chart.addSeries(LightweightCharts.AreaSeries, {
      lineWidth: 2, priceLineVisible: false,
    });
  }
  const data = series(points);
  el._series.applyOptions({ lineColor: color, topColor: color + "55", bottomColor: color + "05" });
  el._series.setData(data);
  el._chart.timeScale().fitContent();
  el.dataset.points = String(data.length);
  return el._chart;
}

function renderChart(perf) {
  const pts = perf.days.map((d) => [d.ts, num(d.value)]);
  pts.push([perf.current.ts, num(perf.current.value)]);
  signed($("pnl-week"), perf.summary.week);
  const ys = pts.map((p) => p[1]);
  lineChart($("chart"), pts, ys[ys.length - 1] >= ys[0] ? "#3fb950" : "#f85149");
}

function renderStrategy(s) {
  const a = s.active;
  $("strategy").textContent = a
    ? "v" + a.version + " · " + a.hash.slice(0, 12) + " · every " + a.scan_minutes + " min" + (a.failures ? " · " + a.failures + " failures" : "") + (s.paused ? " · PAUSED: " + s.paused : "")
    : "No active strategy" + (s.paused ? " (" + s.paused + ")" : "");
  const body = $("versions").querySelector("tbody");
  body.replaceChildren();
  for (const v of s.versions.slice(0, 10)) {
    const tr = document.createElement("tr");
    cell(tr, v.version); cell(tr, v.status); cell(tr, v.origin); cell(tr, v.created_at);
    body.appendChild(tr);
  }
}

function renderDecisions(d) {
  const box = $("decisions");
  box.replaceChildren();
  if (!d.runs.length && !d.config_changes.length) {
    const p = document.createElement("p"); p.className = "muted"; p.textContent = "No decisions yet.";
    box.appendChild(p);
    return;
  }
  for (const r of d.runs.slice(0, 5)) {
    const div = document.createElement("div"); div.className = "decision";
    const head = document.createElement("div");
    head.textContent = time(r.ts) + " · " + r.trigger + " · " + r.decision + " → " + r.outcome +
      (r.deployed_version ? " (v" + r.deployed_version + ")" : "") + (r.rejection ? " — " + r.rejection : "");
    const changes = d.config_changes.filter((c) => c.run_id === r.run_id);
    const why = document.createElement("div"); why.className = "why";
    why.textContent = changes.map((c) => c.param + ": " + (c.old_value ?? "–") + " → " + c.new_value + " (" + c.reason + ")").join("\n") ||
      (r.template ? "template " + r.template + " " + JSON.stringify(r.params) : "");
    div.append(head, why);
    box.appendChild(div);
  }
}

function addEvent(ev, live) {
  const ul = $("events");
  const li = document.createElement("li");
  li.dataset.kind = ev.kind;
  const k = document.createElement("span"); k.className = "kind"; k.textContent = ev.kind;
  const rest = document.createElement("span");
  rest.textContent = " #" + ev.seq + " " + time(ev.ts) + " " + (ev.symbol || "") + " " + JSON.stringify(ev.detail).slice(0, 200);
  li.append(k, rest);
  ul.prepend(li);
  while (ul.children.length > 200) ul.lastChild.remove();
  if (lastSeq === null || ev.seq > lastSeq) lastSeq = ev.seq;
  if (live && REFRESH_KINDS.includes(ev.kind)) scheduleRefresh(150);
  if (live) for (const v of Object.values(Views)) if (v.onEvent) v.onEvent(ev);
}

// Event kinds after which the account is read again.
const REFRESH_KINDS = ["fill", "position_closed", "halt", "halted", "resume", "kill", "deploy", "strategy_paused", "pause_symbol", "resume_symbol"];

// The views: views.js registers symbol, tuner, events, versions, settings
// as { show(arg), onEvent(ev)? }; the overview is this file.
const Views = {};
let currentView = "overview";

function route() {
  const [name, arg] = (location.hash.replace(/^#\/?/, "") || "overview").split("/");
  const view = Views[name] || name === "overview" ? name : "overview";
  currentView = view;
  for (const m of document.querySelectorAll("main.view")) m.hidden = m.id !== "view-" + view;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.view === view);
  document.body.dataset.view = view;
  if (Views[view]) Views[view].show(arg ? decodeURIComponent(arg) : undefined);
}
window.addEventListener("hashchange", route);

async function refresh() {
  try {
    const [st, perf] = await Promise.all([api("status"), api("performance/daily")]);
    renderStatus(st);
    renderChart(perf);
    showError("");
  } catch (e) {
    if (e.message !== "unauthorized") showError("Host: " + e.message);
  }
}

async function refreshSlow() {
  try {
    const [s, d] = await Promise.all([api("strategy"), api("ai/decisions?limit=10")]);
    renderStrategy(s);
    renderDecisions(d);
  } catch (_) { /* shown by refresh() */ }
}

function scheduleRefresh(ms) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refresh, ms);
}

async function connect() {
  if (ws) ws.close();
  if (lastSeq === null) {
    try {
      const r = await api("events?limit=50");
      for (const ev of r.events) addEvent(ev, false);
      lastSeq = r.last_seq ?? 0;
    } catch (_) { lastSeq = null; }
  }
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const q = token() ? "?token=" + encodeURIComponent(token()) : "";
  ws = new WebSocket(proto + "//" + location.host + "/api/v1/ws" + q);
  ws.onopen = () => {
    $("conn").textContent = "live"; $("conn").className = "pill on";
    ws.send(JSON.stringify({ op: "subscribe", channels: ["events"], since: lastSeq ?? 0 }));
  };
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.type === "event") addEvent(msg.data, true);
  };
  ws.onclose = () => {
    $("conn").textContent = "offline"; $("conn").className = "pill off";
    setTimeout(connect, 2000);
  };
}

async function act(path, body, label) {
  try {
    const r = await api(path, { method: "POST", body: JSON.stringify(body || {}) });
    $("action-result").textContent = label + ": " + (r.changed === false ? "no change" : "done");
  } catch (e) {
    $("action-result").textContent = label + " failed: " + e.message;
  }
  refresh();
}

$("btn-halt").onclick = () => act("halt", {}, "Halt");
$("btn-resume").onclick = () => act("resume", {}, "Resume");
$("btn-kill").onclick = () => {
  if (confirm("Kill switch: cancel every order and close every position at market?")) act("kill", { confirm: true }, "Kill");
};
$("tokenform").onsubmit = (e) => {
  e.preventDefault();
  const t = $("token").value.trim();
  if (t) localStorage.setItem(TOKEN_KEY, t); else localStorage.removeItem(TOKEN_KEY);
  $("token").value = "";
  refresh(); refreshSlow(); connect();
};
$("token").placeholder = token() ? "token saved (enter to replace)" : "API token (printed by host run)";

refresh();
refreshSlow();
connect();
// after views.js has registered its views
window.addEventListener("load", route);
setInterval(refresh, 5000);
setInterval(refreshSlow, 15000);
