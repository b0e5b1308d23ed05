// Search, the file finder, profiles and deleting a user in real headless Chromium: the
// header's box suggests repositories as you type (only readable ones) and the keyboard picks
// one; `t` on a repository page opens the file finder, which filters as you type; code search
// finds a line and its link lands on the line; a user edits their profile; an administrator
// deletes a user, whose commit comment keeps their name. Every page is checked with axe-core
// (a critical or serious violation fails), for CSP violations and script errors, and for
// fitting a 390 px wide phone.
//
// Run by crates/server/tests/it/web_search_ui.rs, which starts the server, pushes the sample
// repository (src/main.rs has `let greeting = "hello";` on line 2) to TROVE_REPO, makes a
// private project SECRET with `hidden-test` that only administrators may read, and has
// TROVE_GONE comment on the commit. It sets:
//   TROVE_ROOT                          the public root URL (no trailing slash)
//   TROVE_REPO                          KEY/slug of the sample repository
//   TROVE_ADMIN, TROVE_ADMIN_PASSWORD   a system administrator
//   TROVE_READER, TROVE_READER_PASSWORD a user who may read TROVE_REPO
//   TROVE_GONE, TROVE_GONE_DISPLAY      the user the administrator deletes, and their display name
//   TROVE_COMMIT                        the commit TROVE_GONE commented on
//   TROVE_SCREENSHOTS                   directory for screenshots (optional)
// Exit status 0 when every step passed; the last line is "N passed, N failed".
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');

const ROOT = process.env.TROVE_ROOT;
const [KEY, SLUG] = (process.env.TROVE_REPO || 'TP/test').split('/');
const ADMIN = process.env.TROVE_ADMIN || 'admin';
const READER = process.env.TROVE_READER || 'reader';
const GONE = process.env.TROVE_GONE || 'writer';
const GONE_DISPLAY = process.env.TROVE_GONE_DISPLAY;
const COMMIT = process.env.TROVE_COMMIT;
const SHOTS = process.env.TROVE_SCREENSHOTS || '';
const REPO = `${ROOT}/projects/${KEY}/repos/${SLUG}`;
const AXE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

let passed = 0;
let failed = 0;

async function step(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}\n     ${String(e && e.stack || e).split('\n').slice(0, 8).join('\n     ')}`);
    throw e;
  }
}

async function check(name, fn) {
  try {
    await step(name, fn);
  } catch (_) { /* counted and printed by step() */ }
}

async function shot(page, name) {
  if (!SHOTS) return;
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: false });
}

/// axe-core, injected through the DevTools protocol (the page's CSP stays as strict as it is).
async function a11y(page, what) {
  await check(`axe: ${what} has no critical or serious violations`, async () => {
    await page.evaluate(AXE);
    const r = await page.evaluate(() => axe.run(document, { resultTypes: ['violations'] }));
    const describe = (v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.length}×: ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')})`;
    const bad = r.violations.filter((v) => v.impact === 'critical' || v.impact === 'serious');
    for (const v of r.violations.filter((v) => !bad.includes(v))) console.log(`     note (${what}): ${describe(v)}`);
    assert.equal(bad.length, 0, `${page.url()}\n     ${bad.map(describe).join('\n     ')}`);
  });
}

/// The page at `url` in a 390 px wide phone viewport is no wider than the screen.
async function fitsPhone(phone, url) {
  await check(`${url.slice(ROOT.length)} fits a 390 px phone`, async () => {
    await phone.goto(url);
    const w = await phone.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(w <= 390, `${url} is ${w} px wide`);
  });
}

async function login(page, user, password) {
  await page.goto(ROOT + '/login');
  await page.fill('#username', user);
  await page.fill('#password', password);
  await Promise.all([page.waitForURL(ROOT + '/'), page.click('form.card button[type=submit]')]);
}

async function main() {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const context = (width, height) => browser.newContext({ viewport: { width, height } });
    const reader = await (await context(1280, 800)).newPage();
    const admin = await (await context(1280, 800)).newPage();
    const phoneCtx = await context(390, 800);
    const phone = await phoneCtx.newPage();
    const problems = [];
    for (const [who, p] of [['reader', reader], ['admin', admin], ['phone', phone]]) {
      p.setDefaultTimeout(20000);
      p.on('pageerror', (e) => problems.push(`${who}: ${e.message}`));
      // A page answered with an error status is logged as "Failed to load resource"; the bad
      // query's 400 is expected, and server errors are caught below by status.
      p.on('console', (m) => {
        if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`${who}: ${m.text()} (${m.location().url})`);
      });
      p.on('response', (r) => { if (r.status() >= 500) problems.push(`${who}: ${r.status()} ${r.request().method()} ${r.url()}`); });
    }

    await step('the reader and the administrator log in', async () => {
      await login(reader, READER, process.env.TROVE_READER_PASSWORD);
      await login(admin, ADMIN, process.env.TROVE_ADMIN_PASSWORD);
      await login(phone, READER, process.env.TROVE_READER_PASSWORD);
    });

    // ---- the header's search box ----

    await step('typing in the header suggests the readable repositories only', async () => {
      await reader.goto(`${ROOT}/projects`);
      await reader.click('header.top form.search input[name=q]');
      await reader.keyboard.type('test');
      await reader.waitForSelector('#search-suggest:not([hidden]) a');
      const links = await reader.$$eval('#search-suggest a', (l) => l.map((a) => a.getAttribute('href')));
      assert.ok(links.includes(`/projects/${KEY}/repos/${SLUG}/browse`) || links.some((h) => h.endsWith(`/projects/${KEY}/repos/${SLUG}/browse`)), links.join(' '));
      assert.ok(!links.some((h) => h.includes('hidden-test')), `a repository the reader may not read was offered: ${links.join(' ')}`);
      const first = await reader.$eval('#search-suggest a', (a) => ({ text: a.textContent, color: getComputedStyle(a).color }));
      assert.match(first.text, /test/);
      assert.notEqual(first.color, 'rgb(255, 255, 255)', 'the suggestion is written white on white');
      await shot(reader, 'search-suggest');
    });
    await a11y(reader, 'the header search with suggestions open');

    await step('the arrow keys and Enter open the suggested repository', async () => {
      await reader.keyboard.press('ArrowDown');
      await Promise.all([reader.waitForURL(`${REPO}/browse`), reader.keyboard.press('Enter')]);
    });

    await step('Enter without a suggestion chosen opens the results page', async () => {
      await reader.fill('header.top form.search input[name=q]', 'Test Project');
      await reader.waitForSelector('#search-suggest:not([hidden])');
      await Promise.all([reader.waitForURL(/\/search\?q=Test\+Project/), reader.press('header.top form.search input[name=q]', 'Enter')]);
      assert.ok(await reader.isVisible(`#project-results a[href$="/projects/${KEY}"]`));
      await shot(reader, 'search-results');
    });
    await a11y(reader, 'the search results page');

    // ---- the file finder ----

    await step('t on a repository page opens the file finder, which filters as you type', async () => {
      await reader.goto(`${REPO}/browse?at=refs/heads/main`);
      await Promise.all([reader.waitForURL(`${REPO}/find?at=refs%2Fheads%2Fmain`), reader.keyboard.press('t')]);
      await reader.waitForSelector('#finder-form[data-ready]');
      await reader.keyboard.type('smr');
      await reader.waitForFunction(() => document.querySelectorAll('#finder-results a').length === 1);
      assert.equal((await reader.textContent('#finder-results a')).trim(), 'src/main.rs');
      await shot(reader, 'file-finder');
    });
    await a11y(reader, 'the file finder');

    await step('Enter opens the file found', async () => {
      await Promise.all([reader.waitForURL(`${REPO}/browse/src/main.rs?at=refs/heads/main`), reader.keyboard.press('Enter')]);
    });

    // ---- code search ----

    await step('code search finds the line and its link lands on it', async () => {
      await reader.goto(`${ROOT}/search?q=GREETING+%3D&type=code`);
      const mark = await reader.textContent('section.hits mark');
      assert.equal(mark, 'greeting =');
      await shot(reader, 'code-search');
      await Promise.all([reader.waitForURL(/\/browse\/src\/main\.rs\?at=refs\/heads\/main#L2$/), reader.click('section.hits td.ln a')]);
      assert.ok(await reader.isVisible('#L2'));
    });
    await a11y(reader, 'the code search results');

    await step('bad input gets a message, not an error page', async () => {
      const r = await reader.goto(`${ROOT}/search?q=x&type=code`);
      assert.equal(r.status(), 400);
      assert.match(await reader.textContent('#search-error'), /at least 2 characters/);
    });

    // ---- profiles ----

    await step('the reader names themself on the account page and the profile shows it', async () => {
      await reader.goto(`${ROOT}/account`);
      await reader.fill('#display-name', 'Rita Reader');
      await reader.fill('#email', 'rita@example.com');
      await Promise.all([reader.waitForURL(`${ROOT}/account?done=saved`), reader.click('#details-form button[type=submit]')]);
      await reader.goto(`${ROOT}/users/${READER}`);
      assert.equal((await reader.textContent('#profile-name')).trim(), 'Rita Reader');
      assert.equal((await reader.textContent('.profile-head .avatar')).trim(), 'RR');
      assert.equal((await reader.textContent('header.top .me a')).trim(), 'Rita Reader');
      await shot(reader, 'profile');
    });
    await a11y(reader, 'a profile page');

    // ---- deleting a user ----

    await step('an administrator deletes a user from their page after typing the name', async () => {
      await admin.goto(`${ROOT}/admin/users`);
      await Promise.all([admin.waitForURL(`${ROOT}/admin/users/view?name=${GONE}`), admin.click(`#users tr[data-user="${GONE}"] td a`)]);
      await admin.fill('#confirm-delete', GONE);
      await shot(admin, 'user-delete');
      await Promise.all([admin.waitForURL(`${ROOT}/admin/users?done=deleted`), admin.click('#delete-user button.danger')]);
      assert.equal(await admin.locator(`#users tr[data-user="${GONE}"]`).count(), 0);
    });
    await a11y(admin, 'the administrator\'s page of a user');

    await step('the deleted user\'s comment stays and keeps their name', async () => {
      await reader.goto(`${REPO}/commits/${COMMIT}`);
      const text = await reader.textContent('main');
      assert.ok(text.includes(GONE_DISPLAY), `no ${GONE_DISPLAY} on the commit page`);
    });

    // ---- a phone ----

    for (const url of [`${ROOT}/search?q=test`, `${ROOT}/search?q=greeting&type=code`, `${REPO}/find`, `${ROOT}/users/${READER}`, `${ROOT}/account`]) {
      await fitsPhone(phone, url);
    }
    await check('the header search box works on a phone', async () => {
      await phone.goto(`${ROOT}/projects`);
      await phone.fill('header.top form.search input[name=q]', 'tes');
      await phone.waitForSelector('#search-suggest:not([hidden]) a');
      const w = await phone.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(w <= 390, `${w} px wide with the suggestions open`);
      await shot(phone, 'search-phone');
    });

    await check('no CSP violation, script error or server error on any page', async () => {
      assert.deepEqual(problems, []);
    });
  } finally {
    await browser.close();
  }
}

main().then(
  () => { console.log(`${passed} passed, ${failed} failed`); process.exit(failed ? 1 : 0); },
  (e) => { console.log(String(e && e.stack || e)); console.log(`${passed} passed, ${failed + (failed ? 0 : 1)} failed`); process.exit(1); },
);
