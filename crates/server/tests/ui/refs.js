// Branches, tags, the branch picker, the commit graph and a commit's diff, in real headless
// Chromium: a writer filters, creates and deletes branches and tags, the picker filters as one
// types, the commit list draws the merge, and a commit's diff switches to side by side, ignores
// whitespace and loads more context in place. Every page visited keeps the CSP, has no
// critical or serious axe-core finding and fits a 390 px phone screen.
//
// Run by crates/server/tests/it/web_ui.rs, which starts the server, pushes the repository and
// sets:
//   TROVE_ROOT         the public root URL, context path included (no trailing slash)
//   TROVE_USER         a user with write access;  TROVE_USER_PASSWORD  its password
//   TROVE_REPO         KEY/slug: `main` (a merge of `topic`, then "Indent and fix", which only
//                      reindents src/lib.rs and changes notes.txt), `topic` (merged),
//                      `feature/ui` (one commit ahead), tag v1.0
//   TROVE_SCREENSHOTS  directory for screenshots (optional)
// Exit status 0 when every step passed; the last line is "N passed, N failed".
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const ROOT = process.env.TROVE_ROOT;
const USER = process.env.TROVE_USER;
const PASSWORD = process.env.TROVE_USER_PASSWORD;
const [KEY, SLUG] = (process.env.TROVE_REPO || 'TP/test').split('/');
const SHOTS = process.env.TROVE_SCREENSHOTS || '';
const AXE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const REPO = `${ROOT}/projects/${KEY}/repos/${SLUG}`;
const PHONE = 390;

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

async function shot(page, name) {
  if (!SHOTS) return;
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: false });
}

async function main() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'trove-refs-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(20000);
  const csp = [];
  page.on('console', (m) => { if (/Content.Security.Policy|Refused to/i.test(m.text())) csp.push(`${page.url()}: ${m.text()}`); });
  // The CSP, axe-core and the phone width on the page as it is now (then back to the desktop).
  const checked = async (what) => {
    await page.evaluate(AXE);
    const r = await page.evaluate(() => axe.run(document, { resultTypes: ['violations'] }));
    const bad = r.violations.filter((v) => v.impact === 'critical' || v.impact === 'serious');
    assert.equal(bad.length, 0, `${what}: ` + bad.map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')})`).join('\n'));
    await page.setViewportSize({ width: PHONE, height: 800 });
    const wide = await page.evaluate(() => {
      const w = document.documentElement.clientWidth;
      const out = [];
      for (const el of document.querySelectorAll('body *')) {
        const r = el.getBoundingClientRect();
        if (r.right > w + 1 && !el.closest('.codebox, table.code, pre, table.list')) out.push(`${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}.${String(el.className)} (${Math.round(r.right)} px)`);
      }
      return { scroll: document.documentElement.scrollWidth, w, out: out.slice(0, 5) };
    });
    await page.setViewportSize({ width: 1280, height: 800 });
    assert.ok(wide.scroll <= wide.w + 1, `${what} is ${wide.scroll} px wide on a ${PHONE} px screen: ${wide.out.join(', ')}`);
    assert.deepEqual(csp, [], `${what}: CSP violations`);
  };
  const rowOf = (name) => page.locator(`tr.ref-row[data-ref="${name}"]`);
  try {
    await step('the writer logs in', async () => {
      await page.goto(ROOT + '/login');
      await page.fill('input[name=username]', USER);
      await page.fill('input[name=password]', PASSWORD);
      await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
      assert.ok(!page.url().includes('/login'), page.url());
    });

    await step('the branches page lists each branch with ahead/behind and its last commit, the default first', async () => {
      await page.goto(`${REPO}/browse`);
      await Promise.all([page.waitForURL(`${REPO}/branches`), page.click('#nav-branches')]);
      const names = await page.locator('tr.ref-row').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-ref')));
      assert.equal(names[0], 'main', names.join(', '));
      assert.ok(names.includes('topic') && names.includes('feature/ui'), names.join(', '));
      assert.match(await rowOf('main').textContent(), /default/);
      assert.equal((await rowOf('feature/ui').locator('td.ahead').textContent()).trim(), '1');
      assert.equal((await rowOf('feature/ui').locator('td.behind').textContent()).trim(), '1');
      assert.ok(await rowOf('topic').locator('td.last-commit time[title]').count() === 1, 'a relative date with the exact one on hover');
      await shot(page, 'branches');
      await checked('the branches page');
    });

    await step('the filter narrows the list by name', async () => {
      await page.fill('#ref-filter', 'UI');
      await Promise.all([page.waitForURL(/filter=UI/), page.press('#ref-filter', 'Enter')]);
      const names = await page.locator('tr.ref-row').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-ref')));
      assert.deepEqual(names, ['feature/ui']);
    });

    await step('a branch is created from a tag and deleted after a confirmation', async () => {
      await page.goto(`${REPO}/branches`);
      await page.click('#create-ref summary');
      await page.fill('#ref-name', 'hotfix/from-tag');
      await page.fill('#ref-start', 'v1.0');
      await Promise.all([page.waitForURL(/done=branch-created/), page.click('#create-ref-form button[type=submit]')]);
      assert.match(await page.textContent('.notice.ok'), /Branch hotfix\/from-tag created/);
      assert.equal(await rowOf('hotfix/from-tag').count(), 1);
      let asked = '';
      page.once('dialog', (d) => { asked = d.message(); d.accept(); });
      await Promise.all([page.waitForURL(/done=branch-deleted/), rowOf('hotfix/from-tag').locator('button[type=submit]').click()]);
      assert.equal(asked, 'Delete branch hotfix/from-tag?');
      assert.equal(await rowOf('hotfix/from-tag').count(), 0);
      // Dismissing the question deletes nothing.
      page.once('dialog', (d) => d.dismiss());
      await rowOf('topic').locator('button[type=submit]').click();
      assert.equal(await rowOf('topic').count(), 1);
      await checked('the branches page after a delete');
    });

    await step('a taken name is refused beside the form, what was typed kept', async () => {
      await page.click('#create-ref summary');
      await page.fill('#ref-name', 'topic');
      await page.click('#create-ref-form button[type=submit]');
      await page.waitForSelector('.notice.err');
      assert.match(await page.textContent('.notice.err'), /already exists/);
      assert.equal(await page.inputValue('#ref-name'), 'topic');
    });

    await step('the tags page creates an annotated tag and lists it first', async () => {
      await page.goto(`${REPO}/branches`);
      await Promise.all([page.waitForURL(`${REPO}/tags`), page.click('#nav-tags')]);
      assert.equal(await rowOf('v1.0').count(), 1);
      await page.click('#create-ref summary');
      await page.fill('#ref-name', 'v2.0');
      await page.fill('#ref-start', 'main');
      await page.fill('#ref-message', 'Second release');
      await Promise.all([page.waitForURL(/done=tag-created/), page.click('#create-ref-form button[type=submit]')]);
      const names = await page.locator('tr.ref-row').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-ref')));
      assert.equal(names[0], 'v2.0', names.join(', '));
      assert.match(await rowOf('v2.0').textContent(), /Second release/);
      await shot(page, 'tags');
      await checked('the tags page');
    });

    await step('the branch picker filters as one types and Enter opens the match', async () => {
      await page.goto(`${REPO}/browse`);
      await page.click('#ref-picker-button');
      await page.waitForSelector('#ref-picker-filter:focus');
      await page.keyboard.type('top');
      const visible = await page.locator('#ref-options li[data-name]:visible').evaluateAll((li) => li.map((l) => l.getAttribute('data-name')));
      assert.deepEqual(visible, ['topic']);
      await shot(page, 'branch-picker');
      await page.setViewportSize({ width: PHONE, height: 800 });
      const wide = await page.evaluate(() => document.documentElement.scrollWidth);
      await page.setViewportSize({ width: 1280, height: 800 });
      assert.ok(wide <= PHONE + 1, `the open picker makes the page ${wide} px wide`);
      await Promise.all([page.waitForURL(/at=refs\/heads\/topic/), page.keyboard.press('Enter')]);
      assert.match(await page.textContent('#ref-picker-button'), /topic/);
      await page.click('#ref-picker-button');
      await page.fill('#ref-picker-filter', 'no-such-ref');
      assert.ok(await page.isVisible('#ref-none'), 'says nothing matches');
      await page.keyboard.press('Escape');
      assert.equal(await page.locator('#ref-picker[open]').count(), 0, 'Escape closes it');
      // A tag, by clicking its link.
      await page.click('#ref-picker-button');
      await Promise.all([page.waitForURL(/at=refs\/tags\/v1.0/), page.click('#ref-options a:text-is("v1.0")')]);
      await checked('the source page at a tag');
    });

    await step('without the script the picker is a list of links', async () => {
      const noJs = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu'] });
      try {
        const ctx = await noJs.newContext({ javaScriptEnabled: false });
        await ctx.addCookies(await context.cookies());
        const p = await ctx.newPage();
        await p.goto(`${REPO}/commits`);
        await p.click('#ref-picker-button');
        await Promise.all([p.waitForURL(/at=refs\/heads\/feature\/ui/), p.click('#ref-options a:text-is("feature/ui")')]);
        assert.match(await p.textContent('#ref-picker-button'), /feature\/ui/);
      } finally {
        await noJs.close();
      }
    });

    await step('the commit list labels branches and tags and draws the merge', async () => {
      await page.goto(`${REPO}/commits`);
      const rows = await page.locator('#commits tbody tr').count();
      assert.equal(await page.locator('#commits td.graph-cell svg.graph').count(), rows, 'a graph cell per commit');
      assert.ok(await page.locator('#commits svg.graph circle.merge').count() >= 1, 'the merge is drawn');
      assert.ok(await page.locator('#commits svg.graph .lane-1').count() >= 1, 'in a second lane');
      assert.equal(await page.locator('#commits tr:first-child .ref-label.default').textContent(), 'main');
      assert.ok(await page.locator('#commits .ref-label.tag', { hasText: 'v2.0' }).count() === 1);
      const title = await page.getAttribute('#commits tr:first-child time', 'title');
      assert.match(title, /^\d{4}-\d\d-\d\d \d\d:\d\d UTC$/);
      await shot(page, 'commit-graph');
      await checked('the commit list');
    });

    await step("a commit's diff has the file tree, side by side, whitespace and more context", async () => {
      await page.click('#commits tr:first-child a.subject');
      await page.waitForSelector('#commit-diff #file-tree');
      assert.equal(await page.locator('#file-tree li.file').count(), 2);
      await Promise.all([page.waitForURL(/view=split/), page.click('#view-split')]);
      assert.equal(await page.locator('table.pr-diff.split').count(), 2);
      await Promise.all([page.waitForURL(/whitespace=ignore-all/), page.click('#whitespace-toggle')]);
      assert.match(await page.textContent('section.pr-file[data-path="src/lib.rs"]'), /No changes but whitespace/);
      assert.equal(await page.locator('section.pr-file[data-path="notes.txt"] table.pr-diff').count(), 1, 'the real change is still shown');
      await shot(page, 'commit-diff');
      // More context loads in place: the page stays, the file's section gets more lines.
      const url = page.url();
      const before = await page.locator('section.pr-file[data-path="notes.txt"] td.ln').count();
      await page.click('section.pr-file[data-path="notes.txt"] a.whole-file');
      await page.waitForFunction((n) => document.querySelectorAll('section.pr-file[data-path="notes.txt"] td.ln').length > n, before);
      assert.equal(page.url(), url);
      assert.ok(await page.isVisible('#comments'), "the commit's comments are still there");
      await checked('the commit page');
    });
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => { console.log(String(e && e.stack || e)); console.log(`${passed} passed, ${failed + 1} failed`); process.exit(1); });
