// Loads the host's dashboard in headless Chromium, waits for a position to
// appear live (after a replayed fill), presses Halt and waits for the risk
// panel to show it. Saves screenshots. Prints one JSON line of results.
//
// env: DASHBOARD_URL (the http://127.0.0.1:PORT/?token=... `host run` printed), API_TOKEN
//      (optional, added to the URL), SCREENSHOT_DIR,
//      CHROMIUM (default /usr/bin/chromium)
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
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
  // A replayed fill opens a position: it appears without reloading.
  await page.waitForSelector("#positions tbody tr", { timeout: 120000 });
  result.position_symbol = await page.locator("#positions tbody tr").first().getAttribute("data-symbol");
  result.fill_events_seen = await page.locator('#events li[data-kind="fill"]').count();
  await page.waitForSelector("#chart polyline", { timeout: 15000 });
  await page.screenshot({ path: join(shots, "dashboard.png"), fullPage: true });
  // Halt from the risk panel.
  await page.click("#btn-halt");
  await page.waitForSelector('#risk-state[data-state="halted"]', { timeout: 15000 });
  result.risk_state = await page.locator("#risk-state").textContent();
  await page.waitForSelector('#events li[data-kind="halt"]', { timeout: 15000 });
  await page.screenshot({ path: join(shots, "dashboard-halted.png"), fullPage: true });
  result.page_errors = errors;
  console.log(JSON.stringify(result));
} finally {
  await ctx.close();
  rmSync(profile, { recursive: true, force: true });
}
