// End-to-end check of the shim's trace viewer in real headless Chromium (Debian's, driven by
// playwright-core, which downloads no browser). Started by tests/tests/viewer.rs once the
// spans are in the shim's store; it can be run by hand against any running shim:
//
//   node tests/browser/viewer.e2e.mjs --base http://127.0.0.1:9464 --trace <id> \
//     --root <span id> --root-name 'GET /checkout' --child <span id> --child-name GET \
//     [--error-trace <id>] [--screenshots docs/]
//
// Exit status: 0 when every check passed, 1 on a failed check, 2 on a timeout.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const OVERALL_LIMIT_MS = 90_000;
const STEP_LIMIT_MS = 10_000;
// Flags for a machine without network access: no component updates, sync or background
// requests, a fresh profile (below), no GPU.
const CHROMIUM_FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

const { values: args } = parseArgs({
  options: {
    base: { type: 'string' },
    trace: { type: 'string' },
    root: { type: 'string' },
    'root-name': { type: 'string' },
    child: { type: 'string' },
    'child-name': { type: 'string' },
    'error-trace': { type: 'string' },
    screenshots: { type: 'string' },
  },
});
for (const required of ['base', 'trace', 'root', 'root-name', 'child', 'child-name']) {
  if (!args[required]) {
    console.error(`missing --${required}`);
    process.exit(1);
  }
}

let checks = 0;
function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
  checks += 1;
}
function equal(actual, expected, message) {
  check(JSON.stringify(actual) === JSON.stringify(expected),
    `${message}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
}

const timer = setTimeout(() => {
  console.error(`viewer e2e: timed out after ${OVERALL_LIMIT_MS} ms`);
  process.exit(2);
}, OVERALL_LIMIT_MS);

const profile = mkdtempSync(join(tmpdir(), 'meshtrace-chromium-'));
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.MESHTRACE_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_FLAGS,
    viewport: { width: 1280, height: 760 },
    timeout: 30_000,
  });
  context.setDefaultTimeout(STEP_LIMIT_MS);
  await run(context.pages()[0] || await context.newPage());
  console.log(`viewer e2e: ${checks} checks passed`);
} catch (error) {
  console.error(`viewer e2e: ${error.stack || error}`);
  process.exitCode = 1;
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
  clearTimeout(timer);
}

async function run(page) {
  const base = new URL(args.base);
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
  });
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (url.origin !== base.origin && url.protocol !== 'data:') {
      problems.push(`request to another origin: ${request.url()}`);
    }
  });

  // 1. The list shows the trace by its root span, with its span count.
  await page.goto(new URL('/', base).href);
  const row = page.locator(`#traces tbody tr[data-trace-id="${args.trace}"]`);
  await row.waitFor();
  equal((await row.locator('.trace-link').textContent()).trim(), args['root-name'], 'root name in the list');
  equal((await row.locator('td').nth(4).textContent()).trim(), '2', 'span count in the list');
  check((await row.locator('.badge.error').count()) === 0, 'no error mark on a trace without errors');
  if (args['error-trace']) {
    const failed = page.locator(`#traces tbody tr[data-trace-id="${args['error-trace']}"]`);
    check(/1 error/.test(await failed.locator('.badge.error').textContent()), 'error mark on the failed trace');
  }
  await screenshot(page, 'viewer-list.png');

  // 2. Its waterfall: both spans, the filter's nested under the caller's.
  await row.locator('.trace-link').click();
  await waterfall(page);

  // 3. A span's details open on click, and the URL names the span.
  const child = page.locator(`#spans li[data-span-id="${args.child}"]`);
  await child.locator('.span-toggle').click();
  const details = child.locator('.span-details');
  await details.waitFor({ state: 'visible' });
  equal(await child.locator('.span-toggle').getAttribute('aria-expanded'), 'true', 'aria-expanded');
  const text = await details.textContent();
  for (const expected of ['http.request.method', 'KindServer', `Parent span id${args.root}`]) {
    check(text.includes(expected), `span details show ${expected}`);
  }
  check(page.url().endsWith(`#/trace/${args.trace}/${args.child}`), `URL names the span: ${page.url()}`);
  await screenshot(page, 'viewer-trace.png');

  // 4. The failed trace: its span shows the error status, the exception event and the link,
  // and the link leads to the linked trace.
  if (args['error-trace']) {
    await page.goto(new URL(`/#/trace/${args['error-trace']}`, base).href);
    const failed = page.locator('#spans > li').first();
    await failed.waitFor();
    check((await failed.locator('.span-label .badge.error').count()) === 1, 'error mark on the failed span');
    await failed.locator('.span-toggle').click();
    const shown = await failed.locator('.span-details').textContent();
    for (const expected of ['StatusError: payment service unavailable', 'exception', 'exception.type',
      `${args.trace} / ${args.root}`]) {
      check(shown.includes(expected), `failed span details show ${JSON.stringify(expected)}`);
    }
    await screenshot(page, 'viewer-error.png');
    await failed.locator('.links a').click();
    await page.locator(`#spans li[data-span-id="${args.root}"] .span-details`).waitFor({ state: 'visible' });
    check(page.url().endsWith(`#/trace/${args.trace}/${args.root}`), `link followed: ${page.url()}`);
  }

  // 5. Search by trace id from the list: a bad id is explained, a good one opens the trace.
  await page.goto(new URL('/#/', base).href);
  await page.locator('#traces tbody tr').first().waitFor();
  await page.fill('#lookup-id', 'not-a-trace-id');
  await page.press('#lookup-id', 'Enter');
  check((await page.locator('#lookup-error').textContent()).includes('32 hexadecimal'), 'bad id explained');
  await page.fill('#lookup-id', args.trace.toUpperCase());
  await page.press('#lookup-id', 'Enter');
  await waterfall(page);

  // 6. The status filter narrows the list.
  if (args['error-trace']) {
    await page.goto(new URL('/#/', base).href);
    await page.locator('#traces tbody tr').first().waitFor();
    await page.selectOption('#filters select[name="status"]', 'error');
    await page.click('#filters button[type="submit"]');
    await page.waitForFunction(() => location.hash.includes('status=error'));
    await page.locator(`#traces tbody tr[data-trace-id="${args['error-trace']}"]`).waitFor();
    await page.waitForFunction(() => document.querySelectorAll('#traces tbody tr').length === 1);
    checks += 1;
  }

  check(problems.length === 0, `no page errors or foreign requests: ${problems.join('; ')}`);
}

/** Waits for the waterfall of --trace and checks its rows: order, names, nesting. */
async function waterfall(page) {
  await page.locator(`#spans li[data-span-id="${args.child}"]`).waitFor();
  check(page.url().includes(`#/trace/${args.trace}`), `trace URL: ${page.url()}`);
  const rows = await page.$$eval('#spans > li', (items) => items.map((item) => ({
    id: item.dataset.spanId,
    parent: item.dataset.parentSpanId,
    depth: Number(item.dataset.depth),
    name: item.querySelector('.span-name').textContent,
    indent: parseFloat(getComputedStyle(item.querySelector('.span-label')).paddingLeft),
    barLeft: item.querySelector('.span-bar').getBoundingClientRect().left,
    visible: item.querySelector('.span-name').getBoundingClientRect().height > 0,
  })));
  equal(rows.map((r) => r.id), [args.root, args.child], 'waterfall rows, parent first');
  equal(rows.map((r) => r.name), [args['root-name'], args['child-name']], 'span names shown');
  check(rows.every((r) => r.visible), 'span names visible');
  equal(rows.map((r) => r.depth), [0, 1], 'nesting depth');
  equal(rows[1].parent, args.root, 'child row names its parent');
  check(rows[1].indent > rows[0].indent, `child indented under its parent (${rows[0].indent} < ${rows[1].indent})`);
  check(rows[1].barLeft >= rows[0].barLeft, 'child bar starts within its parent');
}

async function screenshot(page, name) {
  if (args.screenshots) await page.screenshot({ path: join(args.screenshots, name), fullPage: false });
}
