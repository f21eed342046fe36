// ccuweb: the settings panel as a hub owner opens it on a CCU, from the
// control-panel button: its address /addons/hubtunnel/?sid=@…@ on the CCU's
// web server (lighttpd), whose index.html goes on to the panel (served by
// the agent through lighttpd's proxy) or, when the panel does not answer,
// to status.cgi (lighttpd's own CGI). e2e/ccuweb_test.go sets it up: the
// addon installed with the real agent, ccusim as the CCU's WebUI login and
// script engine, the real relay.
//
// HT_PHASE=panel (the agent runs, not enrolled):
//  1. The button's page without a session, or with a made-up one, leads
//     to the panel, which refuses.
//  2. With the WebUI's sid it leads to the panel's first-run state, also
//     when the ping fails at first (503, as lighttpd answers right after
//     a start).
//  3. The relay's code enrolls the hub: the page's POST passes lighttpd and
//     the panel's same-origin check; the status turns connected.
//  4. The WebUI's Download button for an addon update (a stand-in of the
//     WebUI's page, /pages/index.htm?sid=@…@, opening update-check.cgi's
//     cmd=download in a new tab as the WebUI does) leads to the panel's
//     update section, with the session: no second login.
// HT_PHASE=crashed (the agent was killed; its supervisor ran it again):
//  5. The panel, connected, says the agent was restarted after a crash,
//     how it ended (SIGKILL) and when.
// HT_PHASE=stopped (the agent stopped; its last start failed):
//  6. The button's page leads to status.cgi: not running, and why.
//  7. Its start button starts the service; its link leads back to the
//     panel, connected.
//
// HT_BUTTON: the button's address, http://127.0.0.1:PORT/addons/hubtunnel/
// HT_SID: a live WebUI session id, @XXXXXXXXXX@ (in the address as the
//   WebUI puts it there: @s and all)
// HT_HUB: the hub's name at the relay
// HT_CODE (panel): an enrollment code for HT_HUB (a secret: never printed,
//   never on a screenshot: the field is empty whenever one is taken)
// HT_WHY (stopped): a word the start error must contain
import { env, run, newContext, check, ok, shot } from './lib.mjs';

const phase = env('HT_PHASE');
const button = env('HT_BUTTON');
const sid = env('HT_SID');
const hub = env('HT_HUB');

// open goes to the button's address with query and waits for index.html
// to send the browser on to a page whose path ends in where; it returns
// that page's response.
async function open(page, query, where) {
  const arrived = (u) => new URL(u).pathname.endsWith(where);
  let landed = null;
  const seen = (r) => {
    if (r.request().isNavigationRequest() && r.frame() === page.mainFrame() && arrived(r.url())) landed = r;
  };
  page.on('response', seen);
  try {
    await page.goto(button + query);
    await page.waitForURL(arrived, { timeout: 15_000 });
    await page.waitForLoadState();
  } finally {
    page.off('response', seen);
  }
  check(landed !== null, `no response for ${page.url()}`);
  return landed;
}

async function connected(page, timeout = 20_000) {
  await page.waitForFunction(() => document.getElementById('st-state').textContent === 'connected', null, { timeout });
}

async function panelPhase(page) {
  let resp = await open(page, '', '/panel/');
  check(resp.status() === 403, `the panel without a session answered ${resp.status()}, want 403`);
  const why = await page.locator('#refused').textContent();
  check(why.includes('control panel'), `the refusal says ${JSON.stringify(why)}, not where to open the panel`);
  ok('without a session the button\'s page leads to the panel, which refuses');

  resp = await open(page, '?sid=%40XyZ0000000%40', '/panel/');
  check(resp.status() === 403, `the panel with a made-up session answered ${resp.status()}, want 403`);
  check(await page.locator('#code').count() === 0, 'the refusal shows the code field');
  ok('a made-up session is refused');

  resp = await open(page, `?sid=${sid}`, '/panel/');
  check(resp.status() === 200, `the panel with the WebUI session answered ${resp.status()}`);
  check(new URL(page.url()).searchParams.get('sid') === sid, `index.html lost the sid on the way: ${page.url()}`);
  await page.locator('#code').waitFor({ state: 'visible' });
  await page.waitForFunction(() => document.getElementById('st-state').textContent !== '');
  check((await page.locator('#st-state').textContent()).includes('not connected'), 'the first-run state is not "not connected to a relay yet"');
  await shot(page, 'ccuweb-first-run');
  ok('with the WebUI session the button\'s page leads to the panel: the code field');

  // Right after a start lighttpd may still count the agent down from a
  // refused connection and answer 503 for a second or two: the button's
  // page tries the ping again rather than sending the owner to status.cgi.
  let pings = 0;
  await page.route('**/addons/hubtunnel/panel/ping', (route) => {
    pings++;
    return pings <= 2 ? route.fulfill({ status: 503, body: 'down' }) : route.continue();
  });
  resp = await open(page, `?sid=${sid}`, '/panel/');
  await page.unroute('**/addons/hubtunnel/panel/ping');
  check(resp.status() === 200 && pings === 3, `after two failed pings the button's page went to ${page.url()} (${pings} pings)`);
  await page.locator('#code').waitFor({ state: 'visible' });
  ok('a ping answered 503 twice (lighttpd right after a start) is tried again: the panel');

  // The POST goes to lighttpd's address, which lighttpd passes on.
  const posted = page.waitForResponse((r) => r.url().endsWith('/panel/api/enroll'), { timeout: 20_000 });
  await page.fill('#code', env('HT_CODE'));
  await page.click('#enroll-button');
  const enrolled = await posted;
  check(enrolled.status() === 200, `the enrollment POST through lighttpd answered ${enrolled.status()}`);
  await page.waitForFunction(() => document.getElementById('enroll-note').textContent.startsWith('Enrolled'), null, { timeout: 20_000 });
  await connected(page);
  const name = await page.locator('#st-name').textContent();
  check(name === hub, `the hub's name shows as ${JSON.stringify(name)}, want ${hub}`);
  ok(`enrolled through lighttpd, the status turns connected as hub ${name}`);
  await shot(page, 'ccuweb-connected');

  await page.goto(`${new URL(button).origin}/pages/index.htm?sid=${sid}`);
  const [tab] = await Promise.all([page.context().waitForEvent('page'), page.click('#download')]);
  await tab.waitForURL((u) => new URL(u).pathname.endsWith('/panel/'), { timeout: 15_000 });
  const at = new URL(tab.url());
  check(at.hash === '#updates', `the Download button's tab is at ${tab.url()}, not the update section`);
  check(at.searchParams.get('sid') === sid, `the Download button's tab lost the WebUI session: ${tab.url()}`);
  check(await tab.locator('#refused').count() === 0, `the panel refused the Download button's tab: ${await tab.locator('body').innerText()}`);
  await connected(tab);
  const inView = await tab.evaluate(() => {
    const r = document.getElementById('updates').getBoundingClientRect();
    return Math.abs(r.top) < 8; // scrolled to it, give or take a subpixel
  });
  check(inView, `the page is not scrolled to the update section: it is ${await tab.evaluate(() => document.getElementById('updates').getBoundingClientRect().top)} px from the top`);
  await shot(tab, 'ccuweb-download-button');
  ok('the WebUI\'s Download button leads to the panel\'s update section, logged in');
  await tab.close();
}

async function crashedPhase(page) {
  await open(page, `?sid=${sid}`, '/panel/');
  await connected(page);
  await page.locator('#st-restarts').waitFor({ state: 'visible' });
  const label = await page.locator('#st-restarts-label').textContent();
  const restarts = await page.locator('#st-restarts').textContent();
  check(label === 'Restarts after a crash' && /^1 \(SIGKILL, .+\)$/.test(restarts), `the panel says ${JSON.stringify(label)}: ${JSON.stringify(restarts)}`);
  await shot(page, 'ccuweb-crashed');
  ok(`after a crash the panel says the agent was restarted: ${label}: ${restarts}`);
}

async function stoppedPhase(page) {
  const resp = await open(page, `?sid=${sid}`, '/status.cgi');
  check(resp.status() === 200, `status.cgi answered ${resp.status()}`);
  const text = await page.locator('body').textContent();
  check(text.includes('The hubtunnel service is not running.'), `status.cgi does not say the service is not running:\n${text.slice(0, 400)}`);
  ok('with the agent stopped the button\'s page leads to status.cgi: not running');

  const why = await page.locator('#start-error').textContent();
  check(why.includes(env('HT_WHY')), `the start error shown is ${JSON.stringify(why)}`);
  await shot(page, 'ccuweb-status-cgi');
  ok(`status.cgi shows why the last start failed: ${why.trim()}`);

  await Promise.all([page.waitForNavigation({ timeout: 30_000 }), page.click('#start')]);
  const after = await page.locator('body').textContent();
  check(after.includes('Gestartet / started'), `after the start button status.cgi says:\n${after.slice(0, 400)}`);
  await shot(page, 'ccuweb-started');
  ok('its start button starts the service');

  await page.click('text=on to the settings');
  await page.waitForURL((u) => u.pathname.endsWith('/panel/'), { timeout: 15_000 });
  await connected(page);
  const name = await page.locator('#st-name').textContent();
  check(name === hub, `the hub's name shows as ${JSON.stringify(name)}, want ${hub}`);
  await shot(page, 'ccuweb-back');
  ok(`its link leads back to the panel, connected as hub ${name}`);
}

await run(async (browser, state) => {
  const ctx = await newContext(browser);
  const page = state.page = await ctx.newPage();
  if (phase === 'panel') {
    await panelPhase(page);
  } else if (phase === 'crashed') {
    await crashedPhase(page);
  } else if (phase === 'stopped') {
    await stoppedPhase(page);
  } else {
    check(false, `HT_PHASE is ${JSON.stringify(phase)}; want panel, crashed or stopped`);
  }
});
