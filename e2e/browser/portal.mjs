// The portal's pages as the browser tests use them, after the contract in
// design-auth.md ("Portal"): the login form (fields user, password, hidden
// next; the TOTP step's field code), the logout button (#logout) on every
// page of a logged-in user, a message in #error.
import { check } from './lib.mjs';

// expectLogin checks that page shows the portal's login form (or its TOTP
// step, with code) and, when next is given, that it leads back there.
export async function expectLogin(page, portal, next, { step = 'password' } = {}) {
  const url = page.url();
  check(url.startsWith(`${portal}/login`), `expected the login at ${portal}/login, got ${url} (titled ${JSON.stringify(await page.title())})`);
  if (step === 'password') {
    check(await page.locator('input[name=user]').isVisible(), 'the login page has no field "user"');
    check(await page.locator('input[name=password][type=password]').isVisible(), 'the login page has no password field "password"');
  } else {
    check(await page.locator('input[name=code]').isVisible(), 'the login\'s second step has no field "code"');
  }
  if (next !== undefined) {
    const got = await page.locator('input[name=next]').inputValue();
    check(got === next, `the login leads back to ${JSON.stringify(got)}, not ${JSON.stringify(next)}`);
  }
}

// submit clicks the submit button of the form holding field and waits for
// the page it leads to (through any redirects) to load.
export async function submit(page, field) {
  const button = page.locator(`form:has([name=${field}]) [type=submit]`).first();
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), button.click()]);
}

// submitLogin fills the login form and submits it.
export async function submitLogin(page, user, password) {
  await page.locator('input[name=user]').fill(user);
  await page.locator('input[name=password]').fill(password);
  await submit(page, 'password');
}

// submitCode fills the TOTP step's code and submits it.
export async function submitCode(page, code) {
  await page.locator('input[name=code]').fill(code);
  await submit(page, 'code');
}

// logoutButton is the logout button of a portal page: the confirm button
// of GET /logout, else the one every page of a logged-in user has.
function logoutButton(page) {
  return page.locator('#logout-confirm, button#logout, #logout [type=submit]').first();
}

// loggedInAs reports whether page shows a logged-in user (a logout button).
export async function loggedInAs(page) {
  return (await page.locator('button#logout, #logout [type=submit]').count()) > 0;
}

// logout presses the page's logout button and checks the answer shows
// nobody logged in.
export async function logout(page) {
  const button = logoutButton(page);
  check(await button.isVisible(), `${page.url()} has no logout button (#logout)`);
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), button.click()]);
  check(!(await loggedInAs(page)), `after pressing logout, ${page.url()} still shows a logout button`);
}
