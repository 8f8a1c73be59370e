// Loads the host's dashboard in headless Chromium, waits for a position to
// appear live (after a replayed fill), presses Halt and waits for the risk
// panel to show it; then walks every view: symbol detail (candles, markers,
// position lines), events (a live event, the kind filter, the CSV export of
// the rows shown), versions (deploys v2 with `host deploy`, rolls back to v1
// from the page), tuner log (the decision filter, a source diff), settings
// (pauses BTCUSD). Saves a screenshot of each. Prints one JSON line of results.
//
// env: DASHBOARD_URL (the http://127.0.0.1:PORT/?token=... `host run` printed), API_TOKEN
//      (optional, added to the URL), SCREENSHOT_DIR,
//      CHROMIUM (default /usr/bin/chromium),
//      HOST_BIN, V2_WASM, V2_SOURCE (+ HOST_DATA_DIR, HOST_ARCHIVE_DIR, HOST_CONFIG
//      inherited by `host deploy`)
import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, mkdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const url = process.env.DASHBOARD_URL;
const token = process.env.API_TOKEN || "";
const shots = process.env.SCREENSHOT_DIR || ".";
if (!url) throw new Error("DASHBOARD_URL is required");
mkdirSync(shots, { recursive: true });

const profile = mkdtempSync(join(tmpdir(), "dashboard-profile-"));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1280, height: 900 },
  acceptDownloads: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const result = {};
try {
  const page = ctx.pages()[0] || (await ctx.newPage());
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  // Jupyter-style: the URL `host run` printed carries the token once; the
  // page keeps it in localStorage and drops it from the address bar.
  const start = new URL(url);
  if (token) start.searchParams.set("token", token);
  await page.goto(start.toString(), { waitUntil: "load" });
  result.token_left_in_url = page.url().includes("token=");
  const t0 = Date.now();
  await page.reload({ waitUntil: "load" });
  result.load_ms = await page.evaluate(() => {
    const n = performance.getEntriesByType("navigation")[0];
    return Math.round(n.loadEventEnd - n.startTime);
  });
  // Data arrives (status rendered) and the event stream is live.
  await page.waitForFunction(() => document.getElementById("equity").textContent !== "–", null, { timeout: 15000 });
  result.first_data_ms = Date.now() - t0;
  await page.waitForSelector("#conn.on", { timeout: 15000 });
  result.positions_at_load = await page.locator("#positions tbody tr").count();
  const view = (hash) => page.evaluate((h) => { location.hash = h; }, hash);
  const T = { timeout: 20000 };

  // Symbol detail, open before any fill: a replayed fill opens a position and
  // the chart gets its marker and the position's lines without reloading.
  await view("#/symbol/BTCUSD");
  await page.waitForFunction(() => {
    const d = document.getElementById("sym-chart").dataset;
    return Number(d.candles) > 0 && Number(d.markers) > 0 && d.position === "open" &&
      document.querySelector("#positions tbody tr") !== null;
  }, null, { timeout: 120000 });
  // The same position on the overview (rendered while hidden), without reloading.
  result.position_symbol = await page.locator("#positions tbody tr").first().getAttribute("data-symbol");
  result.fill_events_seen = await page.locator('#events li[data-kind="fill"]').count();
  result.symbol_view = await page.evaluate(() => {
    const d = document.getElementById("sym-chart").dataset;
    return {
      symbol: d.symbol, candles: Number(d.candles), markers: Number(d.markers), lines: Number(d.lines),
      canvases: document.querySelectorAll("#sym-chart canvas").length,
      tiers: [...document.querySelectorAll("#sym-tiers button")].map((b) => b.dataset.tier),
      trades: document.querySelectorAll("#sym-trades tbody tr").length,
    };
  });
  await page.screenshot({ path: join(shots, "dashboard-symbol.png"), fullPage: true });
  await view("#/overview");
  await page.waitForFunction(() => Number(document.getElementById("chart").dataset.points) >= 1, null, { timeout: 15000 });
  await page.screenshot({ path: join(shots, "dashboard.png"), fullPage: true });
  // Halt from the risk panel.
  await page.click("#btn-halt");
  await page.waitForSelector('#risk-state[data-state="halted"]', { timeout: 15000 });
  result.risk_state = await page.locator("#risk-state").textContent();
  await page.waitForSelector('#events li[data-kind="halt"]', { timeout: 15000 });
  await page.screenshot({ path: join(shots, "dashboard-halted.png"), fullPage: true });

  // Events: every kind, then a live one arrives; the kind filter; the CSV.
  const rows = () => page.evaluate(() => [...document.querySelectorAll("#ev-table tbody tr")].map((tr) => ({ seq: Number(tr.dataset.seq), kind: tr.dataset.kind })));
  await view("#/events");
  await page.waitForFunction(() => Number(document.getElementById("ev-table").dataset.rows) > 0, null, T);
  result.events_view = { all_rows: (await rows()).length };
  // a live event: the halt above is lifted (a host without --orchestrate refuses reviews)
  await page.evaluate(() => api("resume", { method: "POST" }));
  await page.waitForSelector('#ev-table tbody tr[data-kind="resume"]', T);
  await page.evaluate(() => api("halt", { method: "POST" }));
  result.events_view.live_kind_arrived = true;
  await page.selectOption("#ev-kind", "fill");
  await page.click('#ev-filter button[type="submit"]');
  await page.waitForFunction(() => {
    const trs = [...document.querySelectorAll("#ev-table tbody tr")];
    return trs.length > 0 && trs.every((tr) => tr.dataset.kind === "fill");
  }, null, T);
  const shown = await rows();
  result.events_view.fill_rows = shown.length;
  result.events_view.fill_kinds = [...new Set(shown.map((r) => r.kind))];
  result.events_view.fill_seqs = shown.map((r) => r.seq);
  const [download] = await Promise.all([page.waitForEvent("download", T), page.click("#ev-csv")]);
  result.events_view.csv_name = download.suggestedFilename();
  result.events_view.csv = readFileSync(await download.path(), "utf8");
  await page.screenshot({ path: join(shots, "dashboard-events.png"), fullPage: true });

  // Versions: v2 deployed into the running host, then rolled back to v1 from the page.
  execFileSync(process.env.HOST_BIN, ["deploy", process.env.V2_WASM, "--source", process.env.V2_SOURCE], { stdio: "pipe" });
  await view("#/versions");
  await page.waitForSelector('#ver-table[data-active="2"]', T);
  result.versions_view = { active_before: "2" };
  await view("#/versions/1");
  await page.waitForFunction(() => {
    const d = document.getElementById("ver-backtest").dataset;
    return d.version === "1" && Number(d.points) > 0;
  }, null, T);
  result.versions_view.backtest_points = await page.evaluate(() => Number(document.getElementById("ver-backtest").dataset.points));
  page.once("dialog", (d) => d.accept());
  await page.click('[data-activate="1"]');
  await page.waitForSelector('#ver-table[data-active="1"]', T);
  result.versions_view.active_after = await page.getAttribute("#ver-table", "data-active");
  // the refresh after the rollback may re-render the view (and its selects)
  // once more: choose again until the diff of v1 and v2 is shown
  for (let i = 0; ; i++) {
    await page.selectOption("#diff-a", "1");
    await page.selectOption("#diff-b", "2");
    try {
      await page.waitForFunction(() => document.getElementById("diff-b-head").textContent.startsWith("v2"), null, { timeout: 5000 });
      break;
    } catch (e) {
      if (i >= 3) throw e;
    }
  }
  await page.screenshot({ path: join(shots, "dashboard-versions.png"), fullPage: true });

  // Tuner log: the decision filter, then the rejected run opened with its diff.
  const runs = () => page.evaluate(() => [...document.querySelectorAll("#tuner-runs tbody tr.run")].map((tr) => tr.dataset.decision));
  await view("#/tuner");
  await page.waitForFunction(() => document.querySelectorAll("#tuner-runs tbody tr.run").length > 0, null, T);
  result.tuner_view = { all_rows: (await runs()).length };
  await page.selectOption("#tuner-decision", "no_change");
  await page.waitForFunction(() => document.querySelectorAll("#tuner-runs tbody tr.run").length === 1, null, T);
  result.tuner_view.filtered = await runs();
  await page.selectOption("#tuner-decision", "");
  await page.waitForFunction(() => document.querySelectorAll("#tuner-runs tbody tr.run").length > 1, null, T);
  await page.click('#tuner-runs tr.run[data-result="rejected"]');
  const diff = page.locator('#tuner-runs tr.run-detail:not([hidden]) pre.diff');
  await diff.waitFor(T);
  result.tuner_view.diff_added = Number(await diff.getAttribute("data-added"));
  await page.screenshot({ path: join(shots, "dashboard-tuner.png"), fullPage: true });

  // Settings: pause BTCUSD's entries.
  await view("#/settings");
  await page.waitForSelector('#set-symbols tr[data-symbol="BTCUSD"] button[data-toggle="pause"]', T);
  await page.click('#set-symbols tr[data-symbol="BTCUSD"] button[data-toggle="pause"]');
  await page.waitForSelector('#set-symbols tr[data-symbol="BTCUSD"][data-paused="true"]', T);
  result.settings_view = { paused: await page.getAttribute('#set-symbols tr[data-symbol="BTCUSD"]', "data-paused") };
  await page.screenshot({ path: join(shots, "dashboard-settings.png"), fullPage: true });

  result.page_errors = errors;
  console.log(JSON.stringify(result));
} finally {
  await ctx.close();
  rmSync(profile, { recursive: true, force: true });
}
