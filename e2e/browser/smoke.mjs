// smoke: Chromium loads a page the relay serves over TLS (its self-signed
// certificate accepted) and a screenshot of it is kept. It proves the
// browser, the launcher and the relay's TLS port before the flows use them:
// when it fails, the flows' failures say nothing about the pages.
//
// HT_URL: the page, e.g. https://demo.localhost:10443/
// HT_TITLE: what the page's title says
import { env, run, newContext, check, ok, shot } from './lib.mjs';

const url = env('HT_URL');
const title = env('HT_TITLE');

await run(async (browser, state) => {
  const ctx = await newContext(browser);
  const page = state.page = await ctx.newPage();
  const resp = await page.goto(url);
  check(resp !== null, `no answer from ${url}`);
  ok(`loaded ${page.url()} (status ${resp.status()}, title ${JSON.stringify(await page.title())})`);
  check((await page.title()).includes(title), `the page's title does not say ${JSON.stringify(title)}`);
  ok(`the page's title says ${JSON.stringify(title)}`);
  await shot(page, 'smoke');
});
