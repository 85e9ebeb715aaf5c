// What every browser test here shares: its environment, its "ok - ..." /
// "not ok - ..." lines and exit status, and Debian's Chromium started headless
// with the flags that keep it quiet and deterministic.
import { chromium } from 'playwright-core';

// The value of environment variable NAME; exits 2 if it is not set.
export const env = (name) => {
  const v = process.env[name];
  if (!v) {
    console.error(`FATAL: ${name} is not set`);
    process.exit(2);
  }
  return v;
};

let failed = false;
export const ok = (desc) => console.log(`ok - ${desc}`);
export const notOk = (desc) => {
  console.log(`not ok - ${desc}`);
  failed = true;
};
export const check = (desc, cond, got) => (cond ? ok(desc) : notOk(`${desc}: got ${JSON.stringify(got)}`));
// Exit 1 if any check failed, else 0.
export const finish = () => process.exit(failed ? 1 : 0);

export const CHROMIUM = '/usr/bin/chromium';
export const QUIET_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

// Chromium using the proxy on 127.0.0.1:port and trusting the CA whose
// SubjectPublicKeyInfo hash (base64 SHA-256) is caSpki.
export const launchThroughProxy = (port, caSpki) =>
  chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...QUIET_ARGS, `--proxy-server=127.0.0.1:${port}`, `--ignore-certificate-errors-spki-list=${caSpki}`],
  });
