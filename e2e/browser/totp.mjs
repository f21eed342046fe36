// totp: a user turns on the second factor, then needs it to log in.
//  1. Logged in with the password, /totp shows a QR code and the secret as
//     text.
//  2. The code an authenticator app makes of that secret (RFC 6238, as
//     lib.mjs's totp computes it) turns TOTP on.
//  3. After logging out, the password alone no longer logs in: a second
//     step asks for the code.
//  4. A wrong code is refused with a message; the right one logs in.
//
// HT_PORTAL: the portal's origin, e.g. https://localhost:10443
// HT_USER, HT_PASSWORD: an account that has no TOTP yet
import { env, run, newContext, check, ok, shot, totp } from './lib.mjs';
import { expectLogin, submitLogin, submitCode, submit, logout, loggedInAs } from './portal.mjs';

const portal = env('HT_PORTAL');
const user = env('HT_USER');
const password = env('HT_PASSWORD');

const step = (ms) => Math.floor(ms / 30_000);

await run(async (browser, state) => {
  const ctx = await newContext(browser);
  const page = state.page = await ctx.newPage();

  await page.goto(`${portal}/login`);
  await expectLogin(page, portal);
  await submitLogin(page, user, password);
  check(await loggedInAs(page), `the password alone did not log in (before TOTP); the page is ${page.url()}`);
  ok('logged in with the password alone');

  await page.goto(`${portal}/totp`);
  const qr = page.locator('main svg, main img[src^="data:image/"]').first();
  check(await qr.isVisible(), '/totp shows no QR code (an inline SVG or a data: image)');
  const secret = await shownSecret(page);
  ok('/totp shows a QR code and the secret as text');
  await shot(page, 'totp-enrol'); // the secret and the QR code painted over

  // The app's code confirms the enrolment. The relay takes each step's
  // code once, and the step before and after the current one.
  const enrolMs = Date.now();
  await page.locator('input[name=code]').fill(totp(secret, enrolMs));
  await submit(page, 'code');
  check(!(await page.locator('#error').isVisible()), `the app's code did not turn TOTP on: ${await errorText(page)}`);
  ok('the app\'s code turns TOTP on');

  await logout(page);
  await page.goto(`${portal}/login`);
  await submitLogin(page, user, password);
  await expectLogin(page, portal, undefined, { step: 'code' });
  check(!(await loggedInAs(page)), 'the password alone logs in although TOTP is on');
  ok('with TOTP on, the password alone leads to a second step that asks for the code');

  // A code of none of the steps the relay would take.
  const now = Date.now();
  const near = [-1, 0, 1, 2].map((d) => totp(secret, now + d * 30_000));
  let wrong = '000000';
  for (let i = 0; near.includes(wrong) && i < 10; i++) wrong = String(111111 * (i + 1) % 1_000_000).padStart(6, '0');
  await submitCode(page, wrong);
  check(!(await loggedInAs(page)), 'a wrong code logs in');
  check(await page.locator('#error').isVisible(), 'a wrong code shows no message (#error)');
  ok(`a wrong code is refused: ${await errorText(page)}`);

  // Still on the code step (the half-done login allows 5 tries), or back
  // at the password.
  if (await page.locator('input[name=password]').isVisible()) await submitLogin(page, user, password);
  // The code of a step after the one the enrolment used up.
  const ms = step(Date.now()) > step(enrolMs) ? Date.now() : enrolMs + 30_000;
  await submitCode(page, totp(secret, ms));
  check(await loggedInAs(page), `the right code did not log in: ${await errorText(page)} (at ${page.url()})`);
  check(page.url() === `${portal}/`, `the login with TOTP led to ${page.url()}, not the portal's home ${portal}/`);
  ok('the password and the app\'s code log in');
});

// shownSecret reads the base32 secret /totp shows as text: #totp-secret,
// else the first run of base32 (perhaps in groups of four) on the page. It
// never prints it.
async function shownSecret(page) {
  const el = page.locator('#totp-secret');
  const text = (await el.count()) > 0 ? await el.innerText() : await page.locator('main').innerText();
  const m = text.match(/(?:[A-Z2-7]{4}[ ]?){8,}/);
  check(m !== null, '/totp shows no secret as text (base32, at least 32 characters)');
  return m[0].replace(/ /g, '');
}

async function errorText(page) {
  const e = page.locator('#error');
  return (await e.isVisible()) ? JSON.stringify(await e.innerText()) : '(no message)';
}
