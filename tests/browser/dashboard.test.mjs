// End-to-end test of the operator dashboard in headless Chromium.
//
// Starts the real `tenantry serve` (target/debug/tenantry) on a free loopback port with a
// temporary TOML config (SQLite, orgs on, the test-hostile org resolver, an admin token),
// drives traffic through the admin API, and checks what the page shows and that its
// actions work. Run by scripts/test.sh after the cargo tests (which build the binary and
// scripts/build-plugins.sh the plugins):
//
//   node --test tests/browser/dashboard.test.mjs
//
// TENANTRY_UPDATE_SCREENSHOT=1 also writes docs/dashboard.png (the README's screenshot).
// TENANTRY_BIN and CHROMIUM override the binary and the browser.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = process.env.TENANTRY_BIN || join(ROOT, 'target/debug/tenantry');
const PLUGINS = join(ROOT, 'target/plugins');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const UPDATE_SCREENSHOT = ['1', 'true', 'yes'].includes(process.env.TENANTRY_UPDATE_SCREENSHOT || '');
const TOKEN = 'dashboard-test-token-5f1c';
// The hostile resolver's `unavailable` answer carries this password in a URL: it must be
// masked everywhere.
const SECRET = 'hunter2';

const sha256 = (path) => createHash('sha256').update(readFileSync(path)).digest('hex');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const ctx = {
  dir: null,
  server: null,
  serverLog: '',
  base: null,
  browser: null,
  page: null,
  pageErrors: [],
  cspViolations: [],
  hostileSha: null,
  patternSha: null,
};

// ---------------------------------------------------------------- helpers

async function freePort() {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  srv.close();
  await once(srv, 'close');
  return port;
}

async function api(method, path, { token = TOKEN, body, type } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (type) headers['Content-Type'] = type;
  const res = await fetch(ctx.base + path, { method, headers, body });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, json, text };
}

/** Retry `check` (an async assertion) until it passes or `timeout` ms have gone by. */
async function eventually(what, check, timeout = 10000) {
  const end = Date.now() + timeout;
  for (;;) {
    try {
      return await check();
    } catch (e) {
      if (Date.now() > end) {
        e.message = `${what} (after ${timeout} ms): ${e.message}`;
        throw e;
      }
    }
    await sleep(150);
  }
}

const text = async (selector) => ((await ctx.page.locator(selector).first().textContent()) || '').trim();
const slot = (field) => `#slots [data-slot="org-resolver"] [data-field="${field}"]`;

async function startServer() {
  ctx.dir = mkdtempSync(join(tmpdir(), 'tenantry-dashboard-'));
  const config = join(ctx.dir, 'tenantry.toml');
  writeFileSync(
    config,
    [
      `database-url = "sqlite://${ctx.dir}/{org}.db"`,
      'orgs = true',
      '[resolve.retry]',
      'attempts = 1',
      '[resolve.breaker]',
      'failure-threshold = 3',
      'cool-down-ms = 600000',
      '[plugins.org-resolver]',
      `path = "${join(PLUGINS, 'test-hostile.wasm')}"`,
      'grants = ["log", "config"]',
      'samples = ["acme"]',
      '',
    ].join('\n'),
  );
  const port = await freePort();
  ctx.base = `http://127.0.0.1:${port}`;
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('TENANTRY_') && k !== 'DATABASE_URL'),
  );
  env.TENANTRY_ADMIN_TOKEN = TOKEN;
  env.RUST_LOG = 'warn';
  ctx.server = spawn(BIN, ['--config', config, 'serve', '--listen', `127.0.0.1:${port}`], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  ctx.server.stderr.setEncoding('utf8');
  ctx.server.stderr.on('data', (d) => {
    ctx.serverLog = (ctx.serverLog + d.replace(/\x1b\[[0-9;]*m/g, '')).slice(-8000);
  });
  const deadline = Date.now() + 30000;
  for (;;) {
    if (ctx.server.exitCode !== null) {
      throw new Error(`tenantry serve exited with ${ctx.server.exitCode}:\n${ctx.serverLog}`);
    }
    try {
      const res = await fetch(`${ctx.base}/health`);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`tenantry serve did not start:\n${ctx.serverLog}`);
    await sleep(100);
  }
}

async function stopServer() {
  const child = ctx.server;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  await exited;
}

/** Health checks through the admin API: each resolves the org (cache hit after the first). */
async function touch(org, times = 1) {
  for (let i = 0; i < times; i++) await api('GET', `/orgs/${org}/health`, { token: null });
}

/** A test step; on failure the server's log is added to the error. */
function step(name, fn) {
  test(name, { timeout: 90000 }, async () => {
    try {
      await fn();
    } catch (e) {
      if (ctx.serverLog) e.message += `\n--- tenantry serve log (tail) ---\n${ctx.serverLog}`;
      if (ctx.pageErrors.length) e.message += `\n--- page errors ---\n${ctx.pageErrors.join('\n')}`;
      throw e;
    }
  });
}

// ---------------------------------------------------------------- setup

before(async () => {
  for (const [what, path, how] of [
    ['tenantry binary', BIN, 'cargo build -p tenantry'],
    ['test-hostile plugin', join(PLUGINS, 'test-hostile.wasm'), 'scripts/build-plugins.sh'],
    ['pattern plugin', join(PLUGINS, 'pattern.wasm'), 'scripts/build-plugins.sh'],
    ['Chromium', CHROMIUM, 'scripts/install-browser-test-deps.sh'],
  ]) {
    assert.ok(existsSync(path), `${what} missing at ${path}: run ${how}`);
  }
  ctx.hostileSha = sha256(join(PLUGINS, 'test-hostile.wasm'));
  ctx.patternSha = sha256(join(PLUGINS, 'pattern.wasm'));
  await startServer();

  // Traffic: three orgs looked up 6, 4 and 2 times (5, 3 and 1 cache hits), and an org whose
  // resolver answers `unavailable` until its breaker opens (threshold 3, no retries).
  await touch('acme', 6);
  await touch('globex', 4);
  await touch('initech', 2);
  await touch('unavailable', 3);
  const status = await api('GET', '/status');
  assert.equal(status.status, 200, status.text);
  assert.deepEqual(
    status.json.breakers.map((b) => [b.org, b.state]),
    [['unavailable', 'open']],
    'the breaker of `unavailable` should be open before the page loads',
  );
  assert.equal(status.json.plugins[0].sha256, ctx.hostileSha);

  ctx.browser = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'tenantry-chromium-')), {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 800 },
  });
  ctx.page = ctx.browser.pages()[0] || (await ctx.browser.newPage());
  ctx.page.on('pageerror', (e) => ctx.pageErrors.push(String(e)));
  ctx.page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) ctx.cspViolations.push(m.text());
  });
});

after(async () => {
  if (ctx.browser) await ctx.browser.close().catch(() => {});
  await stopServer().catch(() => {});
  if (ctx.dir) rmSync(ctx.dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------- the page

step('asks for the admin token, and says so when a wrong one is entered', async () => {
  const { page } = ctx;
  const res = await page.goto(`${ctx.base}/`);
  assert.equal(res.status(), 200);
  assert.match(res.headers()['content-security-policy'], /default-src 'none'/);
  assert.equal(await page.title(), 'Tenantry · operator dashboard');
  await eventually('token prompt', async () => {
    assert.equal(await text('#overall'), 'Token required');
    assert.match(await text('#banner'), /needs the admin token/);
  });
  assert.equal(await page.locator('main').isVisible(), false, 'no data is shown without the token');

  await page.fill('#token', 'not-the-token');
  await page.click('#token-form button[type=submit]');
  await eventually('refusal', async () => {
    assert.equal(await text('#overall'), 'Token refused');
    assert.match(await text('#banner'), /401 unauthorized: missing or wrong bearer token/);
  });
});

step('shows health, plugins, resolution, breakers and busiest orgs once the token is entered', async () => {
  const { page } = ctx;
  await page.fill('#token', TOKEN);
  await page.click('#token-form button[type=submit]');
  await eventually('the snapshot', async () => {
    assert.equal(await text('#overall'), 'Degraded · 1 open breaker');
    assert.equal(await page.locator('#banner').isVisible(), false);
  });
  // Overview and pools.
  assert.equal(await text('#ov-health'), 'healthy');
  assert.equal(await text('#ov-mode'), 'orgs');
  assert.equal(await text('#ov-backend'), 'sqlite');
  assert.equal(await text('#cap-text'), '0 / 100');
  assert.equal(await page.locator('#pools-empty').isVisible(), true);
  // The plugin slot.
  assert.equal(await text(slot('plugin')), 'test-hostile');
  assert.equal(await text(slot('world')), 'org-resolver');
  assert.equal(await text(slot('version')), '0.1.0');
  assert.equal(await text(slot('sha256')), ctx.hostileSha);
  assert.equal(await text(slot('generation')), '0');
  assert.equal(await text(slot('last-swap')), 'none since start');
  assert.match(await text(slot('loaded')), /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \(/);
  assert.match(await text('#slots [data-slot="tenant-policy"]'), /Not configured/);
  // Resolution: acme, globex and initech are cached.
  assert.equal(await text('#rs-cache'), '3');
  assert.match(await text('#rs-hit'), /^\d+\.\d %$/);
  assert.match(await text('#rs-p99'), /(µs|ms)$/);
  // Busiest orgs, most looked-up first, with their cache hits.
  const rows = page.locator('#busiest-table tbody tr');
  assert.deepEqual(await rows.evaluateAll((trs) => trs.map((tr) => [tr.dataset.org, tr.cells[1].textContent])), [
    ['acme', '5'],
    ['globex', '3'],
    ['initech', '1'],
  ]);
  // The open breaker, and why it opened (password masked).
  const breaker = page.locator('#open-breakers [data-org="unavailable"]');
  assert.equal(await breaker.locator('.pill').textContent(), 'open');
  assert.match(await breaker.locator('.why').textContent(), /^backend down \(postgres:\/\/svc:\*\*\*@dir\/x\)$/);
  assert.equal(await text('#breaker-counts [data-state="open"] b'), '1');
  assert.equal(await text('#breaker-counts [data-state="half-open"] b'), '0');
  // No secret anywhere on the page; the token only in this tab's sessionStorage.
  const html = await page.content();
  assert.ok(!html.includes(SECRET), 'the resolver backend password is on the page');
  assert.ok(!html.includes(TOKEN), 'the admin token is on the page');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('tenantry.admin-token')), TOKEN);
  assert.equal(await page.evaluate(() => localStorage.length), 0);
});

/** The points of the chart's p99 line, checked to lie inside the chart. */
async function chartPoints() {
  const points = await ctx.page.locator('#latency-chart polyline[data-series="p99"]').getAttribute('points');
  const pts = points.trim().split(/\s+/).map((p) => p.split(',').map(Number));
  const [, , w, h] = (await ctx.page.locator('#latency-chart').getAttribute('viewBox')).split(' ').map(Number);
  for (const [x, y] of pts) assert.ok(x >= 0 && x <= w && y >= 0 && y <= h, `point ${x},${y} outside the chart`);
  return pts;
}

const ORGS = ['acme', 'globex', 'initech', 'umbrella', 'hooli', 'soylent', 'tyrell', 'cyberdyne', 'wonka', 'stark'];

/** Traffic shaped like production's: a few orgs get most lookups; the cache is dropped now
 * and then so the resolver runs again. */
async function traffic(round) {
  for (let i = 0; i < ORGS.length; i++) {
    if ((round + i) % (i + 1) === 0) await touch(ORGS[i], Math.max(1, 4 - i));
  }
  if (round % 12 === 11) await api('DELETE', '/cache');
}

step('draws resolve latency from successive polls', async () => {
  const { page } = ctx;
  let round = 0;
  await eventually(
    'a latency line of several points',
    async () => {
      await traffic(round++);
      assert.ok((await chartPoints()).length >= 3);
    },
    20000,
  );
  assert.match(await text('#rs-rate'), /^\d/);
  assert.equal(await text('#chart-window'), 'last minute');
  assert.equal(await page.locator('#latency-chart polyline[data-series="avg"]').count(), 1);
});

step('keeps the token for the tab across a reload', async () => {
  const { page } = ctx;
  await page.reload();
  await eventually('the snapshot after reload', async () => {
    assert.equal(await text(slot('sha256')), ctx.hostileSha);
  });
  assert.equal(await page.locator('#forget-token').isVisible(), true);
  assert.equal(await page.inputValue('#token'), '');
  // The chart's history survives the reload too.
  assert.ok((await chartPoints()).length >= 3);
});

step('checks orgs from the form and shows results and rejection reasons', async () => {
  const { page } = ctx;
  await page.fill('#org-id', 'acme');
  await page.click('#org-form [data-action="health"]');
  await eventually('health result', async () => {
    assert.match(await text('#org-result'), /^acme is healthy: postgres:\/\/db\/acme via (cache|resolver) in .+ \(breaker closed\)$/);
  });
  await page.fill('#org-id', 'Not_An_Id');
  await page.click('#org-form [data-action="refresh"]');
  await eventually('rejection', async () => {
    assert.match(await text('#org-result'), /^Refresh of Not_An_Id refused: 400 invalid_org_id: org id .* is invalid/);
  });
  await page.fill('#org-id', 'unavailable');
  await page.click('#org-form [data-action="health"]');
  await eventually('unhealthy result', async () => {
    const r = await text('#org-result');
    assert.match(r, /^unavailable is unhealthy \(breaker open\): .*circuit breaker open/);
    assert.ok(!r.includes(SECRET));
  });
  const log = await page.locator('#activity-log li').allTextContents();
  assert.equal(log.length, 3);
  assert.match(log[0], /unavailable is unhealthy/);
});

step('takes a screenshot', async () => {
  const { page } = ctx;
  if (UPDATE_SCREENSHOT) {
    // A fuller chart for the README: a minute of traffic.
    const end = Date.now() + 60000;
    for (let round = 0; Date.now() < end; round++) {
      await traffic(round);
      await sleep(400);
    }
  }
  await page.fill('#org-id', '');
  await page.evaluate(() => {
    document.activeElement.blur();
    window.scrollTo(0, 0);
  });
  const png = await page.screenshot({ fullPage: true });
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'not a PNG');
  const width = png.readUInt32BE(16);
  const height = png.readUInt32BE(20);
  assert.equal(width, 1280);
  assert.ok(height >= 800, `height ${height}`);
  assert.ok(png.length > 30000, `a ${png.length}-byte screenshot is suspiciously empty`);
  if (UPDATE_SCREENSHOT) writeFileSync(join(ROOT, 'docs/dashboard.png'), png);
});

step('resets the open breaker from its row', async () => {
  const { page } = ctx;
  await page.click('#open-breakers [data-org="unavailable"] button.reset');
  await eventually('breaker closed', async () => {
    assert.equal(await text('#org-result'), 'Breaker of unavailable reset: now closed');
    assert.equal(await page.locator('#open-breakers [data-org="unavailable"]').count(), 0);
    assert.equal(await text('#closed-breakers [data-org="unavailable"] .pill'), 'closed');
    assert.equal(await text('#breaker-counts [data-state="open"] b'), '0');
    assert.equal(await text('#overall'), 'Healthy');
    assert.equal(await page.locator('#breakers-empty').isVisible(), true);
  });
  const status = await api('GET', '/status');
  assert.deepEqual(status.json.breakers, []);
});

step('shows why an upload is rejected, and keeps the plugin', async () => {
  const { page } = ctx;
  await page.setInputFiles('#slots [data-slot="org-resolver"] input[type=file]', {
    name: 'broken.wasm',
    mimeType: 'application/wasm',
    buffer: Buffer.from('this is not a component'),
  });
  assert.match(await text('#slots [data-slot="org-resolver"] .file-name'), /^broken\.wasm \(23 B\)$/);
  await page.click('#slots [data-slot="org-resolver"] button.upload');
  await eventually('rejection', async () => {
    assert.match(
      await text(slot('result')),
      /^Upload of broken\.wasm to org-resolver rejected: 422 swap_rejected: uploaded plugin is not WebAssembly.*the current plugin keeps serving$/,
    );
    assert.match(await text(slot('last-swap')), /^✗ rejected/);
  });
  assert.equal(await text(slot('sha256')), ctx.hostileSha);
  assert.equal(await text(slot('generation')), '0');
});

step('swaps the plugin by uploading a .wasm, then rolls it back', async () => {
  const { page } = ctx;
  await page.setInputFiles('#slots [data-slot="org-resolver"] input[type=file]', join(PLUGINS, 'pattern.wasm'));
  await page.click('#slots [data-slot="org-resolver"] button.upload');
  await eventually('new sha256 on screen', async () => {
    assert.equal(await text(slot('sha256')), ctx.patternSha);
    assert.equal(await text(slot('generation')), '1');
    assert.match(await text(slot('last-swap')), /^✓ swapped in [0-9a-f]{12} \(generation 1\)/);
  }, 30000);
  assert.equal(
    await text(slot('result')),
    `Swapped org-resolver to pattern.wasm: ${ctx.hostileSha.slice(0, 12)}… → ${ctx.patternSha.slice(0, 12)}… (generation 1)`,
  );
  assert.notEqual(ctx.patternSha, ctx.hostileSha);
  assert.equal((await api('GET', '/status')).json.plugins[0].sha256, ctx.patternSha);
  // The new resolver serves: pattern maps acme to the SQLite template.
  await page.fill('#org-id', 'acme');
  await page.click('#org-form [data-action="refresh"]');
  await eventually('refresh through the new plugin', async () => {
    assert.match(await text('#org-result'), /^Refreshed acme: sqlite:\/\/.*\/acme\.db \(resolver\)$/);
  });

  await page.click('#slots [data-slot="org-resolver"] button.rollback');
  await eventually('old sha256 back on screen', async () => {
    assert.equal(await text(slot('sha256')), ctx.hostileSha);
    assert.equal(await text(slot('generation')), '2');
  });
  assert.match(await text(slot('result')), /^Rolled back org-resolver: [0-9a-f]{12}… → [0-9a-f]{12}… \(generation 2\)$/);
});

step('shows an unhealthy host and its pools against the global cap', async () => {
  const { page } = ctx;
  // /status answers as a host whose database fails would: the page must say so loudly.
  const real = (await api('GET', '/status')).json;
  const sick = structuredClone(real);
  sick.health.healthy = false;
  sick.health.error = 'pool for sqlite:///srv/acme.db: database is locked';
  sick.health.open_connections = 85;
  sick.health.max_open_connections = 100;
  sick.health.pools = [
    { database: 'postgresql://app:***@db:5432/acme_db', backend: 'postgres', open: 10, idle: 2, max: 10 },
    { database: 'sqlite:///srv/globex.db', backend: 'sqlite', open: 3, idle: 3, max: 10 },
  ];
  await page.route('**/status', (route) => route.fulfill({ json: sick }));
  try {
    await eventually('unhealthy state', async () => {
      assert.equal(await text('#overall'), 'Unhealthy');
      assert.equal(
        await text('#banner'),
        'The host reports unhealthy: pool for sqlite:///srv/acme.db: database is locked',
      );
      assert.equal(await text('#ov-health'), 'unhealthy');
      assert.equal(await text('#cap-text'), '85 / 100');
    });
    assert.match(await page.locator('#cap-meter').getAttribute('class'), /\bwarn\b/);
    const pools = await page
      .locator('#pool-table tbody tr')
      .evaluateAll((trs) => trs.map((tr) => [...tr.cells].slice(0, 5).map((c) => c.textContent)));
    assert.deepEqual(pools, [
      ['postgresql://app:***@db:5432/acme_db', 'postgres', '10', '2', '10'],
      ['sqlite:///srv/globex.db', 'sqlite', '3', '3', '10'],
    ]);
    assert.match(await page.locator('#pool-table tbody tr').first().locator('.meter').getAttribute('class'), /\bbad\b/);
  } finally {
    await page.unroute('**/status');
  }
  await eventually('healthy again', async () => assert.equal(await text('#overall'), 'Healthy'));
});

step('fits a narrow screen', async () => {
  const { page } = ctx;
  await page.setViewportSize({ width: 390, height: 844 });
  try {
    await eventually('the narrow layout', async () => {
      const [scroll, inner] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
      assert.ok(scroll <= inner, `page is ${scroll}px wide in a ${inner}px viewport`);
      // The chart is redrawn at its shown width, so its labels stay legible.
      const [, , w] = (await page.locator('#latency-chart').getAttribute('viewBox')).split(' ').map(Number);
      assert.ok(w < 400, `chart drawn ${w} wide on a 390px screen`);
    });
    for (const selector of ['#token-form button[type=submit]', '#slots [data-slot="org-resolver"] button.rollback', '#org-form [data-action="reset"]']) {
      const box = await page.locator(selector).boundingBox();
      assert.ok(box && box.x >= 0 && box.x + box.width <= 390, `${selector} is off screen: ${JSON.stringify(box)}`);
    }
  } finally {
    await page.setViewportSize({ width: 1280, height: 800 });
  }
});

step('degrades clearly when the server goes away', async () => {
  const { page } = ctx;
  await stopServer();
  await eventually('unreachable state', async () => {
    assert.equal(await text('#overall'), 'Unreachable');
    assert.match(await text('#banner'), /^Cannot reach tenantry serve at 127\.0\.0\.1:\d+: .*Showing the last snapshot, from /);
    assert.match(await page.locator('body').getAttribute('class'), /\bstale\b/);
  });
  // The last data stays readable, marked stale.
  assert.equal(await text(slot('sha256')), ctx.hostileSha);
  assert.match(await text('#updated'), /^stale since \d{2}:\d{2}:\d{2}$/);
});

step('raised no script errors and no Content-Security-Policy violations', async () => {
  assert.deepEqual(ctx.pageErrors, []);
  assert.deepEqual(ctx.cspViolations, []);
});
