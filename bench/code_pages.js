#!/usr/bin/env node
// Code pages at size (issue 25, "the 5,000-line file, a 5,000-line diff and blame of a
// 5,000-line file with 500 commits of history, each under one second"): a repository whose
// `src/big.rs` has 5,000 lines of Rust and 500 commits of history (each changes 10 of its
// lines), and a branch `big` that adds `src/gen.rs`, 5,000 new lines, in one commit; opened
// logged in by headless Chromium at 1280x800. For each page the browser's own navigation
// timing: the server's time to the first byte, the HTML's size, DOMContentLoaded and the load
// event (from the start of the navigation), and the page's DOM nodes. The first navigation
// (nothing cached: the highlighting and the blame are computed) is reported on its own, then
// the median of RUNS navigations after it.
//
//     node bench/code_pages.js [RUNS]     # default 9
//     TROVE=path/to/trove node bench/code_pages.js   # default target/release/trove
//
// Needs git, /usr/bin/chromium and `npm ci` in crates/server/tests/ui (playwright-core). The
// server listens on a 127.0.0.1 port the kernel picked; the work directory is
// bench/.work/code-pages. Prints a Markdown table and writes bench/.work/code-pages.json.
'use strict';

const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const { chromium } = require(path.join(ROOT, 'crates/server/tests/ui/node_modules/playwright-core'));
const WORK = path.join(ROOT, 'bench/.work/code-pages');
const TROVE = process.env.TROVE || path.join(ROOT, 'target/release/trove');
const RUNS = Number(process.argv[2] || 9);
const PASSWORD = 'bench-admin-password-1';

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

const LINES = 5000;
const HISTORY = 500;

/// Line `n` of a Rust file in revision `rev`: a function every 10 lines, as real code has.
function rustLine(n, rev) {
  switch (n % 10) {
    case 0: return `/// Computes value ${n} (revision ${rev}).`;
    case 1: return `pub fn value_${n}(input: &[u8], limit: usize) -> Result<Option<String>, std::io::Error> {`;
    case 2: return `    let mut total: u64 = ${n} * ${rev} + 0x1f; // running sum`;
    case 3: return `    for (i, b) in input.iter().enumerate().take(limit) {`;
    case 4: return `        total = total.wrapping_mul(31).wrapping_add(u64::from(*b) ^ i as u64);`;
    case 5: return '    }';
    case 6: return `    if total % 7 == ${n % 7} { return Ok(None); }`;
    case 7: return `    let label = format!("value {} of {}", total, "${n}");`;
    case 8: return '    Ok(Some(label))';
    default: return '}';
  }
}

/// main: src/big.rs written, then changed HISTORY times (10 lines each, spread over the file);
/// branch big: src/gen.rs added, LINES lines.
function makeRepo(src) {
  git(WORK, 'init', '-q', '-b', 'main', src);
  fs.mkdirSync(path.join(src, 'src'), { recursive: true });
  const lines = Array.from({ length: LINES }, (_, n) => rustLine(n, 0));
  const big = path.join(src, 'src/big.rs');
  fs.writeFileSync(big, lines.join('\n') + '\n');
  git(src, 'add', '.');
  git(src, 'commit', '-qm', 'Start big.rs');
  for (let c = 1; c < HISTORY; c++) {
    for (let k = 0; k < 10; k++) {
      const n = (c * 97 + k * 499) % LINES;
      lines[n] = rustLine(n, c);
    }
    fs.writeFileSync(big, lines.join('\n') + '\n');
    git(src, 'commit', '-qam', `Change 10 lines of big.rs (${c})`);
  }
  git(src, 'checkout', '-q', '-b', 'big');
  fs.writeFileSync(path.join(src, 'src/gen.rs'), Array.from({ length: LINES }, (_, n) => rustLine(n, 1000)).join('\n') + '\n');
  git(src, 'add', '.');
  git(src, 'commit', '-qm', `Add gen.rs, ${LINES} lines`);
  git(src, 'checkout', '-q', 'main');
}

async function measure(page, url) {
  await page.goto('about:blank'); // a URL with a fragment would otherwise not load again
  const resp = await page.goto(url, { waitUntil: 'load' });
  if (resp.status() !== 200) throw new Error(`${url}: HTTP ${resp.status()}`);
  return page.evaluate(() => {
    const n = performance.getEntriesByType('navigation')[0];
    return {
      ttfb: n.responseStart - n.requestStart,
      bytes: n.decodedBodySize,
      dcl: n.domContentLoadedEventEnd - n.startTime,
      load: n.loadEventEnd - n.startTime,
      nodes: document.getElementsByTagName('*').length,
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
  const src = path.join(WORK, 'src');
  makeRepo(src);
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
    git(src, 'push', '-q', `http://admin:${token}@127.0.0.1:${port}/scm/tp/test.git`, 'main', 'big');
    const genCommit = git(src, 'rev-parse', 'big').trim();
    const created = await fetch(`${base}/rest/api/1.0/projects/TP/repos/test/pull-requests`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ title: 'Add gen.rs', fromRef: { id: 'refs/heads/big' }, toRef: { id: 'refs/heads/main' } }),
    });
    if (created.status !== 201) throw new Error(`creating the pull request: HTTP ${created.status} ${await created.text()}`);
    const pr = (await created.json()).id;

    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    page.setDefaultTimeout(120000);
    await page.goto(`${base}/login`);
    await page.fill('#username', 'admin');
    await page.fill('#password', PASSWORD);
    await Promise.all([page.waitForURL(`${base}/`), page.click('form.card button[type=submit]')]);

    const repo = `${base}/projects/TP/repos/test`;
    const pages = [
      [`file view, ${LINES.toLocaleString('en')} lines`, `${repo}/browse/src/big.rs`],
      [`file view at line 4,000 (\`#L4000-4010\`)`, `${repo}/browse/src/big.rs?at=refs/heads/main#L4000-4010`],
      [`blame, ${LINES.toLocaleString('en')} lines, ${HISTORY} commits`, `${repo}/browse/src/big.rs?blame=true`],
      [`commit page, ${LINES.toLocaleString('en')}-line diff`, `${repo}/commits/${genCommit}`],
      [`pull-request diff, one ${LINES.toLocaleString('en')}-line file`, `${repo}/pull-requests/${pr}/diff?path=src/gen.rs&show=1`],
      ['file history (`commits?path=`)', `${repo}/commits?path=src/big.rs`],
    ];
    const rows = {};
    for (const [name, url] of pages) {
      const first = await measure(page, url);
      // The first view may show the code plain while its highlighting finishes on the server
      // (it waits 400 ms for it): time until a view has it, then measure the highlighted page.
      // (Diffs have no note: a diff with no keyword span in it is plain.)
      const started = Date.now();
      const plain = () => page.evaluate(() => !!document.getElementById('highlight-pending') || (!!document.querySelector('.hl') && !document.querySelector('.hl span.k')));
      first.plain = await plain();
      while (await plain()) {
        if (Date.now() - started > 120000) throw new Error(`${url}: never highlighted`);
        await page.waitForTimeout(250);
        await page.reload();
      }
      first.highlightedAfter = Date.now() - started;
      const xs = [];
      for (let i = 0; i < RUNS; i++) xs.push(await measure(page, url));
      const m = (k) => median(xs.map((x) => x[k]));
      rows[name] = { first, ttfb: m('ttfb'), bytes: xs[0].bytes, dcl: m('dcl'), load: m('load'), nodes: xs[0].nodes, loads: xs.map((x) => Math.round(x.load)) };
    }
    const version = run(TROVE, ['--version']).trim();
    fs.writeFileSync(path.join(ROOT, 'bench/.work/code-pages.json'), JSON.stringify({ trove: TROVE, version, runs: RUNS, rows }, null, 1));
    const f = (x) => Math.round(x).toLocaleString('en');
    console.log(`${version} (${TROVE}); medians of ${RUNS} navigations in headless Chromium after a first one, ms from the start of each.\n`);
    console.log('| page | first visit: time to first byte / load event (code shown plain?) | highlighted on a view after (ms) | time to first byte | HTML bytes | DOM elements | DOMContentLoaded | load event (range) |');
    console.log('|---|---|---|---|---|---|---|---|');
    for (const [name, r] of Object.entries(rows)) {
      console.log(`| ${name} | ${f(r.first.ttfb)} / ${f(r.first.load)}${r.first.plain ? ' (plain)' : ''} | ${r.first.plain ? f(r.first.highlightedAfter) : '–'} | ${f(r.ttfb)} | ${r.bytes.toLocaleString('en')} | ${r.nodes.toLocaleString('en')} | ${f(r.dcl)} | **${f(r.load)}** (${f(Math.min(...r.loads))}–${f(Math.max(...r.loads))}) |`);
    }
  } finally {
    await browser.close();
    server.kill('SIGTERM');
  }
}

main().catch((e) => { console.error(e && e.stack || e); process.exit(1); });
