// The dashboard's views beside the overview (app.js routes to them):
// symbol detail (candlesticks per stored tier, EMA overlay, entries and exits
// marked, the position with its stop and target, the symbol's trades), the
// tuner log (every orchestrator decision, filterable), the events (the whole
// hash-chained log, filterable, live, CSV export of the rows shown), the
// versions (backtest equity, live results, diff, rollback) and the settings
// (effective configuration, risk limits, triggers, pause/resume per symbol).
// Every number the host sends as a decimal string is shown as sent.
"use strict";

const EMA_PERIOD = 20;
const TIER_SECS = { "5m": 300, "1h": 3600, "1d": 86400 };

function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else if (k.startsWith("on")) e[k] = v;
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(k ?? ""));
  return e;
}
function row(cells, attrs = {}) {
  return el("tr", attrs, ...cells.map((c) => (c instanceof Node && c.tagName === "TD" ? c : el("td", {}, c))));
}
function dl(target, pairs) {
  target.replaceChildren();
  for (const [k, v] of pairs) target.append(el("dt", {}, k), el("dd", {}, v));
}
function opt(select, values, keep) {
  const cur = keep ? select.value : "";
  const first = select.querySelector('option[value=""]');
  select.replaceChildren(...(first ? [first] : []), ...values.map((v) => el("option", { value: v }, v)));
  if (values.includes(cur)) select.value = cur;
}
function pct(x) { return x === null || x === undefined ? "–" : (100 * x).toFixed(0) + "%"; }
function secsUTC(local) { return local ? Math.floor(Date.parse(local + ":00Z") / 1000) : null; }
function diffView(pre, d, missing) {
  pre.replaceChildren();
  if (!d) { pre.append(missing); return; }
  if (d.kind === "too_large") { pre.append(`The sources are too large to compare here (${d.old_lines} and ${d.new_lines} lines).`); return; }
  pre.dataset.added = String(d.added); pre.dataset.removed = String(d.removed);
  if (!d.added && !d.removed) pre.append(el("div", { class: "muted" }, "The sources are identical."));
  for (const l of d.lines) {
    const sign = l.op === "added" ? "+ " : l.op === "removed" ? "- " : "  ";
    pre.append(el("div", { class: "dl " + l.op }, sign + l.text));
  }
}
let symbolsCache = null;
async function configuredSymbols() {
  if (!symbolsCache) symbolsCache = (await api("symbols")).symbols.map((s) => s.symbol);
  return symbolsCache;
}
function debounce(fn, ms) {
  let t = null;
  return () => { clearTimeout(t); t = setTimeout(fn, ms); };
}

// ---- symbol detail ----------------------------------------------------------

function ema(candles, n) {
  const k = 2 / (n + 1);
  const out = [];
  let e = null;
  candles.forEach((c, i) => {
    e = e === null ? c.close : c.close * k + e * (1 - k);
    if (i >= n - 1) out.push({ time: c.ts, value: e });
  });
  return out;
}

const SymbolView = {
  symbol: null, tier: null, chart: null, lines: [],
  async show(arg) {
    const syms = await configuredSymbols();
    const sel = $("sym-select");
    opt(sel, syms, true);
    sel.onchange = () => { location.hash = "#/symbol/" + sel.value; };
    this.symbol = arg && syms.includes(arg) ? arg : this.symbol || syms[0];
    sel.value = this.symbol;
    $("sym-ema-period").textContent = String(EMA_PERIOD);
    await this.load();
  },
  ensureChart() {
    if (this.chart) return;
    const box = $("sym-chart");
    this.chart = LightweightCharts.createChart(box, CHART_OPTS);
    this.candles = this.chart.addSeries(LightweightCharts.CandlestickSeries, {
      upColor: "#3fb950", downColor: "#f85149", borderVisible: false,
      wickUpColor: "#3fb950", wickDownColor: "#f85149",
    });
    this.ema = this.chart.addSeries(LightweightCharts.LineSeries, {
      color: "#58a6ff", lineWidth: 1, priceLineVisible: false, lastValueVisible: false,
    });
    this.markers = LightweightCharts.createSeriesMarkers(this.candles, []);
  },
  async load() {
    if (!this.symbol) return;
    const q = "symbol=" + encodeURIComponent(this.symbol) + (this.tier ? "&interval=" + this.tier : "");
    const [c, st, tr] = await Promise.all([
      api("chart?" + q), api("status"), api("trades?limit=50&symbol=" + encodeURIComponent(this.symbol)),
    ]);
    this.tier = c.interval;
    const seg = $("sym-tiers");
    seg.replaceChildren(...c.intervals.map((t) => el("button", {
      class: t === c.interval ? "on" : "", dataset: { tier: t },
      onclick: () => { this.tier = t; this.load(); },
    }, t)));
    this.ensureChart();
    const box = $("sym-chart");
    $("sym-empty").hidden = c.candles.length > 0;
    this.candles.setData(c.candles.map((k) => ({ time: k.ts, open: k.open, high: k.high, low: k.low, close: k.close })));
    this.ema.setData(ema(c.candles, EMA_PERIOD));
    // entries and exits: each fill on the bar it filled in
    const step = TIER_SECS[c.interval] || 3600;
    const marks = c.fills.map((f) => {
      const buy = f.action === "buy";
      return {
        time: Math.floor(f.ts / step) * step,
        position: buy ? "belowBar" : "aboveBar",
        color: buy ? "#3fb950" : "#f0883e",
        shape: buy ? "arrowUp" : "arrowDown",
        text: (buy ? "buy " : "sell ") + f.qty + " @ " + fmt(f.price),
      };
    }).sort((a, b) => a.time - b.time);
    this.markers.setMarkers(marks);
    // the position: entry, stop and target as price lines
    for (const l of this.lines) this.candles.removePriceLine(l);
    this.lines = [];
    const pos = st.positions.find((p) => p.symbol === this.symbol);
    const line = (price, color, title) => {
      if (price === null || price === undefined) return;
      this.lines.push(this.candles.createPriceLine({
        price: num(price), color, lineWidth: 1, lineStyle: LightweightCharts.LineStyle.Dashed,
        axisLabelVisible: true, title,
      }));
    };
    if (pos) {
      line(pos.avg_entry, "#58a6ff", "entry");
      line(pos.stop_loss, "#f85149", "stop");
      line(pos.take_profit, "#3fb950", "target");
    }
    this.chart.timeScale().fitContent();
    Object.assign(box.dataset, {
      symbol: this.symbol, tier: c.interval || "", candles: String(c.candles.length),
      markers: String(marks.length), lines: String(this.lines.length), position: pos ? "open" : "none",
    });
    const pd = $("sym-position");
    $("sym-no-position").hidden = !!pos;
    pd.dataset.symbol = pos ? pos.symbol : "";
    dl(pd, pos ? [
      ["Quantity", pos.qty], ["Entry", fmt(pos.avg_entry)], ["Mark", fmt(pos.mark)],
      ["Unrealized P&L", fmt(pos.unrealized_pnl)], ["Stop", pos.stop_loss ? fmt(pos.stop_loss) : "–"],
      ["Target", pos.take_profit ? fmt(pos.take_profit) : "–"], ["Opened", time(pos.opened_at)],
      ["Intent · tag", pos.intent + " · " + (pos.tag || "–")],
    ] : []);
    const body = $("sym-trades").querySelector("tbody");
    body.replaceChildren(...tr.trades.map((t) => {
      const n = num(t.pnl);
      return row([time(t.opened_at), time(t.closed_at), t.qty, fmt(t.entry_price), fmt(t.exit_price),
        el("td", { class: n > 0 ? "up" : n < 0 ? "down" : "" }, fmt(t.pnl)), t.close_reason]);
    }));
    $("sym-no-trades").hidden = tr.trades.length > 0;
  },
  onEvent(ev) {
    if (currentView !== "symbol" || ev.symbol !== this.symbol) return;
    if (["fill", "position_closed", "order"].includes(ev.kind)) this.reload();
  },
};
SymbolView.reload = debounce(() => SymbolView.load().catch(() => {}), 300);
// new candles keep coming: redraw now and then while the view is shown
setInterval(() => { if (currentView === "symbol") SymbolView.reload(); }, 10000);

// ---- tuner log --------------------------------------------------------------

const TunerView = {
  open: new Set(),
  async show() {
    for (const id of ["tuner-trigger", "tuner-decision", "tuner-result"]) $(id).onchange = () => this.load();
    await this.load();
  },
  async load() {
    const q = new URLSearchParams({ limit: "200" });
    for (const [k, id] of [["trigger", "tuner-trigger"], ["decision", "tuner-decision"], ["result", "tuner-result"]]) {
      if ($(id).value) q.set(k, $(id).value);
    }
    const r = await api("tuner?" + q);
    opt($("tuner-trigger"), r.facets.triggers, true);
    opt($("tuner-decision"), r.facets.decisions, true);
    opt($("tuner-result"), r.facets.results, true);
    const body = $("tuner-runs").querySelector("tbody");
    body.replaceChildren();
    for (const run of r.runs) {
      const head = row([time(run.ts), run.trigger, run.decision, run.template || "–", pct(run.confidence),
        el("td", { class: "result " + run.result }, run.result + (run.rejection_code ? " (" + run.rejection_code + ")" : "")),
        run.deployed_version ? "v" + run.deployed_version : "–"],
        { class: "run", dataset: { run: run.run_id, trigger: run.trigger, decision: run.decision, result: run.result } });
      const detail = el("tr", { class: "run-detail", dataset: { run: run.run_id } }, el("td", { colspan: "7" }, this.detail(run)));
      detail.hidden = !this.open.has(run.run_id);
      head.onclick = () => {
        detail.hidden = !detail.hidden;
        if (detail.hidden) this.open.delete(run.run_id); else this.open.add(run.run_id);
      };
      body.append(head, detail);
    }
    $("tuner-empty").hidden = r.runs.length > 0;
    $("tuner-count").textContent = r.runs.length + " decision" + (r.runs.length === 1 ? "" : "s");
  },
  detail(run) {
    const box = el("div", { class: "run-box" });
    box.append(el("h3", {}, "Reasoning"), el("p", { class: "why" }, run.reasoning || "–"));
    if (run.rejection) box.append(el("p", { class: "down" }, "Rejected: " + run.rejection));
    const facts = el("dl");
    dl(facts, [
      ["Run", run.run_id], ["Proposer", run.proposer || "–"], ["Confidence", pct(run.confidence)],
      ["Incumbent", run.incumbent_version ? "v" + run.incumbent_version : "–"],
      ["Candidate parameters", run.params.map(([k, v]) => k + "=" + v).join(" ") || "–"],
    ]);
    box.append(facts);
    box.append(el("h3", {}, "Checks and figures"));
    const figs = el("table", { class: "figures" }, el("tbody", {}, ...run.figures.map((f) =>
      row([f.name.replace(/_/g, " "), f.value === null ? "not run" : String(Math.round(f.value * 1000) / 1000)]))));
    box.append(run.figures.length ? figs : el("p", { class: "muted" }, "No figures recorded."));
    box.append(el("h3", {}, "Parameters before → after"));
    box.append(run.changes.length
      ? el("table", { class: "changes" }, el("tbody", {}, ...run.changes.map((c) =>
        row([c.param, (c.old_value ?? "–") + " → " + c.new_value, c.symbol]))))
      : el("p", { class: "muted" }, "No parameter changed."));
    box.append(el("h3", {}, "Source diff against the incumbent"));
    const pre = el("pre", { class: "diff" });
    diffView(pre, run.source_diff, "No diff: the candidate's or the incumbent's source is not archived.");
    box.append(pre);
    return box;
  },
};

// ---- events -----------------------------------------------------------------

const EventsView = {
  rows: [], filter: {}, loading: null,
  async show() {
    const [k, syms] = await Promise.all([api("events/kinds"), configuredSymbols()]);
    opt($("ev-kind"), k.kinds, true);
    opt($("ev-symbol"), syms, true);
    $("ev-filter").onsubmit = (e) => { e.preventDefault(); this.load(); };
    $("ev-csv").onclick = () => this.csv();
    await this.load();
  },
  async load() {
    const f = {
      kind: $("ev-kind").value || null, symbol: $("ev-symbol").value || null,
      from: secsUTC($("ev-from").value), to: secsUTC($("ev-to").value),
    };
    const q = new URLSearchParams({ limit: "1000" });
    for (const [k, v] of Object.entries(f)) if (v !== null) q.set(k, String(v));
    // events arriving live while the page is fetched are kept, not lost
    // when it replaces the rows (regression: a resume shown and then wiped)
    const early = [];
    this.loading = early;
    let r;
    try { r = await api("events?" + q); } finally { this.loading = null; }
    this.filter = f;
    const rows = r.events.slice().reverse();
    const have = new Set(rows.map((e) => e.seq));
    const late = early.filter((ev) => !have.has(ev.seq) && this.matches(ev));
    this.rows = late.concat(rows).sort((a, b) => b.seq - a.seq);
    this.render();
  },
  matches(ev) {
    const f = this.filter;
    return (!f.kind || ev.kind === f.kind) && (!f.symbol || ev.symbol === f.symbol) &&
      (f.from === null || f.from === undefined || ev.ts >= f.from) && (f.to === null || f.to === undefined || ev.ts <= f.to);
  },
  tr(ev) {
    return row([String(ev.seq), time(ev.ts), ev.kind, ev.symbol || "", JSON.stringify(ev.detail)],
      { dataset: { seq: String(ev.seq), kind: ev.kind, symbol: ev.symbol || "" } });
  },
  render() {
    $("ev-table").querySelector("tbody").replaceChildren(...this.rows.map((ev) => this.tr(ev)));
    this.count();
  },
  count() {
    $("ev-count").textContent = this.rows.length + " event" + (this.rows.length === 1 ? "" : "s") + " shown";
    $("ev-table").dataset.rows = String(this.rows.length);
  },
  onEvent(ev) {
    if (this.loading) this.loading.push(ev);
    if (!this.matches(ev) || this.rows.some((r) => r.seq === ev.seq)) return;
    this.rows.unshift(ev);
    $("ev-table").querySelector("tbody").prepend(this.tr(ev));
    this.count();
    const k = $("ev-kind");
    if (![...k.options].some((o) => o.value === ev.kind)) k.append(el("option", { value: ev.kind }, ev.kind));
  },
  // The rows shown, as CSV (RFC 4180 quoting).
  csv() {
    const q = (s) => '"' + String(s ?? "").replace(/"/g, '""') + '"';
    const lines = [["seq", "ts", "time_utc", "kind", "symbol", "detail"].join(",")];
    for (const ev of this.rows) lines.push([ev.seq, ev.ts, q(time(ev.ts)), q(ev.kind), q(ev.symbol), q(JSON.stringify(ev.detail))].join(","));
    const blob = new Blob([lines.join("\r\n") + "\r\n"], { type: "text/csv" });
    const a = el("a", { href: URL.createObjectURL(blob), download: "events.csv" });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  },
};

// ---- versions ---------------------------------------------------------------

const VersionsView = {
  selected: null,
  async show(arg) {
    const s = await api("strategy");
    const active = s.active ? s.active.version : null;
    const body = $("ver-table").querySelector("tbody");
    body.replaceChildren();
    for (const v of s.versions) {
      const actions = el("td", { class: "actions" });
      actions.append(el("button", { onclick: () => { location.hash = "#/versions/" + v.version; } }, "Details"));
      if (v.version !== active) {
        actions.append(el("button", {
          class: "warn", dataset: { activate: String(v.version) },
          onclick: () => this.activate(v.version, active),
        }, active !== null && v.version < active ? "Roll back to v" + v.version : "Activate v" + v.version));
      }
      body.append(row([
        "v" + v.version, el("td", { class: "status " + v.status }, v.version === active ? "active (running)" : v.status),
        v.origin, v.hash.slice(0, 12), v.params.map(([k, x]) => k + "=" + x).join(" ") || "–", v.deployed_at || "–",
        actions,
      ], { dataset: { version: String(v.version), status: v.status }, class: v.version === active ? "current" : "" }));
    }
    $("ver-table").dataset.active = active === null ? "" : String(active);
    const all = s.versions.map((v) => String(v.version));
    this.selected = arg && all.includes(arg) ? Number(arg) : this.selected && all.includes(String(this.selected)) ? this.selected : active ?? (s.versions[0] || {}).version;
    opt($("diff-a"), all); opt($("diff-b"), all);
    if (this.selected) {
      $("diff-b").value = String(this.selected);
      const older = s.versions.find((v) => v.version < this.selected);
      $("diff-a").value = String(older ? older.version : this.selected);
      await Promise.all([this.detail(this.selected), this.diff()]);
    }
    $("diff-a").onchange = () => this.diff();
    $("diff-b").onchange = () => this.diff();
  },
  async activate(version, active) {
    const verb = active !== null && version < active ? "Roll back to" : "Activate";
    if (!confirm(verb + " v" + version + "? It is swapped in between two scans, carrying the running state.")) return;
    try {
      const o = await api("deploy", { method: "POST", body: JSON.stringify({ version }) });
      $("ver-result").textContent = verb + " v" + version + ": active from scan " + o.first_scan + (o.previous ? " (was v" + o.previous + ")" : "");
    } catch (e) {
      $("ver-result").textContent = verb + " v" + version + " failed: " + e.message;
    }
    this.selected = version;
    await this.show(String(version));
    refresh(); refreshSlow();
  },
  async detail(v) {
    const d = await api("strategy/version?version=" + v);
    const r = d.record;
    $("ver-title").textContent = "v" + v + " · " + r.origin + " · " + r.hash.slice(0, 12) + " · " + r.status;
    const bt = d.backtest;
    $("ver-no-backtest").hidden = !!bt;
    $("ver-backtest").hidden = !bt;
    if (bt) lineChart($("ver-backtest"), bt.equity_curve.map((p) => [p.ts, num(p.value)]), num(bt.final_value) >= num(bt.starting_capital) ? "#3fb950" : "#f85149");
    $("ver-backtest").dataset.version = String(v);
    const l = d.live;
    dl($("ver-live"), [
      ["Scans", l.scans + (l.first_scan_ts ? " · " + time(l.first_scan_ts) + " → " + time(l.last_scan_ts) : "")],
      ["Trades", l.trades + " (" + l.wins + " won, " + l.losses + " lost)"],
      ["P&L", fmt(l.pnl) + " · fees " + fmt(l.fees)],
      ["Backtest", bt ? (bt.return_pct === null ? "–" : bt.return_pct.toFixed(2) + "%") + " · " + time(bt.start) + " → " + time(bt.end) : "none archived"],
    ]);
    const lc = $("ver-live-chart");
    lc.hidden = l.pnl_curve.length < 2;
    if (l.pnl_curve.length >= 2) lineChart(lc, l.pnl_curve.map(([t, p]) => [t, num(p)]), num(l.pnl) >= 0 ? "#3fb950" : "#f85149");
  },
  async diff() {
    const a = $("diff-a").value, b = $("diff-b").value;
    if (!a || !b) return;
    const d = await api("strategy/diff?a=" + a + "&b=" + b);
    $("diff-a-head").textContent = "v" + d.a + " · " + (d.hash_a || "").slice(0, 12);
    $("diff-b-head").textContent = "v" + d.b + " · " + (d.hash_b || "").slice(0, 12);
    $("diff-params").querySelector("tbody").replaceChildren(...d.params.map((p) =>
      row([p.name, p.a ?? "–", p.b ?? "–"], { class: p.a === p.b ? "" : "changed" })));
    const missing = [d.source_a ? null : "v" + d.a, d.source_b ? null : "v" + d.b].filter(Boolean).join(" and ");
    diffView($("diff-source"), d.source_diff, "No source diff: the source of " + missing + " is not archived (deployed from a component file); the hashes and parameters above differ as shown.");
  },
};

// ---- settings ---------------------------------------------------------------

const TRIGGER_KEYS = [
  ["loss_threshold_pct", "Daily loss threshold (%)"], ["consecutive_losses", "Consecutive losses"],
  ["every_n_trades", "Every N closed trades"], ["atr_spike_pct", "ATR spike over its 30-day mean (%)"],
  ["cooldown_minutes", "Cooldown (minutes)"], ["window_start", "Nightly window start"], ["window_end", "Nightly window end"],
  ["rollback_underperform_pct", "Rollback when trailing its backtest by (%)"], ["rollback_min_days", "… after at least (days)"],
];

const SettingsView = {
  async show() {
    const [cfg, syms] = await Promise.all([api("config"), api("symbols")]);
    const r = cfg.risk_limits;
    dl($("set-risk"), [
      ["Max trade", r.max_trade_pct + "% (default " + r.default_trade_pct + "%)"],
      ["Max open positions", String(r.max_open_positions)],
      ["Max daily loss", r.max_daily_loss_pct + "%"], ["Max drawdown", r.max_drawdown_pct + "%"],
      ["Max consecutive losses", String(r.max_consecutive_losses)],
      ["Allowed symbols", r.allowed_symbols ? r.allowed_symbols.join(", ") : "any configured"],
    ]);
    const o = (cfg.settings && cfg.settings.orchestrator) || {};
    dl($("set-triggers"), TRIGGER_KEYS.filter(([k]) => k in o).map(([k, label]) => [label, String(o[k])]));
    $("set-config").textContent = JSON.stringify(cfg.settings, null, 2);
    this.symbols(syms.symbols);
  },
  symbols(list) {
    $("set-symbols").querySelector("tbody").replaceChildren(...list.map((s) => {
      const btn = el("button", {
        class: s.paused ? "" : "warn", dataset: { toggle: s.paused ? "resume" : "pause" },
        onclick: () => this.toggle(s.symbol, s.paused ? "resume" : "pause"),
      }, s.paused ? "Resume entries" : "Pause entries");
      return row([s.symbol, s.allowed ? "yes" : "no (risk limits)", s.position_qty ?? "–",
        el("td", { class: s.paused ? "down" : "up" }, s.paused ? "paused" : "enabled"), el("td", {}, btn)],
        { dataset: { symbol: s.symbol, paused: String(s.paused) } });
    }));
  },
  async toggle(symbol, action) {
    try {
      const r = await api("symbols/" + encodeURIComponent(symbol) + "/" + action, { method: "POST", body: "{}" });
      $("set-result").textContent = symbol + ": " + (r.paused ? "new entries paused" : "entries enabled") + (r.changed ? "" : " (no change)");
    } catch (e) {
      $("set-result").textContent = symbol + " " + action + " failed: " + e.message;
    }
    this.symbols((await api("symbols")).symbols);
  },
  onEvent(ev) {
    if (currentView === "settings" && (ev.kind === "pause_symbol" || ev.kind === "resume_symbol")) {
      api("symbols").then((r) => this.symbols(r.symbols)).catch(() => {});
    }
  },
};

Object.assign(Views, {
  symbol: SymbolView, tuner: TunerView, events: EventsView, versions: VersionsView, settings: SettingsView,
});
for (const [name, v] of Object.entries(Views)) {
  const show = v.show.bind(v);
  v.show = (arg) => show(arg).catch((e) => { if (e.message !== "unauthorized") showError(name + ": " + e.message); });
}
