// login: what a hub owner sees who opens their hub's address.
//  1. The hub's address leads to the relay's login, not to the hub.
//  2. A wrong password is refused with a message, on the login page.
//  3. The right password leads through the relay to the hub's own WebUI.
//  4. Logging out (from the hub's /.hubtunnel/logout) ends the session:
//     the hub's address leads to the login again, even when the browser
//     still sends the hub's copy of the cookie.
//
// HT_HUB_URL: the hub's address, e.g. https://demo.localhost:10443/
// HT_PORTAL: the portal's origin, e.g. https://localhost:10443
// HT_USER, HT_PASSWORD: an account that may reach the hub
// HT_HUB_TITLE: the title of the hub's WebUI page
import { env, run, newContext, check, ok, shot } from './lib.mjs';
import { expectLogin, submitLogin, logout, loggedInAs } from './portal.mjs';

const hubURL = env('HT_HUB_URL');
const portal = env('HT_PORTAL');
const user = env('HT_USER');
const password = env('HT_PASSWORD');
const hubTitle = env('HT_HUB_TITLE');

await run(async (browser, state) => {
  const ctx = await newContext(browser);
  const page = state.page = await ctx.newPage();

  await page.goto(hubURL);
  await expectLogin(page, portal, hubURL);
  ok(`the hub's address leads to the login at ${portal}/login, which leads back to ${hubURL}`);

  await submitLogin(page, user, password + 'x');
  await expectLogin(page, portal);
  const error = page.locator('#error');
  check(await error.isVisible(), 'a wrong password shows no message (#error)');
  ok(`a wrong password is refused: ${JSON.stringify(await error.innerText())}`);
  check(await page.title() !== hubTitle, 'a wrong password shows the hub');

  // The login page after a failure still leads back to the hub.
  check(await page.locator('input[name=next]').inputValue() === hubURL,
    `after a wrong password the login no longer leads back to ${hubURL}`);
  await submitLogin(page, user, password);
  await page.waitForURL(hubURL);
  check(await page.title() === hubTitle, `after the login the hub's page is titled ${JSON.stringify(await page.title())}, not ${JSON.stringify(hubTitle)}`);
  ok(`the right password leads to the hub's WebUI at ${page.url()}`);
  await shot(page, 'hub-webui');

  // The session cookie belongs to the relay: the hub's scripts never see it.
  const visible = await page.evaluate(() => document.cookie);
  check(!/hubtunnel/.test(visible), 'the hub\'s page can read the relay\'s cookie (it must be HttpOnly)');
  const names = (await ctx.cookies(hubURL)).map((c) => `${c.name}${c.httpOnly ? '' : ' (not HttpOnly)'}${c.secure ? '' : ' (not Secure)'}`);
  check(names.includes('__Host-hubtunnel'), `the hub's cookies are ${JSON.stringify(names)}, not __Host-hubtunnel (HttpOnly, Secure)`);
  ok('the hub holds the relay\'s cookie __Host-hubtunnel, which its page cannot read');

  // A second page of the hub needs no second login.
  await page.goto(new URL('/?again=1', hubURL).href);
  check(await page.title() === hubTitle, 'a second page of the hub asks for the login again');
  ok('a second page of the hub loads without a second login');

  // The hub's logout link leads to the portal, which asks to confirm.
  const hubCookies = await ctx.cookies(hubURL);
  await page.goto(new URL('/.hubtunnel/logout', hubURL).href);
  check(page.url().startsWith(`${portal}/logout`), `the hub's /.hubtunnel/logout leads to ${page.url()}, not ${portal}/logout`);
  await logout(page);
  ok('logged out');

  // The browser may still hold the hub's copy of the cookie (the portal
  // cannot clear another host's cookie); put it back if it is gone, as
  // someone who had copied it would: the relay must refuse it now.
  const kept = (await ctx.cookies(hubURL)).map((c) => c.name);
  const gone = hubCookies.filter((c) => !kept.includes(c.name)).map((c) => ({
    name: c.name, value: c.value, url: `${new URL(hubURL).origin}/`, httpOnly: c.httpOnly, secure: c.secure, sameSite: c.sameSite,
  }));
  if (gone.length > 0) await ctx.addCookies(gone);
  await page.goto(hubURL);
  await expectLogin(page, portal, hubURL);
  check(await page.title() !== hubTitle, 'after the logout the hub\'s address still shows the hub');
  ok('after the logout the hub\'s address leads to the login again, even with the hub\'s old cookie');

  await page.goto(`${portal}/`);
  check(!(await loggedInAs(page)), 'after the logout the portal still shows a logged-in user');
  ok('after the logout the portal shows nobody logged in');
});
