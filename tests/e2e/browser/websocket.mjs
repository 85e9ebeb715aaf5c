// WebSocket and server-sent events in a real browser through aigate running
// the shipped configuration (Basic authentication, interception of
// catalogued hosts, the no-personal-data rule): Debian's Chromium, headless,
// signs in at the proxy's 407 as carol (group security: no caution page) and
// opens PAGE_URL, a page on an intercepted catalogued host served by
// ws_origin.py, whose script opens new WebSocket('wss://…/ws/echo') and
// new EventSource('/sse…') and exchanges messages ("ws ok sse ok" in its
// title when both worked).  Then, in the same page, a WebSocket that sends a
// resident registration number: the proxy closes it with 1008 naming the rule
// (Chromium offers permessage-deflate, so the message is inspected inflated),
// while a clean message on another WebSocket is echoed.
//
// Environment: PROXY_PORT, PAGE_URL, CA_SPKI (base64 SHA-256 of the aigate
// CA's SubjectPublicKeyInfo), OUT_DIR.  Prints "ok - ..." / "not ok - ...";
// exits 1 if any check failed.
import { env, ok, notOk, check, finish, launchThroughProxy } from './harness.mjs';
import { join } from 'node:path';

const PROXY_PORT = env('PROXY_PORT');
const PAGE_URL = env('PAGE_URL');
const CA_SPKI = env('CA_SPKI');
const OUT_DIR = env('OUT_DIR');


const browser = await launchThroughProxy(PROXY_PORT, CA_SPKI);
try {
  console.log(`chromium ${browser.version()}`);
  const context = await browser.newContext({ viewport: { width: 900, height: 600 } });
  const page = await context.newPage();
  // The proxy's 407 answered with carol's password, once per request, as a person would.
  const cdp = await context.newCDPSession(page);
  const answered = new Set();
  cdp.on('Fetch.requestPaused', (e) => {
    cdp.send('Fetch.continueRequest', { requestId: e.requestId }).catch(() => {});
  });
  cdp.on('Fetch.authRequired', (e) => {
    const first = e.authChallenge.source === 'Proxy' && !answered.has(e.requestId);
    answered.add(e.requestId);
    if (!first) notOk(`unexpected authentication challenge for ${e.request.url}`);
    cdp.send('Fetch.continueWithAuth', {
      requestId: e.requestId,
      authChallengeResponse: first
        ? { response: 'ProvideCredentials', username: 'carol', password: 'carol-pass' }
        : { response: 'CancelAuth' },
    }).catch(() => {});
  });
  await cdp.send('Fetch.enable', { handleAuthRequests: true, patterns: [{ urlPattern: '*', requestStage: 'Request' }] });

  const resp = await page.goto(PAGE_URL, { waitUntil: 'load' });
  check(`${PAGE_URL}: status 200`, resp && resp.status() === 200, resp && resp.status());
  await page.waitForFunction(() => document.title !== 'running', null, { timeout: 15000 }).catch(() => {});
  const title = await page.title();
  check('the page\'s WebSocket echoed and its EventSource got 3 events ("ws ok sse ok")',
    title === 'ws ok sse ok', title);
  const text = await page.locator('#out').innerText();
  check('the page shows the echo', text.includes('ws: hello from the page'), text);
  check('the page shows the three events', (text.match(/^sse: /gm) || []).length === 3, text);
  await page.screenshot({ path: join(OUT_DIR, 'websocket-page.png') });
  ok('screenshot websocket-page.png');

  // A message with a resident registration number, and a clean one on another WebSocket.
  const result = await page.evaluate(async () => {
    const open = (path) => new Promise((resolve, reject) => {
      const ws = new WebSocket(location.origin.replace(/^http/, 'ws') + path);
      ws.onopen = () => resolve(ws);
      ws.onerror = () => reject(new Error('websocket error'));
    });
    const clean = await open('/ws/echo');
    const echo = await new Promise((resolve) => {
      clean.onmessage = (e) => resolve(e.data);
      clean.send('a clean prompt about the quarterly report');
    });
    clean.close(1000);
    const pii = await open('/ws/echo');
    const closed = await new Promise((resolve) => {
      pii.onmessage = (e) => resolve({ echoed: e.data });
      pii.onclose = (e) => resolve({ code: e.code, reason: e.reason });
      pii.send('제 주민등록번호는 900101-1234568 입니다');
    });
    return { echo, closed, extensions: pii.extensions };
  });
  check('a clean message is echoed', result.echo === 'a clean prompt about the quarterly report', result);
  check('Chromium negotiated permessage-deflate through the proxy',
    (result.extensions || '').startsWith('permessage-deflate'), result.extensions);
  check('the message with a resident registration number: closed with 1008', result.closed.code === 1008,
    result.closed);
  check('the close reason names the rule', result.closed.reason === 'blocked by aigate rule no-personal-data',
    result.closed);
  await context.close();
} catch (e) {
  notOk(`browser run: ${e && e.stack ? e.stack : e}`);
} finally {
  await browser.close();
}
finish();
