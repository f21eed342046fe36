// panelupdate: the panel's update section, on the addon installed by its
// update_script (agent 0.1.0, its init script and supervisor) with a relay
// that offers a release whose agent never brings the tunnel up.
//  1. "Check now" finds the release and offers to install it.
//  2. "Install" shows its progress while the agent swaps and restarts.
//  3. The agent rolls back; the page, still open, says so and why, where
//     the progress was, and in the last update's line.
//
// HT_PANEL: the panel's address, e.g. http://127.0.0.1:8099/addons/hubtunnel/panel/
// HT_SID: a live WebUI session id, @XXXXXXXXXX@
// HT_VERSION: the broken release's version
import { env, run, newContext, check, ok, shot } from './lib.mjs';

const panel = env('HT_PANEL');
const sid = env('HT_SID');
const broken = env('HT_VERSION');

await run(async (browser, state) => {
  const ctx = await newContext(browser);
  const page = state.page = await ctx.newPage();
  await page.goto(`${panel}?sid=${encodeURIComponent(sid)}`);
  await page.waitForFunction(() => document.getElementById('st-state').textContent === 'connected');

  await page.click('#check');
  await page.waitForFunction((v) => document.getElementById('update-note').textContent.includes(v), broken, { timeout: 20_000 });
  await page.locator('#install').waitFor({ state: 'visible' });
  ok(`"check now" offers ${broken}: ${await page.locator('#update-note').textContent()}`);

  await page.click('#install');
  await page.waitForFunction((v) => document.getElementById('update-note').textContent === 'Installing… ' + v, broken);
  check(await page.locator('#install').isHidden(), 'the install button is still offered while installing');
  await shot(page, 'panel-installing');
  ok(`"install" shows its progress: ${await page.locator('#update-note').textContent()}`);

  // The health check gives the new agent 10 s; then the old one is back.
  await page.waitForFunction(() => document.getElementById('update-note').textContent.includes('rolled back'), null, { timeout: 40_000 });
  const note = await page.locator('#update-note').textContent();
  check(note.startsWith(`0.1.0 → ${broken}: rolled back (`) && note.includes('not up within'), `after the install the note says ${JSON.stringify(note)}`);
  const last = await page.locator('#up-result').textContent();
  check(last === note, `the last update's line says ${JSON.stringify(last)}, the note ${JSON.stringify(note)}`);
  await page.waitForFunction(() => document.getElementById('st-state').textContent === 'connected' && document.getElementById('st-version').textContent === '0.1.0', null, { timeout: 20_000 });
  await shot(page, 'panel-rolled-back');
  ok(`the page says the update was rolled back and why: ${note}`);
});
