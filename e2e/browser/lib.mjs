// What the browser tests' scripts share: Debian's Chromium started the one
// way this machine allows, the settings e2e/browser_test.go hands over in
// HT_* variables, and the lines the Go test reads back.
//
// A script prints "ok: <what a user would have seen>" for each check that
// passed and exits 0; on the first check that fails it prints
// "FAIL: <what went wrong>", keeps a screenshot of the page as it was
// (fail-<script>.png in the artifacts folder) and exits 1. It never prints
// a password, a cookie or a TOTP secret or code.
//
// Chromium reaches only the relay on 127.0.0.1: every *.localhost name is
// mapped there, and proxies, background networking, component updates and
// sync are off (this machine refuses every other connection).
import { chromium } from 'playwright-core';
import { mkdirSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';
import { createHmac } from 'node:crypto';

const script = basename(process.argv[1] ?? 'script', '.mjs');

// env returns the variable's value; a missing one ends the script.
export function env(name) {
  const v = process.env[name];
  if (!v) {
    console.log(`FAIL: ${name} is not set; e2e/browser_test.go sets it (go test ./e2e/ -run Browser)`);
    process.exit(2);
  }
  return v;
}

export const settings = {
  chromium: process.env.HT_CHROMIUM || '/usr/bin/chromium',
  artifacts: env('HT_ARTIFACTS'),
};

export function ok(what) {
  console.log(`ok: ${what}`);
}

// check fails the script with message unless cond holds.
export function check(cond, message) {
  if (!cond) throw new Error(message);
}

// launch starts headless Chromium. Playwright gives it a fresh, empty
// profile (--user-data-dir) of its own, removed at close.
export async function launch() {
  return chromium.launch({
    executablePath: settings.chromium,
    headless: true,
    chromiumSandbox: false,
    timeout: 20_000,
    env: { ...process.env, http_proxy: '', https_proxy: '', HTTP_PROXY: '', HTTPS_PROXY: '', all_proxy: '', ALL_PROXY: '' },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-proxy-server',
      '--host-resolver-rules=MAP localhost 127.0.0.1, MAP *.localhost 127.0.0.1',
    ],
  });
}

// newContext is a fresh browser window state (no cookies) that accepts the
// relay's self-signed certificate and asks for pages in locale (e.g. "de").
export async function newContext(browser, locale = 'en-US') {
  const ctx = await browser.newContext({
    ignoreHTTPSErrors: true,
    locale,
    extraHTTPHeaders: { 'Accept-Language': locale === 'de' ? 'de-DE,de;q=0.9' : 'en-US,en;q=0.9' },
    viewport: { width: 1024, height: 768 },
  });
  ctx.setDefaultTimeout(10_000);
  ctx.setDefaultNavigationTimeout(10_000);
  return ctx;
}

// secrets are the portal's elements that show a secret (a TOTP secret, as
// text and as a QR code; a new app token and its copy-paste lines; an
// enrollment code, its QR code and its command line): every screenshot
// paints them over.
const secrets = '#totp-secret, figure.qr, main svg, main img[src^="data:"], #token-secret, [id^="token-line-"], #enroll-code, #enroll-command';

// shot keeps a screenshot of page as <name>.png in the artifacts folder.
export async function shot(page, name) {
  mkdirSync(settings.artifacts, { recursive: true });
  const path = join(settings.artifacts, `${name}.png`);
  await page.screenshot({ path, fullPage: true, mask: [page.locator(secrets)] });
  ok(`screenshot ${path}`);
  return path;
}

// run runs the script's body with a browser, and turns a failed check, a
// timeout or any other error into the FAIL line, a screenshot of the page
// last used, and exit status 1. The whole script gets 50 s.
export async function run(body) {
  const watchdog = setTimeout(() => {
    console.log(`FAIL: ${script} did not finish within 50 s`);
    process.exit(1);
  }, 50_000);
  // A screenshot of an earlier run's failure would mislead.
  rmSync(join(settings.artifacts, `fail-${script}.png`), { force: true });
  const browser = await launch();
  const state = { page: null };
  let status = 0;
  try {
    await body(browser, state);
  } catch (err) {
    status = 1;
    console.log(`FAIL: ${(err && err.message) || err}`.split('\n').slice(0, 8).join('\n'));
    if (state.page && !state.page.isClosed()) {
      try {
        console.log(`FAIL: the page was ${state.page.url()}`);
        await shot(state.page, `fail-${script}`);
      } catch { /* the page is gone; the message above says why */ }
    }
  } finally {
    await browser.close().catch(() => {});
    clearTimeout(watchdog);
  }
  process.exit(status);
}

// totp is the RFC 6238 code (HMAC-SHA-1, 6 digits, 30 s steps) of a base32
// secret at time ms (a Unix time in milliseconds), as an authenticator app
// computes it.
export function totp(secretBase32, ms = Date.now()) {
  const key = base32(secretBase32);
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(ms / 1000 / 30)));
  const mac = createHmac('sha1', key).update(counter).digest();
  const off = mac[mac.length - 1] & 0x0f;
  const n = (mac.readUInt32BE(off) & 0x7fffffff) % 1_000_000;
  return String(n).padStart(6, '0');
}

// base32 decodes RFC 4648 base32 (upper or lower case, spaces and padding
// ignored), as secrets are shown to be typed into an app.
export function base32(s) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const clean = s.toUpperCase().replace(/[\s=-]/g, '');
  let bits = 0, value = 0;
  const out = [];
  for (const c of clean) {
    const i = alphabet.indexOf(c);
    if (i < 0) throw new Error(`the TOTP secret shown has a character that is not base32: ${JSON.stringify(c)}`);
    value = ((value << 5) | i) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

// pageBudget is BRIEF.md's for the agent's pages: what loading one
// transfers, headers and bodies as the network carried them.
export const pageBudget = 150 * 1024;

// load opens url in page and measures it as BRIEF.md's page budget means:
// every response until the load event and until ready(page) resolves (the
// page's script has filled it), headers and bodies as the network carried
// them, and every request that left url's origin (there must be none:
// nothing from the internet). It returns the navigation's response, the
// bytes, the number of responses and the foreign addresses.
export async function load(page, url, ready) {
  const origin = new URL(url).origin;
  const responses = [];
  const foreign = [];
  const onRequest = (r) => {
    const u = r.url();
    if (!u.startsWith('data:') && new URL(u).origin !== origin) foreign.push(u);
  };
  const onResponse = (r) => responses.push(r);
  page.on('request', onRequest);
  page.on('response', onResponse);
  let resp;
  try {
    resp = await page.goto(url, { waitUntil: 'load' });
    if (ready) await ready(page);
  } finally {
    page.off('request', onRequest);
    page.off('response', onResponse);
  }
  let bytes = 0;
  for (const r of responses) {
    const s = await r.request().sizes();
    bytes += s.responseHeadersSize + s.responseBodySize;
  }
  return { resp, bytes, responses: responses.length, foreign };
}

// checkBudget fails unless a load (above) kept the page budget and asked
// nothing of another origin.
export function checkBudget(what, l) {
  check(l.foreign.length === 0, `${what} asked another origin for ${l.foreign.join(', ')}`);
  check(l.bytes > 0 && l.bytes <= pageBudget, `${what} transferred ${l.bytes} B in ${l.responses} responses; the budget is ${pageBudget} B`);
  ok(`${what}: ${(l.bytes / 1024).toFixed(1)} KB in ${l.responses} responses, nothing from another origin`);
}
