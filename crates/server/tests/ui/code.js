// Reading code in a real browser (issue 25): the highlighted file view, line and range anchors
// (`#L2-3`, a click on a line number, shift-click), blame, the file's history, a Markdown file
// rendered with its source toggle, and image previews (PNG and SVG); on each page no CSP
// violation, no critical or serious axe-core finding, and nothing wider than a 390 px phone.
//
// Run by crates/server/tests/it/code_views.rs, which starts the server and pushes the
// repository, and sets:
//   TROVE_ROOT            the public root URL, context path included (no trailing slash)
//   TROVE_REPO            KEY/slug of the repository (default TP/test)
//   TROVE_ADMIN           admin user name;  TROVE_ADMIN_PASSWORD  its password
//   TROVE_SCREENSHOTS     where to save screenshots (none when empty)
// The last line is "N passed, N failed".
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const ROOT = process.env.TROVE_ROOT;
const [KEY, SLUG] = (process.env.TROVE_REPO || 'TP/test').split('/');
const ADMIN = process.env.TROVE_ADMIN || 'admin';
const ADMIN_PASSWORD = process.env.TROVE_ADMIN_PASSWORD;
const SHOTS = process.env.TROVE_SCREENSHOTS || '';
const REPO = `${ROOT}/projects/${KEY}/repos/${SLUG}`;
const AXE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
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
  }
}

async function main() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'trove-code-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(20000);
  const csp = [];
  page.on('console', (m) => { if (/Content.Security.Policy|Refused to/i.test(m.text())) csp.push(m.text()); });
  const shot = async (name) => { if (SHOTS) await page.screenshot({ path: path.join(SHOTS, name), fullPage: false }); };

  /// The page's checks every visit ends with: the CSP held, axe finds nothing critical or
  /// serious, and at 390 px nothing sticks out of the screen (scroll boxes may scroll).
  async function pageChecks(what) {
    assert.deepEqual(csp, [], `CSP violations on ${what}`);
    await page.evaluate(AXE);
    const r = await page.evaluate(() => axe.run(document, { resultTypes: ['violations'] }));
    const bad = r.violations.filter((v) => v.impact === 'critical' || v.impact === 'serious');
    assert.equal(bad.length, 0, bad.map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')})`).join('\n'));
    await page.setViewportSize({ width: PHONE, height: 800 });
    const wide = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, w: document.documentElement.clientWidth }));
    await page.setViewportSize({ width: 1280, height: 800 });
    assert.ok(wide.scroll <= wide.w + 1, `${what} is ${wide.scroll} px wide on a ${wide.w} px screen`);
  }
  async function visit(url) {
    csp.length = 0;
    // Only the fragment differs: the browser would not load the page again.
    let resp = (await page.goto(url)) || (await page.reload());
    assert.equal(resp.status(), 200, `${url}: ${resp.status()}`);
    // The first view of a file may show it plain while its highlighting is computed (the
    // server waits 400 ms for it): reload until it is there, within a deadline.
    for (const deadline = Date.now() + 30000; await page.isVisible('#highlight-pending');) {
      assert.ok(Date.now() < deadline, `${url} was never highlighted`);
      await page.waitForTimeout(200);
      resp = await page.reload();
    }
  }
  const selected = () => page.evaluate(() => [...document.querySelectorAll('[data-lines] .l.sel')].map((l) => +l.dataset.n));

  try {
    await step('log in', async () => {
      await page.goto(ROOT + '/login');
      await page.fill('input[name=username]', ADMIN);
      await page.fill('input[name=password]', ADMIN_PASSWORD);
      await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
    });

    await step('the file view highlights the code with coloured classes, one line per anchor', async () => {
      await visit(`${REPO}/browse/src/main.rs`);
      const info = await page.evaluate(() => {
        const k = document.querySelector('.hl span.k');
        const plain = document.querySelector('#L1');
        return {
          lines: document.querySelectorAll('[data-lines] .l').length,
          keyword: k && k.textContent,
          keywordColor: k && getComputedStyle(k).color,
          textColor: getComputedStyle(plain).color,
          strings: document.querySelectorAll('.hl span.s').length,
          lang: document.querySelector('.badge.lang') && document.querySelector('.badge.lang').textContent,
          number: getComputedStyle(plain, '::before').content,
          links: ['file-raw', 'file-blame', 'file-history', 'file-permalink'].map((id) => !!document.getElementById(id)),
        };
      });
      assert.equal(info.lines, 12);
      assert.equal(info.keyword, 'fn');
      assert.notEqual(info.keywordColor, info.textColor, 'keywords have their own colour');
      assert.ok(info.strings > 0, 'strings are marked');
      assert.equal(info.lang, 'Rust');
      assert.equal(info.number, '"1"', 'the line number is drawn from data-n');
      assert.deepEqual(info.links, [true, true, true, true]);
      await pageChecks('the file view');
    });

    await step('a long line scrolls inside its box instead of being cut or widening the page', async () => {
      const box = await page.evaluate(() => {
        const src = document.querySelector('.src');
        const long = document.getElementById('L12');
        return { scroll: src.scrollWidth, client: src.clientWidth, text: long.textContent.length, overflow: getComputedStyle(src).overflowX };
      });
      assert.equal(box.overflow, 'auto');
      assert.ok(box.scroll > box.client, `the long line (${box.text} characters) overflows its box: ${box.scroll} > ${box.client}`);
    });

    await step('#L2-3 marks lines 2 to 3 and scrolls to them; a click on a number marks it, shift-click extends', async () => {
      await visit(`${REPO}/browse/src/main.rs#L2-3`);
      assert.deepEqual(await selected(), [2, 3]);
      const click = async (n, shift) => {
        const b = await page.locator(`#L${n}`).boundingBox();
        if (shift) await page.keyboard.down('Shift');
        await page.mouse.click(b.x + 12, b.y + b.height / 2);
        if (shift) await page.keyboard.up('Shift');
      };
      await click(5, false);
      assert.deepEqual(await selected(), [5]);
      assert.ok(page.url().endsWith('#L5'), page.url());
      await click(8, true);
      assert.deepEqual(await selected(), [5, 6, 7, 8]);
      assert.ok(page.url().endsWith('#L5-8'), page.url());
      // A click on the code itself selects no line.
      const b = await page.locator('#L1').boundingBox();
      await page.mouse.click(b.x + 200, b.y + b.height / 2);
      assert.deepEqual(await selected(), [5, 6, 7, 8]);
      await page.evaluate(() => document.getElementById('L5').scrollIntoView({ block: 'center' }));
      await shot('file-view.png');
      // The URL the browser shows marks the same lines when opened.
      await visit(page.url());
      assert.deepEqual(await selected(), [5, 6, 7, 8]);
    });

    await step('blame groups the lines by commit with author, date and summary, beside highlighted code', async () => {
      await page.click('#file-blame');
      await page.waitForSelector('.blame .bg');
      const b = await page.evaluate(() => ({
        groups: [...document.querySelectorAll('.blame .bg')].map((g) => ({
          sha: g.querySelector('a.sha').textContent,
          who: g.querySelector('.who').textContent,
          when: g.querySelector('.when').getAttribute('title'),
          msg: g.querySelector('a.msg').textContent,
          lines: g.querySelectorAll('.l').length,
        })),
        keywords: document.querySelectorAll('.blame span.k').length,
      }));
      assert.ok(b.groups.length >= 2, JSON.stringify(b.groups));
      assert.equal(b.groups.reduce((n, g) => n + g.lines, 0), 12, 'every line is blamed once');
      assert.ok(b.groups.some((g) => g.msg === 'Say hello') && b.groups.some((g) => g.msg === 'Greet louder'), JSON.stringify(b.groups));
      assert.ok(b.groups.every((g) => /UTC$/.test(g.when) && g.sha.length === 12));
      assert.ok(b.keywords > 0, 'blamed code is highlighted');
      await pageChecks('the blame page');
      await shot('blame.png');
      await Promise.all([page.waitForNavigation(), page.click('.blame a.msg >> nth=0')]);
      assert.ok(/\/commits\/[0-9a-f]{40}$/.test(page.url()), page.url());
    });

    await step("the file's history lists the commits that changed it, across its rename", async () => {
      await visit(`${REPO}/browse/src/main.rs`);
      await Promise.all([page.waitForNavigation(), page.click('#file-history')]);
      const rows = await page.evaluate(() => [...document.querySelectorAll('#commits tbody tr')].map((r) => r.cells[1].textContent));
      assert.deepEqual(rows, ['Greet louder', 'Rename hello.rs to src/main.rs', 'Say hello']);
      assert.ok(await page.isVisible('#history-of'));
      await pageChecks('the history page');
      await shot('file-history.png');
    });

    await step('a Markdown file is rendered, its links resolved against its folder, with a source toggle', async () => {
      await visit(`${REPO}/browse/docs/guide.md`);
      assert.equal(await page.textContent('#rendered h1'), 'Guide');
      const href = await page.getAttribute('#rendered a', 'href');
      assert.ok(href.includes('/browse/docs/setup.md'), href);
      await pageChecks('the rendered Markdown');
      await shot('markdown-view.png');
      await Promise.all([page.waitForNavigation(), page.click('#view-source')]);
      assert.equal(await page.textContent('#L1'), '# Guide');
      assert.ok(await page.isVisible('#view-rendered'));
    });

    await step('PNG and SVG images are previewed, the SVG through the sandboxed raw route', async () => {
      for (const image of ['docs/logo.png', 'docs/icon.svg']) {
        await visit(`${REPO}/browse/${image}`);
        await page.waitForFunction(() => document.getElementById('image-preview').complete);
        const w = await page.evaluate(() => document.getElementById('image-preview').naturalWidth);
        assert.ok(w > 0, `${image} is shown (${w} px wide)`);
        await pageChecks(`the preview of ${image}`);
        if (image.endsWith('.png')) await shot('image-preview.png');
      }
    });
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => { console.log(String(e && e.stack || e)); console.log(`${passed} passed, ${failed + 1} failed`); process.exit(1); });
