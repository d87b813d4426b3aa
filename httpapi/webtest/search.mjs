// Drives the search page in Debian's chromium: types a query, checks the
// expected clip is first with its thumbnail loaded, reaches it with the
// keyboard, clicks it and checks the player is positioned at the clip's
// start. Prints a JSON summary; exits 1 with the reasons on failure.
//
//   node search.mjs URL QUERY EXPECTED_VIDEO EXPECTED_START SCREENSHOT
import { chromium } from "playwright-core";

const [url, query, expectVideo, expectStartArg, screenshot] = process.argv.slice(2);
if (!screenshot) {
  console.error("usage: node search.mjs URL QUERY EXPECTED_VIDEO EXPECTED_START SCREENSHOT");
  process.exit(2);
}
const expectStart = Number(expectStartArg);
const failures = [];
const consoleProblems = [];

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const summary = { screenshot };
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  page.setDefaultTimeout(20000);
  page.on("console", (m) => { if (m.type() === "error") consoleProblems.push("console: " + m.text()); });
  page.on("pageerror", (e) => consoleProblems.push("page error: " + e.message));
  page.on("requestfailed", (r) => {
    // A player that moves on from a range request cancels it; that is no error.
    if (r.failure()?.errorText !== "net::ERR_ABORTED") consoleProblems.push("request failed: " + r.url() + " " + r.failure()?.errorText);
  });

  await page.goto(url);
  const box = page.locator('form input[name="q"]');
  await box.click();
  await page.keyboard.type(query);
  await page.keyboard.press("Enter");

  const first = page.locator("#results > li").first();
  await first.waitFor();
  summary.hits = await page.locator("#results > li").count();
  summary.video = await first.getAttribute("data-video-id");
  summary.start = Number(await first.getAttribute("data-start"));
  if (summary.video !== expectVideo) failures.push(`first hit is ${summary.video}, want ${expectVideo}`);
  if (summary.start !== expectStart) failures.push(`first hit starts at ${summary.start}, want ${expectStart}`);
  const text = await first.innerText();
  for (const want of [expectVideo, "score"]) {
    if (!text.includes(want)) failures.push(`first hit's text ${JSON.stringify(text)} lacks ${want}`);
  }

  const img = first.locator("img");
  await page.waitForFunction((el) => el.complete && el.naturalWidth > 0, await img.elementHandle());
  summary.thumbnailWidth = await img.evaluate((el) => el.naturalWidth);

  // Keyboard: from the search box, Tab passes the button and reaches the
  // first result.
  await box.focus();
  await page.keyboard.press("Tab");
  await page.keyboard.press("Tab");
  summary.tabbedTo = await page.evaluate(() => document.activeElement?.closest("li")?.dataset.videoId ?? null);
  if (summary.tabbedTo !== expectVideo) failures.push(`two Tabs from the search box reach ${summary.tabbedTo}, want the first result`);

  await first.locator("button").click();
  const player = page.locator("#player");
  await player.waitFor({ state: "visible" });
  await page.waitForFunction((s) => {
    const v = document.getElementById("player");
    return v.readyState >= 1 && !v.seeking && Math.abs(v.currentTime - s) < 0.05;
  }, expectStart).catch(() => {});
  summary.currentTime = await player.evaluate((v) => v.currentTime);
  summary.playerError = await page.locator("#player-error").innerText();
  if (Math.abs(summary.currentTime - expectStart) >= 0.05) {
    failures.push(`player at ${summary.currentTime}s, want ${expectStart}s (${summary.playerError || "no player error"})`);
  }
  await page.screenshot({ path: screenshot, fullPage: true });

  // A phone-sized window shows the results without sideways scrolling.
  await page.setViewportSize({ width: 390, height: 844 });
  summary.phoneOverflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await page.screenshot({ path: screenshot.replace(/\.png$/, "-phone.png") });
  if (summary.phoneOverflow > 0) failures.push(`the page is ${summary.phoneOverflow}px wider than a 390px phone`);
} catch (err) {
  failures.push(String(err && err.stack || err));
} finally {
  await browser.close();
}
summary.consoleProblems = consoleProblems;
failures.push(...consoleProblems);
console.log(JSON.stringify(summary));
if (failures.length > 0) {
  console.error(failures.join("\n"));
  process.exit(1);
}
