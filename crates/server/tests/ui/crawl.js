// Every page a signed-in administrator can reach from the home page, in real headless Chromium:
// no link answers an error, no page breaks the Content-Security-Policy, axe-core finds no
// critical or serious violation, and no page is wider than a 390 px phone screen.
//
// Run by crates/server/tests/it/web_ui.rs, which starts the server, pushes a repository and
// opens a pull request, and sets:
//   TROVE_ROOT            the public root URL, context path included (no trailing slash)
//   TROVE_ADMIN           admin user name;  TROVE_ADMIN_PASSWORD  its password
//   TROVE_CRAWL_MAX       the most pages visited (default 200)
// Every finding is printed (one page's findings do not hide the next page's); the exit status
// is 0 when there were none, and the last line is "N passed, N failed".
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const ROOT = process.env.TROVE_ROOT;
const ADMIN = process.env.TROVE_ADMIN || 'admin';
const ADMIN_PASSWORD = process.env.TROVE_ADMIN_PASSWORD;
const MAX = Number(process.env.TROVE_CRAWL_MAX || 200);
const AXE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const PHONE = 390;

let passed = 0;
let failed = 0;

function finding(name, ok, detail) {
  if (ok) {
    passed++;
  } else {
    failed++;
    console.log(`FAIL ${name}\n     ${String(detail).split('\n').join('\n     ')}`);
  }
}

/// The page's own links worth following: same origin, under the root, not a download (raw,
/// archive), not a logout; the fragment dropped; query kept (pages differ by `?at=`).
function worth(href) {
  let u;
  try { u = new URL(href); } catch (_) { return null; }
  if (!u.href.startsWith(ROOT + '/') && u.href !== ROOT) return null;
  u.hash = '';
  if (/\/(raw|archive)(\/|$|\?)/.test(u.pathname) || /\/logout$/.test(u.pathname)) return null;
  // One page per list is enough: paging and filters render the same template.
  if (u.searchParams.has('start') || u.searchParams.has('from') || u.searchParams.has('until')) return null;
  return u.href;
}

async function main() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'trove-crawl-'));
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
  try {
    await page.goto(ROOT + '/login');
    await page.fill('input[name=username]', ADMIN);
    await page.fill('input[name=password]', ADMIN_PASSWORD);
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
    const queue = [ROOT + '/'];
    const seen = new Set(queue);
    const from = new Map();
    let visited = 0;
    while (queue.length && visited < MAX) {
      const url = queue.shift();
      visited++;
      csp.length = 0;
      await page.setViewportSize({ width: 1280, height: 800 });
      const resp = await page.goto(url);
      const status = resp ? resp.status() : 0;
      finding(`${url} answers (linked from ${from.get(url) || 'the start'})`, status > 0 && status < 400, `status ${status}`);
      if (!(status > 0 && status < 400)) continue;
      const ctype = (resp.headers()['content-type'] || '');
      if (!ctype.startsWith('text/html')) continue;
      for (const href of await page.evaluate(() => [...document.querySelectorAll('a[href]')].map((a) => a.href))) {
        const next = worth(href);
        if (next && !seen.has(next)) {
          seen.add(next);
          from.set(next, url);
          queue.push(next);
        }
      }
      await page.evaluate(AXE);
      const r = await page.evaluate(() => axe.run(document, { resultTypes: ['violations'] }));
      const bad = r.violations.filter((v) => v.impact === 'critical' || v.impact === 'serious');
      finding(`axe: ${url}`, bad.length === 0, bad.map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.length}×: ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')})`).join('\n'));
      await page.setViewportSize({ width: PHONE, height: 800 });
      const wide = await page.evaluate(() => {
        const w = document.documentElement.clientWidth;
        const out = [];
        for (const el of document.querySelectorAll('body *')) {
          const r = el.getBoundingClientRect();
          // Scroll containers may hold wider content; what sticks out of the page may not.
          if (r.right > w + 1 && !el.closest('.codebox, table.code, pre, .diff-scroll, [data-scroll]')) out.push(`${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}${el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\s+/).join('.') : ''} (${Math.round(r.right)} px)`);
        }
        return { scroll: document.documentElement.scrollWidth, w, out: out.slice(0, 5) };
      });
      finding(`${PHONE} px: ${url}`, wide.scroll <= wide.w + 1, `the page is ${wide.scroll} px wide at ${wide.w}: ${wide.out.join(', ')}`);
      finding(`CSP: ${url}`, csp.length === 0, csp.join('\n'));
    }
    console.log(`visited ${visited} pages (${seen.size} found)`);
    finding('the crawl found more than the home page', visited > 10, `only ${visited} pages`);
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => { console.log(String(e && e.stack || e)); console.log(`${passed} passed, ${failed + 1} failed`); process.exit(1); });
