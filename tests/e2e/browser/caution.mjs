// A person's view of the caution page: Debian's Chromium, headless, set to use
// aigate as its proxy, loads a warned page over plain HTTP (English and
// Korean), acknowledges it with the button, and must land on the origin's
// page; then the same over HTTPS with aigate intercepting (the browser trusts
// the aigate CA by its SPKI hash).  Screenshots go to OUT_DIR.
//
// Environment: PROXY_PORT, HTTP_URL (warned, plain HTTP) and HTTP_SERVICE (its
// service's display name), HTTPS_URL (warned, intercepted) and HTTPS_SERVICE, CA_SPKI (base64 SHA-256 of the CA's SubjectPublicKeyInfo),
// OUT_DIR.  Playwright starts Chromium on a fresh temporary user-data-dir
// (given on its command line, which --ignore-certificate-errors-spki-list needs).
// Prints "ok - ..." / "not ok - ..." lines; exits 1 if any check failed.
import { env, ok, notOk, check, finish, launchThroughProxy } from './harness.mjs';
import { join } from 'node:path';

const PROXY_PORT = env('PROXY_PORT');
const HTTP_URL = env('HTTP_URL');
const HTTP_SERVICE = env('HTTP_SERVICE');
const HTTPS_URL = env('HTTPS_URL');
const HTTPS_SERVICE = env('HTTPS_SERVICE');
const CA_SPKI = env('CA_SPKI');
const OUT_DIR = env('OUT_DIR');


// A warned URL loaded in a new context with LOCALE: the caution page.
async function showCaution(browser, locale, url, heading, shot) {
  const context = await browser.newContext({ locale, viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  const resp = await page.goto(url, { waitUntil: 'load' });
  check(`${locale} ${url}: status 403`, resp && resp.status() === 403, resp && resp.status());
  const lang = await page.getAttribute('html', 'lang');
  check(`${locale}: <html lang> follows Accept-Language`, lang === locale.slice(0, 2), lang);
  const h1 = await page.locator('h1').innerText();
  check(`${locale}: the visible heading is [${heading}]`, h1.trim() === heading, h1);
  const button = page.locator('form[action="/__aigate/ack"] button[type="submit"]');
  check(`${locale}: one acknowledge button, visible`, (await button.count()) === 1 && (await button.isVisible()),
    await button.count());
  await page.screenshot({ path: join(OUT_DIR, shot), fullPage: true });
  ok(`${locale}: screenshot ${shot}`);
  return { context, page, button };
}

// Click the acknowledge button; the browser must follow the 303 to URL and show the origin.
async function acknowledge(page, button, url, originText, shot) {
  const [resp] = await Promise.all([
    page.waitForResponse((r) => r.url() === url && r.request().isNavigationRequest(), { timeout: 15000 }),
    button.click(),
  ]);
  await page.waitForLoadState('load');
  check(`after the click: back on ${url}`, page.url() === url, page.url());
  check('after the click: status 200 from the origin', resp && resp.status() === 200, resp && resp.status());
  const body = await page.locator('body').innerText();
  check(`after the click: the origin's page [${originText}]`, body.includes(originText), body.slice(0, 200));
  const chain = [];
  for (let r = resp && resp.request(); r; r = r.redirectedFrom()) chain.unshift(`${r.method()} ${r.url()}`);
  check('after the click: POST /__aigate/ack then GET of the URL',
    chain.length === 2 && chain[0].startsWith('POST ') && chain[0].endsWith('/__aigate/ack') &&
      chain[1] === `GET ${url}`, chain);
  if (shot) {
    await page.screenshot({ path: join(OUT_DIR, shot), fullPage: true });
    ok(`screenshot ${shot}`);
  }
}

const browser = await launchThroughProxy(PROXY_PORT, CA_SPKI);
try {
  console.log(`chromium ${browser.version()}`);

  // ---- plain HTTP: English, then Korean; acknowledge from the Korean page
  const en = await showCaution(browser, 'en-US', HTTP_URL, `Before you use ${HTTP_SERVICE}`, 'caution-en.png');
  await en.context.close();
  const ko = await showCaution(browser, 'ko-KR', HTTP_URL, `${HTTP_SERVICE} 이용 전에 꼭 확인해 주십시오`,
    'caution-ko.png');
  const koText = await ko.page.locator('main').innerText();
  check('Korean page: no English text visible', !koText.includes('Before you use'), koText.slice(0, 200));
  check('Korean page: the personal-data point', koText.includes('개인정보와 업무상 비밀을 입력하지 마십시오'),
    koText.slice(0, 200));
  await acknowledge(ko.page, ko.button, HTTP_URL, 'origin page', null);
  await ko.context.close();

  // ---- HTTPS, intercepted: the caution page inside TLS, then the origin
  const tls = await showCaution(browser, 'en-US', HTTPS_URL, `Before you use ${HTTPS_SERVICE}`,
    'caution-https.png');
  check('HTTPS: the caution page is on the https URL', tls.page.url() === HTTPS_URL, tls.page.url());
  await acknowledge(tls.page, tls.button, HTTPS_URL, 'origin page', 'after-ack.png');
  const againUrl = new URL('/index.html?again=1', HTTPS_URL).href;
  const again = await tls.page.goto(againUrl, { waitUntil: 'load' });
  check(`HTTPS: another page of the service (${againUrl}) goes straight to the origin`,
    again && again.status() === 200, again && again.status());
  await tls.context.close();
} catch (e) {
  notOk(`browser run: ${e && e.stack ? e.stack : e}`);
} finally {
  await browser.close();
}
finish();
