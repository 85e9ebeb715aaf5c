// Signing in to the proxy with a Kerberos ticket, as a browser on a domain machine
// does: Debian's Chromium, headless, with the user's ticket cache (KRB5CCNAME and
// KRB5_CONFIG in its environment), reaches the proxy by its host name (the
// principal is HTTP/<that name>; the caller makes the name resolve, see
// t_negotiate_browser.sh) and answers the proxy's 407 Negotiate with a token from
// GSSAPI, by itself.  No password is ever asked for: a DevTools session
// (Fetch.enable with handleAuthRequests) sees every challenge Chromium would turn
// into a prompt, and any such challenge fails the test.
//
// Environment: PROXY_HOST, PROXY_PORT, URLS (space-separated pages that must load
// with status 200 and show "origin page"), CA_SPKI (base64 SHA-256 of the
// SubjectPublicKeyInfo of certificates to trust: the interception CA), OUT_DIR;
// CHROMIUM_ARGS, optional, more switches (e.g. "--enable-logging=stderr
// --vmodule=*http_auth*=3" to see Chromium's authentication, with DEBUG=pw:browser).
// Prints "ok - ..." / "not ok - ..." lines; exits 1 if any check failed.
import { chromium } from 'playwright-core';
import { env, ok, notOk, check, finish, CHROMIUM, QUIET_ARGS } from './harness.mjs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const PROXY_HOST = env('PROXY_HOST');
const PROXY_PORT = env('PROXY_PORT');
const URLS = env('URLS').split(' ');
const CA_SPKI = env('CA_SPKI');
const OUT_DIR = env('OUT_DIR');
env('KRB5CCNAME');
env('KRB5_CONFIG');


// A persistent profile in a fresh folder, as a person's browser has (not the
// off-the-record context of browser.newContext()).
const profile = await mkdtemp(join(tmpdir(), 'aigate-negotiate-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  env: process.env,
  viewport: { width: 1100, height: 900 },
  args: [
    ...QUIET_ARGS,
    `--proxy-server=http://${PROXY_HOST}:${PROXY_PORT}`,
    `--auth-server-allowlist=${PROXY_HOST}`,
    `--ignore-certificate-errors-spki-list=${CA_SPKI}`,
    ...(process.env.CHROMIUM_ARGS ? process.env.CHROMIUM_ARGS.split(' ') : []),
  ],
});
try {
  console.log(`chromium ${context.browser() ? context.browser().version() : ''}`.trim());
  const page = context.pages()[0] || (await context.newPage());
  const cdp = await context.newCDPSession(page);
  const prompts = [];
  cdp.on('Fetch.requestPaused', (e) => {
    cdp.send('Fetch.continueRequest', { requestId: e.requestId }).catch(() => {});
  });
  cdp.on('Fetch.authRequired', (e) => {
    prompts.push(e.authChallenge);
    cdp.send('Fetch.continueWithAuth', {
      requestId: e.requestId,
      authChallengeResponse: { response: 'CancelAuth' },
    }).catch(() => {});
  });
  await cdp.send('Fetch.enable', {
    handleAuthRequests: true,
    patterns: [{ urlPattern: '*', requestStage: 'Request' }],
  });
  let n = 0;
  for (const url of URLS) {
    const resp = await page.goto(url, { waitUntil: 'load' });
    check(`${url}: status 200`, resp && resp.status() === 200, resp && resp.status());
    const text = await page.locator('body').innerText();
    check(`${url}: the origin page`, text.includes('origin page'), text.slice(0, 300));
    await page.screenshot({ path: join(OUT_DIR, `negotiate-${++n}.png`), fullPage: true });
  }
  check('no sign-in prompt: Chromium answered every challenge with its ticket', prompts.length === 0,
    prompts);
} catch (e) {
  notOk(`browser run: ${e && e.stack ? e.stack : e}`);
} finally {
  await context.close();
  await rm(profile, { recursive: true, force: true });
}
finish();
