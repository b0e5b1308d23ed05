// A pull request's whole life in real headless Chromium, by two people at once: alice opens it
// from her branch with bob as reviewer, bob comments on a line of the side-by-side diff and
// asks for work, alice pushes a fix that moves the line, bob approves, alice squash-merges and
// deletes her branch. Then a second pull request goes the same way with the keyboard alone
// (Tab, Shift+Tab, Enter, Space; no clicks), and every pull-request page is checked with
// axe-core (a critical or serious violation fails the run).
//
// Run by crates/server/tests/it/web_ui.rs, which starts the server, makes alice and bob
// (write on the project), pushes the repository with real git, enables the squash strategy,
// runs this and then checks with git what the browser did. It sets:
//   TROVE_ROOT          the public root URL, context path included (no trailing slash)
//   TROVE_REPO          KEY/slug of the repository: main has src/main.rs (fn main, a greeting,
//                       println); TROVE_BRANCH changes src/main.rs in one commit (line 3 is
//                       `    let loud = greeting.to_uppercase();`); TROVE_KEYS_BRANCH adds
//                       docs/greeting.md in one commit
//   TROVE_ALICE, TROVE_ALICE_PASSWORD, TROVE_BOB, TROVE_BOB_PASSWORD
//   TROVE_BRANCH        alice's branch for the pointer flow; TROVE_KEYS_BRANCH for the keyboard's
//   TROVE_GIT_URL       the repository's clone URL with alice's credentials (her fix is pushed
//                       with real git from here)
//   TROVE_GIT_HOME      a HOME for git (its .gitconfig names the committer)
//   TROVE_SCREENSHOTS   directory for screenshots (optional)
// Exit status 0 when every step passed; the last line is "N passed, N failed".
'use strict';

const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const ROOT = process.env.TROVE_ROOT;
const [KEY, SLUG] = (process.env.TROVE_REPO || 'TP/test').split('/');
const ALICE = process.env.TROVE_ALICE || 'alice';
const ALICE_PASSWORD = process.env.TROVE_ALICE_PASSWORD;
const BOB = process.env.TROVE_BOB || 'bob';
const BOB_PASSWORD = process.env.TROVE_BOB_PASSWORD;
const BRANCH = process.env.TROVE_BRANCH || 'feature/shout';
const KEYS_BRANCH = process.env.TROVE_KEYS_BRANCH || 'docs';
const GIT_URL = process.env.TROVE_GIT_URL;
const GIT_HOME = process.env.TROVE_GIT_HOME || os.homedir();
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

/// A step whose failure is counted but does not stop the flow (accessibility checks: one page's
/// findings should not hide the next page's).
async function check(name, fn) {
  try {
    await step(name, fn);
  } catch (_) { /* counted and printed by step() */ }
}

/// A screenshot of the viewport, with the pointer parked where it hovers nothing.
async function shot(page, name) {
  if (!SHOTS) return;
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.mouse.move(1275, 795);
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: false });
}

/// axe-core on the page as it is now. It is injected through the DevTools protocol, which the
/// page's Content-Security-Policy does not govern, so the policy stays as strict as it is.
/// Critical and serious violations fail; lesser ones are printed.
async function a11y(page, what) {
  await check(`axe: ${what} has no critical or serious violations`, async () => {
    await page.evaluate(AXE);
    const r = await page.evaluate(() => axe.run(document, { resultTypes: ['violations'] }));
    const describe = (v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.length}×: ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')})` +
      (v.nodes[0] && v.nodes[0].failureSummary ? `\n       ${v.nodes[0].failureSummary.replace(/\n/g, ' / ')}` : '');
    const bad = r.violations.filter((v) => v.impact === 'critical' || v.impact === 'serious');
    for (const v of r.violations.filter((v) => !bad.includes(v))) console.log(`     note (${what}): ${describe(v)}`);
    assert.equal(bad.length, 0, `${page.url()}\n     ${bad.map(describe).join('\n     ')}`);
  });
}

/// Presses Tab (or Shift+Tab with `back`) until the focused element matches `selector`, as a
/// keyboard user looks for a control; fails after `max` presses. Checks that the focus is
/// visible where it lands (an outline or a box shadow).
async function focusByTab(page, selector, max = 200, back = false) {
  const at = () => page.evaluate((s) => !!document.activeElement && document.activeElement.matches(s), selector);
  for (let i = 0; i <= max; i++) {
    if (await at()) {
      const ring = await page.evaluate(() => {
        const s = getComputedStyle(document.activeElement);
        return (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0) || s.boxShadow !== 'none';
      });
      assert.ok(ring, `the focused ${selector} shows no focus ring`);
      return i;
    }
    await page.keyboard.press(back ? 'Shift+Tab' : 'Tab');
  }
  const where = await page.evaluate(() => document.activeElement && document.activeElement.outerHTML.slice(0, 120));
  throw new Error(`${selector} not reached in ${max} presses of ${back ? 'Shift+Tab' : 'Tab'} (focus is on ${where})`);
}

async function login(page, user, password) {
  await page.goto(ROOT + '/login');
  await page.fill('#username', user);
  await page.fill('#password', password);
  await Promise.all([page.waitForURL(ROOT + '/'), page.click('form.card button[type=submit]')]);
}

function git(args, cwd) {
  const env = { PATH: process.env.PATH, HOME: GIT_HOME, GIT_CONFIG_NOSYSTEM: '1', GIT_TERMINAL_PROMPT: '0', LANG: 'C' };
  return execFileSync('git', args, { cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

/// The activity's actions, oldest first.
const actions = (page) => page.$$eval('ol#activity li.activity', (l) => l.map((li) => li.getAttribute('data-action')));

async function main() {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'trove-pr-flow-'));
  try {
    const context = () => browser.newContext({ viewport: { width: 1280, height: 800 } });
    const [ca, cb] = [await context(), await context()];
    const alice = await ca.newPage();
    const bob = await cb.newPage();
    for (const p of [alice, bob]) p.setDefaultTimeout(20000);
    // The page script must never trip the CSP or throw.
    const problems = [];
    for (const [who, p] of [['alice', alice], ['bob', bob]]) {
      p.on('pageerror', (e) => problems.push(`${who}: ${e.message}`));
      p.on('console', (m) => { if (m.type() === 'error') problems.push(`${who}: ${m.text()} (${m.location().url})`); });
      p.on('response', (r) => { if (r.status() >= 400) problems.push(`${who}: ${r.status()} ${r.request().method()} ${r.url()}`); });
    }

    await step('alice and bob log in, each in a browser of their own', async () => {
      await login(alice, ALICE, ALICE_PASSWORD);
      await login(bob, BOB, BOB_PASSWORD);
    });

    await step('the list says there are no pull requests yet', async () => {
      const resp = await alice.goto(`${REPO}/pull-requests`);
      assert.equal(resp.status(), 200);
      assert.ok(await alice.isVisible('#no-pull-requests'));
      assert.equal(await alice.getAttribute('nav#pr-state-filter a.on', 'data-state'), 'OPEN');
    });
    await a11y(alice, 'the empty list');

    // ---- alice opens a pull request from the compare page ----

    let pr;
    await step('alice compares her branch with main and sees its one commit', async () => {
      await alice.goto(`${REPO}/compare`);
      assert.ok(alice.url().startsWith(`${REPO}/compare/commits`), alice.url());
      await alice.fill('#source-branch', BRANCH);
      assert.equal(await alice.inputValue('#target-branch'), 'main', 'the default branch is the target');
      await Promise.all([alice.waitForURL(/sourceBranch=/), alice.click('#compare-form button[type=submit]')]);
      assert.equal((await alice.textContent('#compare-count')).trim(), '1 commit');
      assert.equal(await alice.locator('#compare-commits tr.commit-row').count(), 1);
    });
    await a11y(alice, 'the compare page (commits)');

    await step('the compare diff shows the change', async () => {
      await alice.click('#compare-tab-diff');
      await alice.waitForSelector('#compare-diff section.pr-file[data-path="src/main.rs"]');
    });
    await a11y(alice, 'the compare page (diff)');

    await step('"Create pull request" opens the form with the commit as its title', async () => {
      await Promise.all([alice.waitForURL(/\/pull-requests\?create&sourceBranch=/), alice.click('a#compare-create')]);
      assert.equal(await alice.inputValue('#source-branch'), BRANCH, 'the branches by their short names');
      assert.equal(await alice.inputValue('#target-branch'), 'main');
      assert.equal(await alice.inputValue('#title'), 'Shout the greeting');
      assert.match(await alice.inputValue('#description'), /Upper case/);
      assert.ok(await alice.isVisible(`#reviewers #reviewer-${BOB}`), 'bob may review');
      assert.equal(await alice.locator(`#reviewer-${ALICE}`).count(), 0, 'the author is not offered as a reviewer');
    });
    await a11y(alice, 'the create form');

    await step('alice picks bob as reviewer and creates it', async () => {
      await alice.check(`#reviewer-${BOB}`);
      await alice.fill('#description', 'Upper case, so that it is heard.\n\n* one commit\n* `to_uppercase`');
      await alice.evaluate(() => document.activeElement.blur());
      await alice.evaluate(() => document.querySelector('h2').scrollIntoView());
      await shot(alice, 'pr-create');
      await Promise.all([alice.waitForURL(/\/pull-requests\/\d+\/overview$/), alice.click('#create-button')]);
      pr = Number(await alice.getAttribute('#pr-head', 'data-pr'));
      assert.ok(pr > 0);
      assert.equal((await alice.textContent('#pr-title-text')).trim(), 'Shout the greeting');
      assert.ok(await alice.isVisible('#pr-state.state-open'));
      assert.equal(await alice.getAttribute(`ul#pr-reviewers li[data-user=${BOB}]`, 'data-status'), 'UNAPPROVED');
      assert.deepEqual(await actions(alice), ['OPENED']);
      assert.equal(await alice.locator('#review-form').count(), 0, 'the author does not review');
      assert.equal(await alice.inputValue('#checkout-command'), `git fetch origin refs/pull-requests/${pr}/from`);
    });
    await a11y(alice, 'the overview (author, open)');

    await step('the list shows it with bob waiting to review', async () => {
      await alice.goto(`${REPO}/pull-requests`);
      const row = alice.locator(`table#pull-requests tr.pr-row[data-pr="${pr}"]`);
      assert.equal(await row.getAttribute('data-state'), 'OPEN');
      assert.equal((await row.locator('a.pr-title').textContent()).trim(), 'Shout the greeting');
      assert.equal(await row.locator(`span.reviewer[data-user=${BOB}]`).getAttribute('data-status'), 'UNAPPROVED');
    });
    await a11y(alice, 'the list');

    // ---- bob reviews ----

    await step('bob finds it on his dashboard, waiting on his review', async () => {
      await bob.goto(ROOT + '/dashboard');
      const row = bob.locator(`#prs-reviewing tr.pr-row[data-pr="${pr}"]`);
      assert.equal(await row.count(), 1);
      assert.equal(await bob.locator('#prs-authored tr.pr-row').count(), 0);
    });
    await a11y(bob, 'the dashboard');

    await step('bob opens it and goes to the diff', async () => {
      await Promise.all([bob.waitForURL(/\/overview$/), bob.click(`#prs-reviewing tr.pr-row[data-pr="${pr}"] a.pr-title`)]);
      assert.equal(await bob.getAttribute('#my-review-status', 'data-status'), 'UNAPPROVED');
      await a11y(bob, 'the overview (reviewer, open)');
      await Promise.all([bob.waitForURL(/\/diff$/), bob.click('#tab-diff')]);
      await bob.waitForSelector('nav#file-tree li.file[data-path="src/main.rs"] a.file-link');
      await bob.waitForSelector('section.pr-file[data-path="src/main.rs"] table.unified');
    });
    await a11y(bob, 'the diff (unified)');

    await step('bob switches to side by side', async () => {
      await Promise.all([bob.waitForURL(/view=split/), bob.click('#view-split')]);
      assert.equal(await bob.getAttribute('#view-split', 'aria-current'), 'true');
      assert.ok((await bob.locator('section.pr-file[data-path="src/main.rs"] tr.pair').count()) > 0);
    });
    await a11y(bob, 'the diff (side by side)');

    const FILE = 'section.pr-file[data-path="src/main.rs"]';
    const LINE3 = `${FILE} a.cmt[data-line="3"][data-file-type="TO"]`;
    let commentId;
    await step('bob comments on line 3 of the new side', async () => {
      assert.equal(await bob.getAttribute(LINE3, 'aria-label'), 'Comment on line 3');
      assert.equal(await bob.getAttribute(LINE3, 'data-line-type'), 'ADDED');
      await bob.click(LINE3);
      // The script opens the form under the line, focused, without a page load.
      const area = bob.locator(`${FILE} tr.comment-form-row textarea[name=text]`);
      await area.waitFor();
      assert.ok(await area.evaluate((t) => t === document.activeElement), 'the form takes the focus');
      assert.ok(bob.url().endsWith('/diff?view=split'), 'no page load');
      await area.fill('Why `loud`? Call it `shouted`.');
      await Promise.all([bob.waitForURL(/#comment-\d+$/), bob.click(`${FILE} tr.comment-form-row button[type=submit]`)]);
      commentId = bob.url().match(/#comment-(\d+)$/)[1];
      const c = bob.locator(`article.comment#comment-${commentId}`);
      assert.match(await c.textContent(), /Call it shouted/);
      // Under the line it was made on, still side by side.
      assert.ok(bob.url().includes('view=split'), bob.url());
      const row = await c.evaluate((el) => el.closest('tr.comments').previousElementSibling.textContent);
      assert.match(row, /let loud = greeting\.to_uppercase\(\);/);
      await c.evaluate((el) => el.scrollIntoView({ block: 'center' }));
      await shot(bob, 'pr-diff-split');
    });
    await a11y(bob, 'the diff (side by side, with a comment)');

    await step('bob marks it as needing work', async () => {
      await Promise.all([bob.waitForURL(/\/overview$/), bob.click('#tab-overview')]);
      await Promise.all([bob.waitForURL(/done=needs-work/), bob.click('#needs-work-button')]);
      assert.equal(await bob.getAttribute('#my-review-status', 'data-status'), 'NEEDS_WORK');
      assert.equal(await bob.getAttribute(`ul#pr-reviewers li[data-user=${BOB}]`, 'data-status'), 'NEEDS_WORK');
      assert.ok(await bob.isVisible(`div.comment#comment-${commentId}`), 'the comment is in the activity');
    });

    // ---- alice pushes a fix that moves the commented line ----

    await step('alice pushes a fix with real git; the line moves down one', async () => {
      const dir = path.join(work, 'alice');
      git(['clone', '-q', '--branch', BRANCH, GIT_URL, dir], work);
      const file = path.join(dir, 'src/main.rs');
      fs.writeFileSync(file, '// Says hello, loudly.\n' + fs.readFileSync(file, 'utf8'));
      git(['commit', '-q', '-am', 'Say what main does'], dir);
      git(['push', '-q', 'origin', BRANCH], dir);
    });

    await step('the pull request is rescoped and bob sees the push in the activity', async () => {
      const deadline = Date.now() + 20000;
      for (;;) {
        await bob.goto(`${REPO}/pull-requests/${pr}/overview`);
        if ((await actions(bob)).includes('RESCOPED')) break;
        assert.ok(Date.now() < deadline, 'no RESCOPED activity after the push');
        await bob.waitForTimeout(200);
      }
      assert.equal(await bob.getAttribute('li.activity[data-action=RESCOPED]', 'data-added'), '1');
    });

    let placement;
    await step('the comment follows its line (or says it is outdated)', async () => {
      await bob.goto(`${REPO}/pull-requests/${pr}/diff?view=split`);
      const c = bob.locator(`article.comment#comment-${commentId}`);
      await c.waitFor();
      placement = await c.evaluate((el) => {
        const thread = el.closest('.thread');
        if (thread.classList.contains('outdated')) return { outdated: thread.querySelector('.outdated-note').textContent };
        const row = el.closest('tr.comments').previousElementSibling;
        return { row: row.textContent, line: row.querySelector('td.ln[id$="-T4"]') ? 4 : null };
      });
      if (placement.outdated !== undefined) {
        assert.match(placement.outdated, /line 3 of src\/main\.rs/);
      } else {
        assert.match(placement.row, /let loud = greeting\.to_uppercase\(\);/);
        assert.equal(placement.line, 4, 'now on line 4');
      }
      console.log(`     the comment ${placement.outdated !== undefined ? 'is shown as outdated' : 'moved with its line to line 4'}`);
    });

    await step('bob approves', async () => {
      await bob.goto(`${REPO}/pull-requests/${pr}/overview`);
      await Promise.all([bob.waitForURL(/done=approved/), bob.click('#approve-button')]);
      assert.equal(await bob.getAttribute('#my-review-status', 'data-status'), 'APPROVED');
      assert.ok(await bob.isVisible('#unapprove-button'));
      assert.equal(await bob.locator('#approve-button').count(), 0);
    });

    await step('the commits tab lists both commits', async () => {
      await bob.click('#tab-commits');
      await bob.waitForSelector('#pr-commits');
      assert.equal(await bob.locator('#pr-commits tr.commit-row').count(), 2);
      assert.equal((await bob.textContent('#pr-commit-count')).trim(), '2 commits');
    });
    await a11y(bob, 'the commits tab');

    // ---- alice merges ----

    await step('alice squash-merges and deletes her branch', async () => {
      await alice.goto(`${REPO}/pull-requests/${pr}/overview`);
      assert.equal(await alice.getAttribute('#pr-merge', 'data-can-merge'), 'true');
      assert.equal(await alice.locator('ul#merge-vetoes li.veto').count(), 0);
      assert.equal(await alice.getAttribute(`ul#pr-reviewers li[data-user=${BOB}]`, 'data-status'), 'APPROVED');
      const offered = await alice.$$eval('#merge-strategy option', (o) => o.map((x) => x.value));
      assert.deepEqual(offered.sort(), ['no-ff', 'squash']);
      await a11y(alice, 'the overview (author, approved, ready to merge)');
      await alice.selectOption('#merge-strategy', 'squash');
      await alice.check('#delete-source');
      await Promise.all([alice.waitForURL(/done=merged/), alice.click('#merge-button')]);
      assert.ok(await alice.isVisible('#pr-state.state-merged'));
      assert.equal((await alice.textContent('#pr-state')).trim(), 'MERGED');
      assert.match(await alice.textContent('#merged-note'), /Merged into main as [0-9a-f]{12}/);
    });

    await step('the activity tells the story', async () => {
      const seen = await actions(alice);
      for (const a of ['OPENED', 'COMMENTED', 'REVIEWED', 'RESCOPED', 'APPROVED', 'MERGED']) {
        assert.ok(seen.includes(a), `${a} in ${seen}`);
      }
      assert.ok(seen.indexOf('OPENED') < seen.indexOf('COMMENTED') && seen.indexOf('REVIEWED') < seen.indexOf('RESCOPED') &&
        seen.indexOf('RESCOPED') < seen.indexOf('APPROVED') && seen.indexOf('APPROVED') < seen.indexOf('MERGED'), `in order: ${seen}`);
      assert.match(await alice.textContent('li.activity[data-action=MERGED]'), /\(Squash\)/);
      await alice.evaluate(() => document.getElementById('pr-head').scrollIntoView());
      await shot(alice, 'pr-overview');
    });
    await a11y(alice, 'the overview (merged)');

    await step('merged, it leaves the open list and bob\'s dashboard', async () => {
      await alice.goto(`${REPO}/pull-requests`);
      assert.ok(await alice.isVisible('#no-pull-requests'));
      await alice.click('nav#pr-state-filter a[data-state=MERGED]');
      await alice.waitForSelector(`table#pull-requests tr.pr-row[data-pr="${pr}"][data-state=MERGED]`);
      await bob.goto(ROOT + '/dashboard');
      assert.equal(await bob.locator(`#your-work tr.pr-row[data-pr="${pr}"]`).count(), 0);
    });

    // ---- the same with the keyboard alone ----

    let kpr;
    await step('keyboard: alice fills the create form and creates a pull request', async () => {
      await alice.goto(`${REPO}/pull-requests?create`);
      await focusByTab(alice, '#source-branch');
      await alice.keyboard.type(KEYS_BRANCH);
      await focusByTab(alice, '#compare-button');
      await Promise.all([alice.waitForURL(/sourceBranch=/), alice.keyboard.press('Enter')]);
      await focusByTab(alice, '#title');
      assert.equal(await alice.inputValue('#title'), 'Document the greeting');
      await alice.keyboard.press('End');
      await alice.keyboard.type(' for readers');
      await focusByTab(alice, `#reviewer-${BOB}`);
      await alice.keyboard.press('Space');
      assert.ok(await alice.isChecked(`#reviewer-${BOB}`));
      // Back up to the description with Shift+Tab, then forward to the button.
      await focusByTab(alice, '#description', 20, true);
      await alice.keyboard.type('Written with the keyboard only.');
      await focusByTab(alice, '#create-button');
      await Promise.all([alice.waitForURL(/\/overview$/), alice.keyboard.press('Enter')]);
      kpr = Number(await alice.getAttribute('#pr-head', 'data-pr'));
      assert.equal((await alice.textContent('#pr-title-text')).trim(), 'Document the greeting for readers');
      assert.match(await alice.textContent('#pr-description'), /Written with the keyboard only\./);
      assert.equal(await alice.getAttribute(`ul#pr-reviewers li[data-user=${BOB}]`, 'data-status'), 'UNAPPROVED');
    });

    await step('keyboard: bob comments on a diff line (Escape closes a form and gives the focus back)', async () => {
      await bob.goto(`${REPO}/pull-requests/${kpr}/diff`);
      const file = 'section.pr-file[data-path="docs/greeting.md"]';
      await focusByTab(bob, `${file} a.cmt[data-line="3"][data-file-type="TO"]`);
      await bob.keyboard.press('Enter');
      await bob.waitForSelector(`${file} tr.comment-form-row textarea`);
      assert.ok(await bob.evaluate(() => document.activeElement.matches('tr.comment-form-row textarea')), 'focus in the form');
      await bob.keyboard.press('Escape');
      assert.equal(await bob.locator(`${file} tr.comment-form-row`).count(), 0);
      assert.ok(await bob.evaluate((s) => document.activeElement.matches(s), `${file} a.cmt[data-line="3"][data-file-type="TO"]`), 'focus back on the line');
      await focusByTab(bob, `${file} a.cmt[data-line="1"][data-file-type="TO"]`, 20, true);
      await bob.keyboard.press('Enter');
      await bob.waitForSelector(`${file} tr.comment-form-row textarea`);
      await bob.keyboard.type('A heading. Good.');
      await focusByTab(bob, `${file} tr.comment-form-row button[type=submit]`, 5);
      await Promise.all([bob.waitForURL(/#comment-\d+$/), bob.keyboard.press('Enter')]);
      assert.match(await bob.textContent(`article.comment#${bob.url().split('#')[1]}`), /A heading\. Good\./);
    });

    await step('keyboard: bob approves', async () => {
      await bob.goto(`${REPO}/pull-requests/${kpr}/overview`);
      await focusByTab(bob, '#approve-button');
      await Promise.all([bob.waitForURL(/done=approved/), bob.keyboard.press('Enter')]);
      assert.equal(await bob.getAttribute('#my-review-status', 'data-status'), 'APPROVED');
    });

    await step('the list of all pull requests shows one open and approved, one merged', async () => {
      await alice.goto(`${REPO}/pull-requests?state=ALL`);
      assert.equal(await alice.getAttribute(`tr.pr-row[data-pr="${kpr}"]`, 'data-state'), 'OPEN');
      assert.equal(await alice.getAttribute(`tr.pr-row[data-pr="${kpr}"] span.reviewer[data-user=${BOB}]`, 'data-status'), 'APPROVED');
      assert.equal(await alice.getAttribute(`tr.pr-row[data-pr="${pr}"]`, 'data-state'), 'MERGED');
      await shot(alice, 'pr-list');
    });
    await a11y(alice, 'the list (all)');

    await step('keyboard: alice merges (the default strategy) and deletes the branch', async () => {
      await alice.goto(`${REPO}/pull-requests/${kpr}/overview`);
      await focusByTab(alice, '#merge-strategy');
      assert.equal(await alice.inputValue('#merge-strategy'), 'no-ff', 'the default is chosen');
      await focusByTab(alice, '#delete-source');
      await alice.keyboard.press('Space');
      assert.ok(await alice.isChecked('#delete-source'));
      await focusByTab(alice, '#merge-button');
      await Promise.all([alice.waitForURL(/done=merged/), alice.keyboard.press('Enter')]);
      assert.ok(await alice.isVisible('#pr-state.state-merged'));
      assert.deepEqual((await actions(alice)).filter((a) => a !== 'COMMENTED'), ['OPENED', 'APPROVED', 'MERGED']);
    });

    await step('both are merged now', async () => {
      await alice.goto(`${REPO}/pull-requests?state=MERGED`);
      assert.equal(await alice.locator('table#pull-requests tr.pr-row[data-state=MERGED]').count(), 2);
    });

    await step('no page script error and no CSP violation in either browser', async () => {
      assert.deepEqual(problems, []);
    });
    await ca.close();
    await cb.close();
  } finally {
    await browser.close();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main()
  .catch(() => { if (!failed) failed++; })
  .finally(() => {
    console.log(`${passed} passed, ${failed} failed`);
    process.exit(failed ? 1 : 0);
  });
