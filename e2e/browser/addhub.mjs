// addhub: an owner adds a hub on the portal, and the code the page shows
// enrolls a real agent.
//  1. Logged in, the home page offers "Add a hub"; a name that cannot be a
//     hub's is refused with a message beside the field, which keeps it.
//  2. Named HT_HUB, the answer shows the code (large, as a QR code and as
//     the line `hubtunnel enroll CODE`), valid until when, working once.
//  3. Back home, the hub waits for enrollment, without its code.
//  4. On the hub, `hubtunnel enroll CODE --config HT_AGENT_CONFIG` (its
//     agent running, unenrolled) enrolls it with the code read off the page.
//  5. Untouched, the page shows the hub online: it reloads itself while a
//     hub waits.
//
// HT_PORTAL: the portal's origin, e.g. https://localhost:10443
// HT_USER, HT_PASSWORD: an account
// HT_HUB: the name to give the new hub
// HT_HUBTUNNEL, HT_AGENT_CONFIG: the agent's binary and its config
//
// The code is a secret until used: it is never printed, and screenshots
// paint it over.
import { execFile } from 'node:child_process';
import { env, run, newContext, check, ok, shot } from './lib.mjs';
import { submitLogin, submit, loggedInAs } from './portal.mjs';

const portal = env('HT_PORTAL');
const user = env('HT_USER');
const password = env('HT_PASSWORD');
const hub = env('HT_HUB');
const hubtunnel = env('HT_HUBTUNNEL');
const agentConfig = env('HT_AGENT_CONFIG');

await run(async (browser, state) => {
  const ctx = await newContext(browser);
  const page = state.page = await ctx.newPage();
  await page.goto(`${portal}/login`);
  await submitLogin(page, user, password);
  check(await loggedInAs(page), `the login did not work; the page is ${page.url()}`);

  const name = page.locator('#add-hub-form input[name=name]');
  check(await name.isVisible(), 'the home page has no "Add a hub" form (#add-hub-form with a field "name")');
  await name.fill('my_garage!');
  await submit(page, 'name');
  const fieldError = page.locator('#add-hub-error');
  check(await fieldError.isVisible(), 'a bad name shows no message beside the field (#add-hub-error)');
  check(await page.locator('#add-hub-form #add-hub-error').count() === 1, 'the message about the name is not in the form beside the field');
  check(await name.inputValue() === 'my_garage!', `after the refusal the field holds ${JSON.stringify(await name.inputValue())}, not what was typed`);
  check(await page.locator('#enroll-code').count() === 0, 'a refused name shows a code');
  ok(`a bad name is refused beside the field: ${JSON.stringify(await fieldError.innerText())}`);

  await name.fill(hub);
  await submit(page, 'name');
  const codeEl = page.locator('#enroll-code');
  check(await codeEl.isVisible(), `naming the hub shows no code (#enroll-code): ${await errorText(page)}`);
  const code = (await codeEl.innerText()).trim();
  check(/^[^/\s]+\/[0-9A-Z]{4}(-[0-9A-Z]{1,4})+$/.test(code), 'the code shown is not a relay address, a slash and groups of letters and digits');
  const size = await codeEl.evaluate((el) => parseFloat(getComputedStyle(el).fontSize));
  const font = await codeEl.evaluate((el) => getComputedStyle(el).fontFamily);
  check(size >= 20, `the code is small (${size}px); it should be easy to read aloud`);
  check(/mono/i.test(font), `the code is not in a monospace font (${font})`);
  check(await page.locator('svg#enroll-qr').isVisible(), 'no QR code of the code (svg#enroll-qr)');
  const command = (await page.locator('#enroll-command').innerText()).trim();
  check(command === `hubtunnel enroll ${code}`, 'the command line shown is not "hubtunnel enroll" with the code');
  const valid = await page.locator('#new-code-valid').innerText();
  check(/valid until/i.test(valid) && /once/i.test(valid), `the page does not say until when the code is valid and that it works once: ${JSON.stringify(valid)}`);
  ok(`the code is shown large, as a QR code and as a command line; ${valid.trim()}`);
  await shot(page, 'addhub-code'); // the code and its QR code painted over

  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.locator('#new-code-done').click()]);
  check(await page.locator(`#waiting-${hub}`).isVisible(), `the home page does not list ${hub} as waiting for enrollment (#waiting-${hub})`);
  check(!(await page.locator('main').innerText()).includes(code.split('/')[1]), 'the home page shows the code again');
  check(await page.locator(`#hub-${hub}`).count() === 0, `${hub} is listed as a hub before it enrolled`);
  ok(`${hub} waits for enrollment; the code is not shown again`);

  // The page keeps loading itself from here on; count the loads.
  let loads = 0;
  page.on('load', () => { loads++; });
  const began = Date.now();
  const out = await enroll(code);
  const enrolled = Date.now();
  ok(`hubtunnel enroll with the code from the page (${enrolled - began} ms): ${out}`);

  const online = page.locator(`#hub-${hub} .state.online`);
  await online.waitFor({ state: 'visible', timeout: 25_000 }).catch(() => {
    throw new Error(`${hub} did not turn online on the page within 25 s (${loads} reloads)`);
  });
  check(loads > 0, 'the hub turned online without the page loading again');
  check(await page.locator(`#waiting-${hub}`).count() === 0, `${hub} is online and still listed as waiting`);
  ok(`${hub} turns online on the page by itself (${loads} reloads, ${Date.now() - enrolled} ms after the command returned)`);
  await shot(page, 'addhub-online');
});

// enroll runs the agent's `hubtunnel enroll CODE --config FILE`, as the
// owner would on the hub, and returns its output with the code left out.
function enroll(code) {
  return new Promise((resolve, reject) => {
    execFile(hubtunnel, ['enroll', code, '--config', agentConfig], { timeout: 30_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      const out = `${stdout}${stderr}`.split(code).join('<code>').trim().replace(/\n+/g, ' / ');
      if (err) reject(new Error(`hubtunnel enroll failed (${err.code ?? err.signal}): ${out}`));
      else resolve(out);
    });
  });
}

async function errorText(page) {
  const e = page.locator('#error, #add-hub-error').first();
  return (await e.count()) > 0 && (await e.isVisible()) ? JSON.stringify(await e.innerText()) : '(no message)';
}
