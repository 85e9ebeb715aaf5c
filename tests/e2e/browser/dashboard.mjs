// The security team's dashboard in a real browser: Debian's Chromium, headless, opens the
// admin listener's page with Basic credentials, in English and Korean, on a laptop screen and a
// phone.  Every request the page makes must go to the admin listener; the page must name every
// expected service, draw at least one SVG chart with bars, and break no Content-Security-Policy
// rule (inline code would).  Screenshots: OUT_DIR/dashboard-{en,ko}-{laptop,phone}.png (the
// first screen) and …-full.png (the whole page).
//
// Environment: ADMIN_URL (http://127.0.0.1:PORT/), ADMIN_USER, ADMIN_PASS, SERVICES (comma
// list of service ids the page must show), OUT_DIR.  Prints "ok - ..." / "not ok - ..." lines;
// exits 1 if any check failed.
import { chromium } from 'playwright-core';
import { env, ok, notOk, check, finish, CHROMIUM } from './harness.mjs';
import { join } from 'node:path';

const ADMIN_URL = env('ADMIN_URL');
const USER = env('ADMIN_USER');
const PASS = env('ADMIN_PASS');
const SERVICES = env('SERVICES').split(',');
const OUT_DIR = env('OUT_DIR');
const origin = new URL(ADMIN_URL).origin;


const VIEWS = {
  laptop: { viewport: { width: 1366, height: 900 } },
  phone: { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true },
};
const TITLES = { 'en-US': 'AI service usage', 'ko-KR': 'AI 서비스 사용 현황' };

async function look(browser, locale, view) {
  const context = await browser.newContext({
    locale, ...VIEWS[view], httpCredentials: { username: USER, password: PASS },
  });
  const page = await context.newPage();
  const requests = [];
  const problems = [];
  page.on('request', (r) => requests.push(r.url()));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(String(e)));
  const tag = `${locale} ${view}`;
  const resp = await page.goto(ADMIN_URL, { waitUntil: 'load' });
  check(`${tag}: status 200`, resp && resp.status() === 200, resp && resp.status());
  check(`${tag}: CSP default-src 'self'`,
    resp && resp.headers()['content-security-policy'] === "default-src 'self'",
    resp && resp.headers()['content-security-policy']);
  check(`${tag}: <html lang> follows Accept-Language`,
    (await page.getAttribute('html', 'lang')) === locale.slice(0, 2), await page.getAttribute('html', 'lang'));
  try {
    await page.waitForSelector('#charts svg rect', { timeout: 20000 });
    await page.waitForFunction(() => /\d/.test(document.getElementById('status').textContent) &&
      !document.getElementById('status').classList.contains('err'), null, { timeout: 20000 });
  } catch (e) {
    notOk(`${tag}: the charts were drawn (${e.message.split('\n')[0]}); status: ` +
      await page.locator('#status').innerText());
  }
  const title = await page.locator('h1').innerText();
  check(`${tag}: heading in the page's language`, title.includes(TITLES[locale]), title);
  const charts = await page.locator('#charts svg').count();
  const bars = await page.locator('#charts svg rect[data-action]').count();
  check(`${tag}: at least one SVG chart with bars (${charts} charts, ${bars} bars)`, charts > 0 && bars > 0,
    { charts, bars });
  const text = await page.locator('main').innerText();
  for (const s of SERVICES)
    check(`${tag}: the page shows service ${s}`, text.includes(s), text.slice(0, 300));
  const recent = await page.locator('#recent tr').count();
  check(`${tag}: newest audit lines listed (${recent - 1})`, recent > 1, recent);
  const foreign = requests.filter((u) => new URL(u).origin !== origin);
  check(`${tag}: all ${requests.length} requests went to the admin listener`, foreign.length === 0, foreign);
  check(`${tag}: no errors in the console (CSP, script)`, problems.length === 0, problems);
  const shot = `dashboard-${locale.slice(0, 2)}-${view}`;
  await page.screenshot({ path: join(OUT_DIR, `${shot}.png`) });
  await page.screenshot({ path: join(OUT_DIR, `${shot}-full.png`), fullPage: true });
  ok(`${tag}: screenshots ${shot}.png (first screen) and ${shot}-full.png`);
  await context.close();
}

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
try {
  for (const locale of ['en-US', 'ko-KR'])
    for (const view of ['laptop', 'phone'])
      await look(browser, locale, view);
} catch (e) {
  notOk(`browser: ${e.message}`);
} finally {
  await browser.close();
}
finish();
