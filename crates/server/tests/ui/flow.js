// The seed's administrator and an everyday developer, in real headless Chromium.
//
// Run by the Rust integration tests (crates/server/tests/it/web_ui.rs directly against the
// server, crates/cli/tests/cli/web_ui.rs through `trove up`'s HTTPS gateway under /stash),
// which start the server, push a repository with real git and set:
//   TROVE_ROOT        the public root URL, context path included (no trailing slash)
//   TROVE_ADMIN       admin user name;  TROVE_ADMIN_PASSWORD  its password
//   TROVE_REPO        KEY/slug of the pushed repository (README.md, src/main.rs, tag v1.0,
//                     branch feature with FEATURE.txt)
//   TROVE_OTHER_BASE  a base URL to switch to and back from
//   TROVE_SCREENSHOTS directory for screenshots (optional)
//   TROVE_CHROME_HOME a HOME whose ~/.pki/nssdb trusts the test CA (optional)
// Exit status 0 when every step passed; the last line is "N passed, N failed".
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const ROOT = process.env.TROVE_ROOT;
const ADMIN = process.env.TROVE_ADMIN || 'admin';
const ADMIN_PASSWORD = process.env.TROVE_ADMIN_PASSWORD;
const [KEY, SLUG] = (process.env.TROVE_REPO || 'TP/test').split('/');
const OTHER_BASE = process.env.TROVE_OTHER_BASE || 'https://git.example.com:8443/bitbucket';
const SHOTS = process.env.TROVE_SCREENSHOTS || '';
const CTX = new URL(ROOT).pathname.replace(/\/$/, '');
const HTTPS = ROOT.startsWith('https:');

let passed = 0;
let failed = 0;

async function step(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}\n     ${String(e && e.stack || e).split('\n').slice(0, 6).join('\n     ')}`);
    throw e;
  }
}

async function shot(page, name) {
  if (!SHOTS) return;
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: false });
}

/// Every page we land on is under the root URL: links and redirects keep the context path,
/// scheme and host.
function under(page) {
  assert.ok(page.url().startsWith(ROOT + '/') || page.url() === ROOT, `${page.url()} is not under ${ROOT}`);
}

async function main() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'trove-chromium-'));
  const env = { ...process.env };
  if (process.env.TROVE_CHROME_HOME) env.HOME = process.env.TROVE_CHROME_HOME;
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    env,
    viewport: { width: 1280, height: 800 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(20000);
  const clone = (base, user) => base.replace('://', `://${user}@`) + `/scm/${KEY.toLowerCase()}/${SLUG}.git`;
  try {
    await step('the dashboard loads over the root URL with our own CSS', async () => {
      const resp = await page.goto(ROOT + '/');
      assert.equal(resp.status(), 200);
      under(page);
      const bg = await page.evaluate(() => getComputedStyle(document.querySelector('header.top')).backgroundColor);
      assert.equal(bg, 'rgb(7, 71, 166)', 'trove.css applied');
    });

    await step('an anonymous visit to the admin area is sent to log in', async () => {
      await page.goto(ROOT + '/admin/server-settings');
      assert.ok(page.url().startsWith(ROOT + '/login?next='), page.url());
      await shot(page, 'login');
    });

    await step('a wrong password is refused with a message', async () => {
      await page.fill('#username', ADMIN);
      await page.fill('#password', 'not-the-password');
      await page.click('form.card button[type=submit]');
      await page.waitForSelector('.notice.err');
      assert.match(await page.textContent('.notice.err'), /Wrong username or password/);
    });

    await step('the administrator logs in and lands on the page asked for', async () => {
      await page.fill('#password', ADMIN_PASSWORD);
      await Promise.all([page.waitForURL(ROOT + '/admin/server-settings'), page.click('form.card button[type=submit]')]);
      under(page);
      const cookies = await context.cookies();
      const s = cookies.find((c) => c.name === 'trove_session');
      assert.ok(s, 'session cookie set');
      assert.equal(s.httpOnly, true);
      assert.equal(s.sameSite, 'Lax');
      assert.equal(s.secure, HTTPS, 'Secure exactly when the base URL is https');
      assert.equal(s.path, CTX || '/');
    });

    let original;
    await step('server settings show the request URL and the base URL', async () => {
      const seen = (await page.textContent('#request-url')).trim();
      assert.equal(seen, ROOT, 'this request, as the server saw it');
      original = await page.inputValue('#base-url');
      await shot(page, 'server-settings');
    });

    await step('an invalid base URL is refused and explained', async () => {
      await page.fill('#base-url', 'ftp://nowhere');
      await page.click('form.card button[type=submit]');
      await page.waitForSelector('.notice.err');
      assert.match(await page.textContent('.notice.err'), /scheme/);
    });

    await step('changing the base URL changes every clone URL at once', async () => {
      await page.fill('#base-url', OTHER_BASE);
      await page.click('form.card button[type=submit]');
      await page.waitForSelector('.notice.ok');
      under(page);
      assert.equal((await page.textContent('#effective-base-url')).trim(), OTHER_BASE);
      assert.equal((await page.textContent('#clone-example')).trim(), OTHER_BASE + '/scm/KEY/slug.git');
      assert.ok(await page.isVisible('#mismatch'), 'the mismatch with this request is visible');
      await page.goto(ROOT + '/');
      assert.equal((await page.textContent('code.clone-hint')).trim(), OTHER_BASE + '/scm/KEY/slug.git');
      await page.goto(`${ROOT}/projects/${KEY}/repos/${SLUG}/browse`);
      assert.equal(await page.inputValue('#clone-url'), clone(OTHER_BASE, ADMIN));
    });

    await step('setting it back restores the public URL everywhere', async () => {
      await page.goto(ROOT + '/admin/server-settings');
      await page.fill('#base-url', original || ROOT);
      await page.click('form.card button[type=submit]');
      await page.waitForSelector('.notice.ok');
      assert.ok(!(await page.isVisible('#mismatch')), 'no mismatch once it matches');
      await page.goto(`${ROOT}/projects/${KEY}/repos/${SLUG}/browse`);
      assert.equal(await page.inputValue('#clone-url'), clone(original || ROOT, ADMIN));
      await page.goto(ROOT + '/');
      assert.equal((await page.textContent('code.clone-hint')).trim(), (original || ROOT) + '/scm/KEY/slug.git');
    });

    await step('the administrator creates a project and a repository', async () => {
      await page.goto(ROOT + '/admin/projects');
      await page.fill('#key', 'WEB');
      await page.fill('#name', 'Made in the browser');
      await Promise.all([page.waitForURL(/\/projects\/WEB\?done=created$/), page.click('#create-project button[type=submit]')]);
      under(page);
      await page.fill('#slug', 'fresh');
      await Promise.all([page.waitForURL(ROOT + '/projects/WEB/repos/fresh/browse'), page.click('form.card button[type=submit]')]);
      await page.waitForSelector('#empty-repo');
      const url = await page.inputValue('#clone-url');
      assert.equal(url, (original || ROOT).replace('://', `://${ADMIN}@`) + '/scm/web/fresh.git');
      await page.goto(ROOT + '/');
      assert.ok(await page.isVisible('#projects >> text=WEB'));
      await shot(page, 'dashboard');
    });

    await step('the pushed repository shows its README, default branch and files', async () => {
      await page.goto(`${ROOT}/projects/${KEY}/repos/${SLUG}/browse`);
      assert.equal((await page.textContent('#default-branch')).trim(), 'main');
      assert.equal((await page.textContent('#readme h1')).trim(), 'Hello from Trove');
      assert.equal(await page.locator('#readme script').count(), 0, 'raw HTML is not passed through');
      assert.match(await page.textContent('#readme'), /<script>/, 'it is shown as text');
      assert.ok(await page.isVisible('#files >> text=src/'));
      await shot(page, 'repository');
    });

    await step('the copy button copies the clone URL', async () => {
      await page.click('button[data-copy=clone-url]');
      await page.waitForFunction(() => document.querySelector('button[data-copy=clone-url]').textContent === 'Copied');
    });

    await step('a file opens with line numbers and a raw download', async () => {
      await page.click('#files >> text=src/');
      under(page);
      await page.click('#files >> text=main.rs');
      await page.waitForSelector('#file #L3');
      assert.match(await page.textContent('#file'), /fn main\(\)/);
      await shot(page, 'file');
      const raw = await page.getAttribute('#file .head a', 'href');
      assert.ok(raw.startsWith(CTX + '/projects/'), raw);
      // Opened by the browser itself, so its TLS trust and cookies apply.
      const resp = await page.goto(new URL(raw, ROOT).toString());
      const [status, ctype, text] = [resp.status(), resp.headers()['content-type'], await resp.text()];
      assert.equal(status, 200);
      assert.equal(ctype, 'text/plain; charset=utf-8');
      assert.match(text, /^fn main\(\) \{/);
    });

    await step('the branch switcher shows another branch and a tag', async () => {
      await page.goto(`${ROOT}/projects/${KEY}/repos/${SLUG}/browse`);
      await page.click('#ref-picker-button');
      await Promise.all([page.waitForURL(/at=refs\/heads\/feature/), page.click('#ref-options a:text-is("feature")')]);
      assert.ok(await page.isVisible('#files >> text=FEATURE.txt'));
      await page.click('#ref-picker-button');
      await Promise.all([page.waitForURL(/at=refs\/tags\/v1.0/), page.click('#ref-options a:text-is("v1.0")')]);
      assert.equal(await page.locator('#files >> text=FEATURE.txt').count(), 0);
    });

    await step('commits list and a commit with its diff', async () => {
      await page.goto(`${ROOT}/projects/${KEY}/repos/${SLUG}/commits`);
      const rows = await page.locator('#commits tbody tr').count();
      assert.ok(rows >= 2, `${rows} commits`);
      await shot(page, 'commits');
      await page.click('#commits tbody tr:first-child td.sha a');
      await page.waitForSelector('#commit');
      under(page);
      assert.ok((await page.locator('tr.add').count()) > 0, 'added lines are shown');
      await shot(page, 'commit');
    });

    await step('users: create one and make them admin', async () => {
      await page.goto(ROOT + '/admin/users');
      await page.fill('#new-user', 'alice');
      await page.fill('#new-password', 'alice-password-1');
      await page.click('#create-user button[type=submit]');
      await page.waitForSelector('tr[data-user=alice]');
      await page.click('tr[data-user=alice] button[value=make-admin]');
      await page.waitForSelector('tr[data-user=alice] button[value=revoke-admin]');
      await shot(page, 'users');
    });

    await step('account: a token is shown once', async () => {
      await page.goto(ROOT + '/account');
      await page.fill('input[name=name]', 'laptop');
      await page.click('form:has(input[name=name]) button[type=submit]');
      const secret = await page.inputValue('#token-secret');
      assert.match(secret, /^trv_\d+_/);
      await shot(page, 'account');
      // Reloading the page that showed it neither shows it again nor makes a second token.
      await page.reload();
      assert.equal(await page.locator('#token-secret').count(), 0);
      assert.equal(await page.locator('#tokens >> text=laptop').count(), 1);
      await page.goto(ROOT + '/account');
      assert.equal(await page.locator('#token-secret').count(), 0);
      assert.ok(await page.isVisible('#tokens >> text=laptop'));
    });

    await step('an error page has the same look', async () => {
      const resp = await page.goto(ROOT + '/projects/NOPE');
      assert.equal(resp.status(), 404);
      assert.ok(await page.isVisible('header.top'));
      assert.match(await page.textContent('.error-page'), /404/);
    });

    await step('logging out ends the session', async () => {
      await page.goto(ROOT + '/');
      await Promise.all([page.waitForURL(ROOT + '/login'), page.click('header.top button:has-text("Log out")')]);
      await page.goto(ROOT + '/admin');
      assert.ok(page.url().startsWith(ROOT + '/login?next='), page.url());
    });

    await step('a locked account signs in after the browser check, which unlocks it', async () => {
      // alice (made above) is locked by ten wrong passwords, as a guesser would lock her.
      for (let i = 0; i < 10; i++) {
        await page.goto(ROOT + '/login');
        await page.fill('#username', 'alice');
        await page.fill('#password', 'wrong-guess-' + i);
        await page.click('form.card button[type=submit]');
        await page.waitForSelector('.notice.err');
      }
      await page.fill('#password', 'alice-password-1');
      await page.click('form.card button[type=submit]');
      await page.waitForSelector('form[data-pow-challenge]');
      assert.match(await page.textContent('.notice.err'), /locked after too many failed logins/);
      await shot(page, 'login-locked');
      await page.fill('#password', 'alice-password-1');
      // The page's script solves the challenge and only then enables the button.
      await page.waitForSelector('form[data-pow-challenge] button[type=submit]:not([disabled])', { timeout: 120000 });
      assert.match(await page.textContent('#pow-status'), /Check done/);
      await Promise.all([page.waitForURL(ROOT + '/'), page.click('form.card button[type=submit]')]);
      await page.goto(ROOT + '/admin/users');
      assert.equal(await page.locator('tr[data-user=alice] .locked').count(), 0, 'the sign-in unlocked the account');
    });
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main()
  .catch(() => { if (!failed) failed++; })
  .finally(() => {
    console.log(`${passed} passed, ${failed} failed`);
    process.exit(failed ? 1 : 0);
  });
