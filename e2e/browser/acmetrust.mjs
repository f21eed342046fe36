// acmetrust: Chromium opens the relay's TLS port by a hub's name and by the
// relay's own, with no certificate errors accepted: with the ACME CA's root
// in the browser's trust store (HOME/.pki/nssdb, which the Go test fills with
// certutil) the pages load; without it (HT_EXPECT=untrusted) Chromium
// refuses them as signed by an unknown authority.
//
// HT_URLS: the pages, space-separated, e.g. https://localhost:10443/login
// HT_EXPECT: "trusted" or "untrusted"
import { env, run, check, ok, shot } from './lib.mjs';

const urls = env('HT_URLS').split(' ');
const expect = env('HT_EXPECT');

await run(async (browser, state) => {
  // Unlike newContext: certificate errors are errors here.
  const ctx = await browser.newContext({ ignoreHTTPSErrors: false, viewport: { width: 1024, height: 768 } });
  ctx.setDefaultNavigationTimeout(10_000);
  const page = state.page = await ctx.newPage();
  for (const url of urls) {
    let resp = null, err = null;
    try {
      resp = await page.goto(url);
    } catch (e) {
      err = e;
    }
    if (expect === 'trusted') {
      check(!err && resp, `loading ${url}: ${err && err.message}`);
      ok(`loaded ${url} with no certificate error (status ${resp.status()})`);
    } else {
      check(err && /ERR_CERT_AUTHORITY_INVALID/.test(err.message), `want ERR_CERT_AUTHORITY_INVALID for ${url}, got ${err ? err.message : 'the page'}`);
      ok(`refused ${url}: its certificate is signed by an unknown authority`);
    }
  }
  if (expect === 'trusted') await shot(page, 'acme-trusted');
});
