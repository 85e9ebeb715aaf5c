// The shipped configuration as a person sees it: Debian's Chromium, headless,
// set to use aigate as its proxy, signs in at the proxy's 407 the way a person
// typing the password does, and browses: a blocked AI service (block page), a
// warned one in Korean (caution page, a real click on the button, the origin's
// page after it), allowed sites (a blind tunnel and plain HTTP); then a second
// user in another group, in a browser context of her own, gets her own
// decisions.  Screenshots go to OUT_DIR.
//
// Signing in: each browser context gets a DevTools session with
// Fetch.enable({handleAuthRequests: true}); on Fetch.authRequired from the
// proxy it answers Fetch.continueWithAuth with the user's name and password
// (once per request: a second challenge for the same request, i.e. a refused
// password, is cancelled and fails the test).  Paused requests are continued
// unchanged.  Nothing adds Proxy-Authorization on its own: Chromium sends it
// only after the proxy asked.
//
// Environment: PROXY_PORT, BLOCK_URL (blocked for both users), WARN_URL (warned
// for alice, allowed for carol) and WARN_SERVICE (its display name),
// TUNNEL_URL (https, not AI: a blind tunnel), PLAIN_URL (http, allowed),
// CA_SPKI (comma-separated base64 SHA-256 of the SubjectPublicKeyInfo of
// certificates to trust: the aigate CA, and the test origin's own certificate
// for the blind tunnel), OUT_DIR.
// Prints "ok - ..." / "not ok - ..." lines; exits 1 if any check failed.
import { env, ok, notOk, check, finish, launchThroughProxy } from './harness.mjs';
import { join } from 'node:path';

const PROXY_PORT = env('PROXY_PORT');
const BLOCK_URL = env('BLOCK_URL');
const WARN_URL = env('WARN_URL');
const WARN_SERVICE = env('WARN_SERVICE');
const TUNNEL_URL = env('TUNNEL_URL');
const PLAIN_URL = env('PLAIN_URL');
const CA_SPKI = env('CA_SPKI');
const OUT_DIR = env('OUT_DIR');


// A browser context for USER (a fresh profile: no cookies, no cached
// credentials) whose page answers the proxy's 407 with USER's password.
async function signedIn(browser, user, password, locale) {
  const context = await browser.newContext({ locale, viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  const challenges = [];
  const answered = new Set();
  cdp.on('Fetch.requestPaused', (e) => {
    cdp.send('Fetch.continueRequest', { requestId: e.requestId }).catch(() => {});
  });
  cdp.on('Fetch.authRequired', (e) => {
    const c = e.authChallenge;
    let response = 'CancelAuth';
    if (c.source === 'Proxy' && !answered.has(e.requestId)) {
      answered.add(e.requestId);
      challenges.push(c);
      response = 'ProvideCredentials';
    } else {
      notOk(`${user}: unexpected authentication challenge ${JSON.stringify(c)} for ${e.request.url}`);
    }
    cdp.send('Fetch.continueWithAuth', {
      requestId: e.requestId,
      authChallengeResponse: response === 'ProvideCredentials' ? { response, username: user, password } : { response },
    }).catch(() => {});
  });
  await cdp.send('Fetch.enable', { handleAuthRequests: true, patterns: [{ urlPattern: '*', requestStage: 'Request' }] });
  return { context, page, challenges };
}

// Open URL in PAGE; check the status and that the visible text has every one of WANT.
async function visit(who, page, url, status, want, shot) {
  const resp = await page.goto(url, { waitUntil: 'load' });
  check(`${who} ${url}: status ${status}`, resp && resp.status() === status, resp && resp.status());
  check(`${who} ${url}: the browser stays on the URL`, page.url() === url, page.url());
  const text = await page.locator('body').innerText();
  for (const w of want) check(`${who} ${url}: the page shows [${w}]`, text.includes(w), text.slice(0, 300));
  if (shot) {
    await page.screenshot({ path: join(OUT_DIR, shot), fullPage: true });
    ok(`${who}: screenshot ${shot}`);
  }
  return resp;
}

// The block page: 403, the rule in Proxy-Status, the service, rule and user visible.
async function blockPage(who, page, shot) {
  const resp = await visit(who, page, BLOCK_URL, 403, ['DeepSeek', 'ban-cn-ai', who], shot);
  const ps = resp ? (await resp.allHeaders())['proxy-status'] : undefined;
  check(`${who}: Proxy-Status names ban-cn-ai`, ps === 'aigate; error=http_request_denied; details="rule=ban-cn-ai"', ps);
  const h1 = page.locator('h1');
  check(`${who}: the block page's heading is visible and names DeepSeek`,
    (await h1.isVisible()) && (await h1.innerText()).includes('DeepSeek'), await h1.innerText());
}

const browser = await launchThroughProxy(PROXY_PORT, CA_SPKI);
try {
  console.log(`chromium ${browser.version()}`);

  // ---- alice (staff), a Korean browser
  const alice = await signedIn(browser, 'alice', 'alice-pass', 'ko-KR');
  await blockPage('alice', alice.page, 'shipped-block.png');

  await visit('alice', alice.page, WARN_URL, 403, [], 'shipped-caution-ko.png');
  const lang = await alice.page.getAttribute('html', 'lang');
  check('alice: the caution page is Korean (<html lang="ko">)', lang === 'ko', lang);
  const heading = `${WARN_SERVICE} 이용 전에 꼭 확인해 주십시오`;
  const h1 = await alice.page.locator('h1').innerText();
  check(`alice: the visible heading is [${heading}]`, h1.trim() === heading, h1);
  const main = await alice.page.locator('main').innerText();
  check('alice: the personal-data point, in Korean', main.includes('개인정보와 업무상 비밀을 입력하지 마십시오'),
    main.slice(0, 300));
  check('alice: no English text visible', !main.includes('Before you use'), main.slice(0, 300));
  const button = alice.page.locator('form[action="/__aigate/ack"] button[type="submit"]');
  check('alice: one acknowledge button, visible', (await button.count()) === 1 && (await button.isVisible()),
    await button.count());
  const [after] = await Promise.all([
    alice.page.waitForResponse((r) => r.url() === WARN_URL && r.request().isNavigationRequest(), { timeout: 15000 }),
    button.click(),
  ]);
  await alice.page.waitForLoadState('load');
  check(`alice, after the click: back on ${WARN_URL}`, alice.page.url() === WARN_URL, alice.page.url());
  check('alice, after the click: status 200 from the origin', after && after.status() === 200,
    after && after.status());
  const chain = [];
  for (let r = after && after.request(); r; r = r.redirectedFrom()) chain.unshift(`${r.method()} ${r.url()}`);
  check('alice, after the click: POST /__aigate/ack then GET of the URL',
    chain.length === 2 && chain[0] === `POST ${new URL('/__aigate/ack', WARN_URL).href}` &&
      chain[1] === `GET ${WARN_URL}`, chain);
  const body = await alice.page.locator('body').innerText();
  check("alice, after the click: the origin's page", body.includes('origin page'), body.slice(0, 300));
  await alice.page.screenshot({ path: join(OUT_DIR, 'shipped-after-ack.png'), fullPage: true });
  ok('alice: screenshot shipped-after-ack.png');

  await visit('alice', alice.page, TUNNEL_URL, 200, ['origin page'], 'shipped-allowed.png');
  await visit('alice', alice.page, PLAIN_URL, 200, ['origin page'], null);
  check(`alice: Chromium answered the proxy's 407 (${alice.challenges.length}), realm "aigate"`,
    alice.challenges.length >= 1 && alice.challenges.every((c) => c.realm === 'aigate'), alice.challenges);
  await alice.context.close();

  // ---- carol (security), her own context and credentials
  const carol = await signedIn(browser, 'carol', 'carol-pass', 'ko-KR');
  await visit('carol', carol.page, WARN_URL, 200, ['origin page'], 'shipped-carol.png');
  await blockPage('carol', carol.page, 'shipped-carol-block.png');
  check(`carol: Chromium answered the proxy's 407 for her too (${carol.challenges.length})`,
    carol.challenges.length >= 1 && carol.challenges.every((c) => c.realm === 'aigate'), carol.challenges);
  await carol.context.close();
} catch (e) {
  notOk(`browser run: ${e && e.stack ? e.stack : e}`);
} finally {
  await browser.close();
}
finish();
