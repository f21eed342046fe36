// pages: the login page and the portal's home as a person sees them, kept
// as screenshots, in German for a browser that prefers German and in
// English otherwise; and the portal's way to a hub.
//  1. /login in German (Accept-Language: de) and in English.
//  2. Logged in, the home lists the user's hub (#hubs) with a link to it.
//  3. That link opens the hub's WebUI without a second login.
//
// HT_PORTAL: the portal's origin, e.g. https://localhost:10443
// HT_USER, HT_PASSWORD: the owner of hub HT_HUB
// HT_HUB, HT_HUB_URL, HT_HUB_TITLE: the hub's name, address and WebUI title
import { env, run, newContext, check, ok, shot } from './lib.mjs';
import { expectLogin, submitLogin, loggedInAs } from './portal.mjs';

const portal = env('HT_PORTAL');
const user = env('HT_USER');
const password = env('HT_PASSWORD');
const hub = env('HT_HUB');
const hubURL = env('HT_HUB_URL');
const hubTitle = env('HT_HUB_TITLE');

// Words each language's login page must show, and the other's must not.
const words = { de: /Passwort|Kennwort/, en: /Password/ };

await run(async (browser, state) => {
  const texts = {};
  const pages = {};
  for (const lang of ['de', 'en']) {
    const ctx = await newContext(browser, lang === 'de' ? 'de' : 'en-US');
    const page = state.page = pages[lang] = await ctx.newPage();
    await page.goto(`${portal}/login`);
    await expectLogin(page, portal);
    const htmlLang = await page.evaluate(() => document.documentElement.lang);
    check(htmlLang.startsWith(lang), `the login page for a browser that prefers ${lang} says lang=${JSON.stringify(htmlLang)}`);
    texts[lang] = await page.locator('body').innerText();
    check(words[lang].test(texts[lang]), `the ${lang} login page does not say ${words[lang]}: ${JSON.stringify(texts[lang].slice(0, 200))}`);
    ok(`the login page speaks ${lang} to a browser that prefers ${lang}`);
    await shot(page, `login-${lang}`);
  }
  check(!words.en.test(texts.de), 'the German login page has English words');
  check(texts.de !== texts.en, 'the German and the English login pages read the same');

  for (const lang of ['de', 'en']) {
    const page = state.page = pages[lang];
    await submitLogin(page, user, password);
    check(page.url() === `${portal}/`, `the login without a next page led to ${page.url()}, not the portal's home ${portal}/`);
    check(await loggedInAs(page), 'the portal\'s home has no logout button (#logout)');
    const hubs = page.locator('#hubs');
    check(await hubs.isVisible(), 'the portal\'s home has no list of hubs (#hubs)');
    const link = hubs.locator(`a[href="${hubURL}"]`);
    check((await link.count()) === 1, `the list of hubs has no link to ${hubURL}: ${JSON.stringify((await hubs.innerText()).slice(0, 300))}`);
    check((await link.innerText()).includes(hub), `the link to ${hubURL} does not name the hub ${hub}`);
    ok(`the portal's home (${lang}) lists hub ${hub} with a link to ${hubURL}`);
    await shot(page, `portal-home-${lang}`);
  }

  // From the portal to the hub: the session the portal has is handed to
  // the hub's host without asking again.
  const page = state.page = pages.en;
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.locator(`#hubs a[href="${hubURL}"]`).click()]);
  check(page.url() === hubURL, `the hub's link led to ${page.url()}, not ${hubURL}`);
  check(await page.title() === hubTitle, `the hub's link led to a page titled ${JSON.stringify(await page.title())}, not ${JSON.stringify(hubTitle)}`);
  ok('the hub\'s link on the portal opens its WebUI without a second login');
});
