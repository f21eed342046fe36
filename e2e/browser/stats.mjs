// stats: the traffic statistics page, served by the agent from a day of
// synthetic counters (e2e/stats_test.go writes them as stats.json before
// the agent starts) with a 500 MB plan: the charts have the bars the data
// implies, the plan bar has its line, the numbers read in the page's
// language, and the page fits a phone and BRIEF.md's page budget (150 KB
// transferred, nothing from another origin).
//
// HT_URL: the page with the WebUI's session, e.g.
//   http://127.0.0.1:8099/addons/hubtunnel/panel/stats?sid=%40AbCdEf1234%40
// HT_USER_HOURS: how many of the last 48 hours had user traffic
// HT_MONTH_USER_DE, HT_MONTH_USER_EN: this month's usage as the page writes it
import { join } from 'node:path';
import { env, run, newContext, check, ok, settings, load, checkBudget } from './lib.mjs';

// shot keeps a screenshot with the charts: lib.mjs's masks every SVG (the
// portal's QR codes are secrets); this page shows none.
async function shot(page, name) {
  const path = join(settings.artifacts, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  ok(`screenshot ${path}`);
}

const url = env('HT_URL');
const sep = url.includes('?') ? '&' : '?';
const userHours = Number(env('HT_USER_HOURS'));
const monthUser = { de: env('HT_MONTH_USER_DE'), en: env('HT_MONTH_USER_EN') };

await run(async (browser, state) => {
  const ctx = await newContext(browser, 'de');
  const page = state.page = await ctx.newPage();
  const loaded = await load(page, url + sep + 'lang=de');
  const resp = loaded.resp;
  check(resp && resp.status() === 200, `GET ${url}: ${resp && resp.status()}`);
  checkBudget('the page with a day of counters', loaded);
  check((await page.locator('html').getAttribute('lang')) === 'de', 'the page is not in German');
  check((await page.locator('h1').innerText()).includes('Datenverbrauch'), 'no German heading');
  ok('the page speaks de');

  const hourBars = page.locator('#hours g.bar');
  check(await hourBars.count() === 48, `the hours chart has ${await hourBars.count()} bars, want 48`);
  ok('48 hourly bars');
  const userRects = await page.locator('#hours rect.user').count();
  check(userRects === userHours, `the hours chart has ${userRects} user bars, want ${userHours}`);
  const overRects = await page.locator('#hours rect.overhead').count();
  check(overRects >= 24, `the hours chart has ${overRects} overhead bars, want at least 24 (every hour of the day)`);
  // Every bar says what it holds when pointed at (its SVG title).
  const title = await hourBars.last().locator('title').textContent();
  check(/Nutzung .* Overhead /.test(title), `the last hour's title is ${JSON.stringify(title)}`);
  ok(`${userHours} hours with user traffic, ${overRects} with overhead; a bar's title: ${title}`);

  const dayBars = page.locator('#days g.bar');
  check(await dayBars.count() === 31, `the days chart has ${await dayBars.count()} bars, want 31`);
  const daysWithUser = await page.locator('#days rect.user').count();
  check(daysWithUser >= 1 && daysWithUser <= 2, `${daysWithUser} days with user traffic, want the one or two the synthetic day touches`);
  ok(`31 daily bars, ${daysWithUser} with user traffic`);

  const line = page.locator('#plan line.plan-line');
  check(await line.count() === 1, 'no plan line on the plan bar');
  const x = Number(await line.getAttribute('x1'));
  const usedW = Number(await page.locator('#plan rect.used').getAttribute('width'));
  check(x > 0 && usedW > 0 && usedW < x, `the used bar (${usedW}) does not end before the plan line (${x})`);
  const planOf = await page.locator('#plan-of').innerText();
  check(/^\d+(,\d+)? % von 500 MB$/.test(planOf), `the plan says ${JSON.stringify(planOf)}`);
  const projection = await page.locator('#projection').innerText();
  check(/Hochrechnung .*\d+(,\d+)? [KMG]B/.test(projection), `the projection says ${JSON.stringify(projection)}`);
  ok(`the plan line and "${planOf}", "${projection}"`);

  const month = await page.locator('#month').innerText();
  check(month.includes(`Nutzung ${monthUser.de}`), `this month's box says ${JSON.stringify(month)}, want usage ${monthUser.de}`);
  ok(`this month's usage reads ${monthUser.de}`);

  const events = await page.locator('#events tr.event').allInnerTexts();
  check(events.some((e) => e.includes('wieder verbunden') && e.includes('the relay is restarting')), `the events are ${JSON.stringify(events)}`);
  ok('the events list the reconnect and why');
  await shot(page, 'stats-de');

  await page.goto(url + sep + 'lang=en');
  check((await page.locator('#plan-of').innerText()).endsWith('% of 500 MB'), 'the English plan line');
  const monthEn = await page.locator('#month').innerText();
  check(monthEn.includes(`Usage ${monthUser.en}`), `this month's box (en) says ${JSON.stringify(monthEn)}`);
  ok('the page speaks en');
  await shot(page, 'stats-en');

  await page.setViewportSize({ width: 375, height: 740 });
  await page.goto(url + sep + 'lang=de');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `the page is ${overflow} px wider than a phone`);
  ok('phone width: nothing wider than the screen');
  await shot(page, 'stats-phone');
});
