#!/usr/bin/env node
// Pull-request pages at size (issue 19, "a pull request with 1,000 changed files opens its
// overview in under a second"): a pull request changing 1,000 files and 50,000 lines (50 lines of
// each 100-line file, as bench/pull_requests.py's), opened in headless Chromium, logged in.
// For each page the browser's own navigation timing: the server's time to the first byte
// (responseStart - requestStart), the HTML's size, DOMContentLoaded and the load event (from
// the start of the navigation), and on the diff the moment its first file's table is in the
// document and the frame after it (its first paint). Medians of RUNS navigations after one
// warm-up, each a fresh navigation (the style sheet and script come from the cache, as for
// anyone who has opened a page before).
//
//     node bench/pull_request_pages.js [RUNS]     # default 9
//     TROVE=path/to/trove node bench/pull_request_pages.js   # default target/release/trove
//
// Needs git, /usr/bin/chromium and `npm ci` in crates/server/tests/ui (playwright-core).
// The server listens on a 127.0.0.1 port the kernel picked; the work directory is
// bench/.work/pull-request-pages. Prints a Markdown table and writes
// bench/.work/pull-request-pages.json.
'use strict';

const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const { chromium } = require(path.join(ROOT, 'crates/server/tests/ui/node_modules/playwright-core'));
const WORK = path.join(ROOT, 'bench/.work/pull-request-pages');
const TROVE = process.env.TROVE || path.join(ROOT, 'target/release/trove');
const RUNS = Number(process.argv[2] || 9);
const PASSWORD = 'bench-admin-password-1';
const FILES = 1000;

function run(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], maxBuffer: 1 << 26, ...opts });
}

function git(cwd, ...args) {
  return run('git', ['-C', cwd, '-c', 'user.name=Bench', '-c', 'user.email=b@example.com', ...args],
    { env: { ...process.env, GIT_TERMINAL_PROMPT: '0', GIT_CONFIG_NOSYSTEM: '1' } });
}

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

async function waitPort(port) {
  const deadline = Date.now() + 60000;
  while (Date.now() < deadline) {
    const up = await new Promise((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => { c.end(); resolve(true); });
      c.on('error', () => resolve(false));
    });
    if (up) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`trove server did not listen on ${port}`);
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

/// The repository: main with 1,000 files of 100 lines under dir0..dir9; `big` changes every
/// other line of each.
function makeRepo(src) {
  git(WORK, 'init', '-q', '-b', 'main', src);
  for (let i = 0; i < FILES; i++) {
    const d = path.join(src, `dir${Math.floor(i / 100)}`);
    fs.mkdirSync(d, { recursive: true });
    fs.writeFileSync(path.join(d, `file${i}.txt`), Array.from({ length: 100 }, (_, n) => `line ${n} of file ${i}\n`).join(''));
  }
  git(src, 'add', '.');
  git(src, 'commit', '-qm', 'base');
  git(src, 'checkout', '-q', '-b', 'big');
  for (let i = 0; i < FILES; i++) {
    const p = path.join(src, `dir${Math.floor(i / 100)}`, `file${i}.txt`);
    const lines = fs.readFileSync(p, 'utf8').split('\n');
    for (let n = 0; n < 100; n += 2) lines[n] = `changed line ${n} of file ${i}`;
    fs.writeFileSync(p, lines.join('\n'));
  }
  git(src, 'commit', '-qam', 'Change 50,000 lines\n\nEvery other line of each of 1,000 files.');
  git(src, 'checkout', '-q', 'main');
}

/// Collected in every page before its own scripts run: when the first file's diff table is in
/// the document, and the frame after that.
function firstFileProbe() {
  const seen = () => document.querySelector('section.pr-file .codebox table.code');
  const mark = () => {
    if (window.__firstFile !== undefined || !seen()) return false;
    window.__firstFile = performance.now();
    requestAnimationFrame(() => { window.__firstFilePaint = performance.now(); });
    return true;
  };
  new MutationObserver((_, obs) => { if (mark()) obs.disconnect(); }).observe(document, { childList: true, subtree: true });
}

async function measure(page, url) {
  const resp = await page.goto(url, { waitUntil: 'load' });
  if (resp.status() === 404) throw new Error(`${url}: HTTP 404: is ${TROVE} older than the pull-request pages? Set TROVE to a newer build`);
  if (resp.status() !== 200) throw new Error(`${url}: HTTP ${resp.status()}`);
  await page.waitForTimeout(50); // the frame after the first file, if any
  return page.evaluate(() => {
    const n = performance.getEntriesByType('navigation')[0];
    const fcp = performance.getEntriesByName('first-contentful-paint')[0];
    return {
      ttfb: n.responseStart - n.requestStart,
      html: n.responseEnd - n.startTime,
      bytes: n.decodedBodySize,
      dcl: n.domContentLoadedEventEnd - n.startTime,
      load: n.loadEventEnd - n.startTime,
      fcp: fcp ? fcp.startTime : null,
      firstFile: window.__firstFile === undefined ? null : window.__firstFile,
      firstFilePaint: window.__firstFilePaint === undefined ? null : window.__firstFilePaint,
      files: document.querySelectorAll('section.pr-file').length,
      eager: document.querySelectorAll('section.pr-file:not([data-lazy])').length,
    };
  });
}

async function main() {
  if (!fs.existsSync(TROVE)) throw new Error(`no ${TROVE}: build it (cargo build --release -p trove) or set TROVE`);
  fs.rmSync(WORK, { recursive: true, force: true });
  fs.mkdirSync(WORK, { recursive: true });
  const port = await freePort();
  const cfg = path.join(WORK, 'trove.toml');
  fs.writeFileSync(cfg, `listen = "127.0.0.1:${port}"\ndata_dir = "${WORK}/data"\n[git]\nmaintenance_after_push = false\n`);
  const admin = (args, input) => run(TROVE, ['admin', '--config', cfg, ...args], { input });
  try { run(TROVE, ['admin', '--data', `${WORK}/data`, 'init']); } catch (_) { /* initialised on first use */ }
  admin(['user', 'add', 'admin', '--admin', '--password-stdin'], PASSWORD + '\n');
  admin(['project', 'add', 'TP']);
  admin(['repo', 'add', 'TP/test']);
  const token = admin(['token', 'add', 'admin', '--scope', 'admin']).trim().split(/\s+/).pop();
  const server = spawn(TROVE, ['server', '--config', cfg], { stdio: ['ignore', 'ignore', fs.openSync(path.join(WORK, 'server.log'), 'w')] });
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  try {
    await waitPort(port);
    const base = `http://127.0.0.1:${port}`;
    const src = path.join(WORK, 'src');
    makeRepo(src);
    git(src, 'push', '-q', `http://admin:${token}@127.0.0.1:${port}/scm/tp/test.git`, 'main', 'big');
    const created = await fetch(`${base}/rest/api/1.0/projects/TP/repos/test/pull-requests`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ title: 'Change 50,000 lines', fromRef: { id: 'refs/heads/big' }, toRef: { id: 'refs/heads/main' } }),
    });
    if (created.status !== 201) throw new Error(`creating the pull request: HTTP ${created.status} ${await created.text()}`);
    const pr = (await created.json()).id;

    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    await context.addInitScript(firstFileProbe);
    const page = await context.newPage();
    page.setDefaultTimeout(120000);
    await page.goto(`${base}/login`);
    await page.fill('#username', 'admin');
    await page.fill('#password', PASSWORD);
    await Promise.all([page.waitForURL(`${base}/`), page.click('form.card button[type=submit]')]);

    const prUrl = `${base}/projects/TP/repos/test/pull-requests/${pr}`;
    const pages = [
      ['overview', `${prUrl}/overview`],
      ['diff, unified', `${prUrl}/diff`],
      ['diff, side by side', `${prUrl}/diff?view=split`],
      ['commits', `${prUrl}/commits`],
      ['one file of the diff (`?path=`)', `${prUrl}/diff?path=dir5/file500.txt`],
    ];
    const rows = {};
    for (const [name, url] of pages) {
      await measure(page, url); // warm-up
      const xs = [];
      for (let i = 0; i < RUNS; i++) xs.push(await measure(page, url));
      const m = (k) => (xs.every((x) => x[k] !== null) ? median(xs.map((x) => x[k])) : null);
      rows[name] = { ttfb: m('ttfb'), html: m('html'), bytes: xs[0].bytes, dcl: m('dcl'), fcp: m('fcp'), firstFile: m('firstFile'),
        firstFilePaint: m('firstFilePaint'), load: m('load'), files: xs[0].files, eager: xs[0].eager, loads: xs.map((x) => Math.round(x.load)) };
    }
    const version = run(TROVE, ['--version']).trim();
    const out = { trove: TROVE, version, runs: RUNS, files: FILES, rows };
    fs.writeFileSync(path.join(ROOT, 'bench/.work/pull-request-pages.json'), JSON.stringify(out, null, 1));
    const f = (x) => (x === null ? '–' : Math.round(x).toLocaleString('en'));
    console.log(`${version} (${TROVE}); medians of ${RUNS} navigations in headless Chromium, ms from the start of each.\n`);
    console.log('| page | server time to first byte | HTML received | HTML bytes | first contentful paint | DOMContentLoaded | first file in the document / painted | load event | file sections (diffed at once) |');
    console.log('|---|---|---|---|---|---|---|---|---|');
    for (const [name, r] of Object.entries(rows)) {
      const first = r.firstFile === null ? '–' : `${f(r.firstFile)} / ${f(r.firstFilePaint)}`;
      const sections = r.files ? `${r.files.toLocaleString('en')} (${r.eager})` : '–';
      console.log(`| ${name} | ${f(r.ttfb)} | ${f(r.html)} | ${r.bytes.toLocaleString('en')} | ${f(r.fcp)} | ${f(r.dcl)} | ${first} | ${f(r.load)} | ${sections} |`);
    }
  } finally {
    await browser.close();
    server.kill('SIGTERM');
  }
}

main().catch((e) => { console.error(e && e.stack || e); process.exit(1); });
