// End-to-end test of the playground in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core). Run by web/tests/run.sh, which serves web/pkg and sets BASE_URL.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CANARY = join(ROOT, 'test-data', 'canary');
const SCREENSHOT = join(ROOT, 'docs', 'playground.png');
const BASE_URL = process.env.BASE_URL;
const WAIT = { timeout: 15000 };

let context, page, profile;
const pageErrors = [];

before(async () => {
  assert.ok(BASE_URL, 'BASE_URL is not set (run web/tests/run.sh)');
  profile = await mkdtemp(join(tmpdir(), 'revinject-web-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    viewport: { width: 1400, height: 980 },
    timeout: 60000,
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });
});

after(async () => {
  await context?.close();
  if (profile) await rm(profile, { recursive: true, force: true });
});

async function open() {
  await page.goto(new URL('index.html', BASE_URL).href);
  await page.waitForSelector('body[data-ready="true"]', WAIT);
  await page.waitForSelector('#decisions tbody tr', WAIT);
}

/** The decision table's rows: [revision, istio version, rule, injected, reason, warnings]. */
async function rows() {
  return page.$$eval('#decisions tbody tr', (trs) =>
    trs.map((tr) => [...tr.cells].map((c) => c.textContent.trim())));
}

/** The decision table as {revision: [rule, injected, reason, warnings]}. */
async function decisions() {
  return Object.fromEntries((await rows()).map(([rev, , ...rest]) => [rev, rest]));
}

/** Each revision's Istio version, as the table shows it. */
async function versions() {
  return Object.fromEntries((await rows()).map(([rev, version]) => [rev, version]));
}

/** Click Evaluate and wait until `revision` is the (only) injector in the summary. */
async function evaluateExpecting(summary) {
  await page.click('#evaluate');
  await page.waitForFunction((s) => document.getElementById('summary').textContent.includes(s), summary, WAIT);
}

test('the prefilled canary example: asm-1240-1 injects, asm-1233-2 does not', async () => {
  await open();
  const table = await decisions();
  assert.deepEqual(Object.keys(table), ['asm-1233-2 (default)', 'asm-1240-1']);
  assert.deepEqual(await versions(), { 'asm-1233-2 (default)': '1.23.3', 'asm-1240-1': '1.24.0' });
  assert.deepEqual(table['asm-1240-1'].slice(0, 2), ['rev.namespace', 'yes']);
  assert.match(table['asm-1240-1'][2], /selected by webhook rev\.namespace of revision asm-1240-1/);
  assert.deepEqual(table['asm-1233-2 (default)'].slice(0, 2), ['none', 'no']);
  assert.deepEqual([table['asm-1240-1'][3], table['asm-1233-2 (default)'][3]], ['—', '—']);
  assert.match(await page.textContent('#summary'), /Revision asm-1240-1 injects this pod/);
  assert.equal(await page.textContent('#injector'), 'asm-1240-1');

  // The diff adds the sidecar; the patch tab holds RFC 6902 operations.
  const added = await page.$$eval('#diff tr.added td:last-child', (tds) => tds.map((t) => t.textContent));
  assert.ok(added.some((l) => l.includes('istio-proxy')), 'the diff adds istio-proxy');
  assert.ok(added.some((l) => l.includes('istio.io/rev: asm-1240-1')), 'the diff adds the revision annotation');
  assert.ok(added.some((l) => l.includes('proxyv2:1.24.0')), "the diff adds asm-1240-1's own 1.24.0 proxy");
  await page.click('[data-tab="patch"]');
  const patch = JSON.parse(await page.textContent('#tab-patch'));
  assert.ok(patch.length > 0 && patch.every((op) => ['add', 'replace', 'remove'].includes(op.op)));
  await page.click('[data-tab="diff"]');
});

test('entering the seed canary files step by step', async () => {
  await open();
  const review = JSON.parse(await readFile(join(CANARY, 'request.json'), 'utf8'));
  await page.fill('#revision-0', await readFile(join(CANARY, 'settings-old.yaml'), 'utf8'));
  await page.fill('#revision-1', await readFile(join(CANARY, 'settings-new.yaml'), 'utf8'));
  await page.fill('#namespace', 'shop');
  await page.fill('#pod', JSON.stringify(review.request.object, null, 2));

  // 1. Before the upgrade the namespace names the old revision.
  await page.fill('#namespace-labels', 'istio.io/rev=asm-1233-2');
  await evaluateExpecting('Revision asm-1233-2 (default) injects');
  let table = await decisions();
  assert.deepEqual(table['asm-1233-2 (default)'].slice(0, 2), ['rev.namespace', 'yes']);
  assert.deepEqual(table['asm-1240-1'].slice(0, 2), ['none', 'no']);

  // 2. Relabelled: new pods move to asm-1240-1.
  await page.fill('#namespace-labels', 'istio.io/rev: asm-1240-1');
  await evaluateExpecting('Revision asm-1240-1 injects');
  table = await decisions();
  assert.deepEqual(table['asm-1240-1'].slice(0, 2), ['rev.namespace', 'yes']);
  assert.deepEqual(table['asm-1233-2 (default)'].slice(0, 2), ['none', 'no']);

  // 3. A leftover istio-injection=enabled wins for the default revision, with a warning.
  await page.fill('#namespace-labels', 'istio.io/rev=asm-1240-1\nistio-injection=enabled');
  await evaluateExpecting('Revision asm-1233-2 (default) injects');
  table = await decisions();
  assert.deepEqual(table['asm-1233-2 (default)'].slice(0, 2), ['namespace', 'yes']);
  assert.deepEqual(table['asm-1240-1'].slice(0, 2), ['none', 'no']);
  assert.match(table['asm-1233-2 (default)'][3], /IST0123/);
  assert.equal(table['asm-1240-1'][3], '—');
});

test('bad YAML is shown next to its field, and clears when fixed', async () => {
  await open();
  await page.fill('#pod', 'kind: Pod\nmetadata: {name: broken\n');
  await page.fill('#revision-1', 'revision: [asm-1240-1');
  await page.click('#evaluate');
  const podError = page.locator('#error-pod');
  await podError.waitFor({ state: 'visible', ...WAIT });
  assert.match(await podError.textContent(), /not valid YAML/);
  // Next to the field: the error box directly follows the pod textarea, which is marked.
  assert.equal(await page.$eval('#pod', (t) => t.nextElementSibling.id), 'error-pod');
  assert.equal(await page.$eval('#pod', (t) => t.classList.contains('invalid')), true);
  const revError = page.locator('[id="error-revisions[1]"]');
  assert.match(await revError.textContent(), /not valid YAML/);
  assert.equal(await page.textContent('[id="error-revisions[0]"]'), '');
  assert.match(await page.textContent('#summary'), /Fix the highlighted inputs/);
  assert.equal(await page.$eval('#outputs', (o) => o.classList.contains('stale')), true);

  await page.fill('#revision-1', 'revision: asm-1240-1');
  await page.fill('#pod', 'metadata: {name: fixed}\nspec: {containers: [{name: app, image: app}]}');
  await evaluateExpecting('Revision asm-1240-1 injects');
  await podError.waitFor({ state: 'hidden', ...WAIT });
  assert.equal(await page.$eval('#pod', (t) => t.classList.contains('invalid')), false);
  assert.equal(await page.$eval('#outputs', (o) => o.classList.contains('stale')), false);
});

test('screenshot of the prefilled page', async () => {
  await open();
  await mkdir(dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  const png = await readFile(SCREENSHOT);
  assert.equal(png.subarray(1, 4).toString(), 'PNG');
  assert.deepEqual(pageErrors, [], 'no JavaScript errors on the page');
});
