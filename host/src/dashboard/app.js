// Tenantry operator dashboard: polls /status and drives the admin API.
//
// Everything shown comes from the admin API, which redacts secrets; this script only ever
// writes text (textContent), never HTML. The admin token lives in this tab's sessionStorage
// and leaves it only as the Authorization header of same-origin requests.
'use strict';

(() => {
  const POLL_MS = 2000;
  const TIMEOUT_MS = 5000;
  const UPLOAD_TIMEOUT_MS = 120000;
  const HISTORY_MS = 10 * 60 * 1000;
  const CLOSED_KEEP_MS = 10 * 60 * 1000;
  const LOG_MAX = 30;
  const TOKEN_KEY = 'tenantry.admin-token';
  const HISTORY_KEY = 'tenantry.latency-history';
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const BREAKER_STATES = ['open', 'half-open', 'forced-open', 'forced-closed'];
  const SLOTS = ['org-resolver', 'tenant-policy'];

  const $ = (id) => document.getElementById(id);

  const state = {
    token: loadToken(),
    last: null, // last snapshot that loaded
    lastOkAt: 0, // when (browser clock)
    prev: null, // the snapshot before it, for rates
    history: loadHistory(), // {t, avg, p99} from successive snapshots (kept across reloads)
    openBreakers: new Map(), // org -> breaker entry of the last snapshot
    closed: new Map(), // org -> {at, how}: breakers seen open that closed since
    timer: 0,
    seq: 0,
  };

  // ---------------------------------------------------------------- helpers

  function loadToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || '';
    } catch {
      return '';
    }
  }

  function loadHistory() {
    try {
      const h = JSON.parse(sessionStorage.getItem(HISTORY_KEY) || '[]');
      return Array.isArray(h) ? h.filter((p) => p && Number.isFinite(p.t)) : [];
    } catch {
      return [];
    }
  }

  function saveHistory() {
    try {
      sessionStorage.setItem(HISTORY_KEY, JSON.stringify(state.history));
    } catch {
      // Storage full or disabled: the chart starts over on reload.
    }
  }

  function saveToken(token) {
    state.token = token;
    try {
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      // Storage disabled: the token lasts until the page is closed or reloaded.
    }
  }

  /** An element with attributes (`class`, `text`, `data-*`, others) and children. */
  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) {
      if (c !== null && c !== undefined) e.append(c);
    }
    return e;
  }

  function svg(tag, attrs = {}, text) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function setText(id, text, cls) {
    const e = $(id);
    e.textContent = text;
    if (cls !== undefined) e.className = cls;
  }

  function fmtMs(ms) {
    if (!Number.isFinite(ms)) return '–';
    if (ms === 0) return '0 ms';
    if (ms < 0.01) return `${(ms * 1000).toFixed(1)} µs`;
    if (ms < 1) return `${(ms * 1000).toFixed(0)} µs`;
    if (ms < 100) return `${ms.toFixed(ms < 10 ? 2 : 1)} ms`;
    if (ms < 1000) return `${ms.toFixed(0)} ms`;
    return `${(ms / 1000).toFixed(2)} s`;
  }

  function fmtPct(x) {
    return Number.isFinite(x) ? `${(x * 100).toFixed(1)} %` : '–';
  }

  function fmtCount(n) {
    return Number.isFinite(n) ? n.toLocaleString('en-US') : '–';
  }

  function fmtBytes(n) {
    if (!Number.isFinite(n)) return '–';
    if (n < 1024) return `${n} B`;
    if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
    return `${(n / (1 << 20)).toFixed(1)} MiB`;
  }

  function fmtTime(ms) {
    if (!ms) return '–';
    const d = new Date(ms);
    return d.toLocaleTimeString('en-GB', { hour12: false });
  }

  function fmtDateTime(ms) {
    if (!ms) return '–';
    const d = new Date(ms);
    const day = d.toLocaleDateString('en-CA');
    return `${day} ${fmtTime(ms)}`;
  }

  function fmtAgo(ms) {
    if (!Number.isFinite(ms) || ms < 0) return '';
    const s = Math.round(ms / 1000);
    if (s < 5) return 'just now';
    if (s < 90) return `${s} s ago`;
    const m = Math.round(s / 60);
    if (m < 90) return `${m} min ago`;
    const h = Math.round(m / 60);
    if (h < 48) return `${h} h ago`;
    return `${Math.round(h / 24)} d ago`;
  }

  const short = (sha) => (typeof sha === 'string' ? sha.slice(0, 12) : '–');

  function plural(n, one, many) {
    return `${n} ${n === 1 ? one : many}`;
  }

  // ---------------------------------------------------------------- requests

  class NetworkError extends Error {}

  async function request(method, path, { body, type, timeout = TIMEOUT_MS } = {}) {
    const headers = { Accept: 'application/json' };
    if (state.token) headers['Authorization'] = `Bearer ${state.token}`;
    if (type) headers['Content-Type'] = type;
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), timeout);
    let res;
    try {
      res = await fetch(path, {
        method,
        headers,
        body,
        cache: 'no-store',
        credentials: 'omit',
        signal: ctl.signal,
      });
    } catch (e) {
      throw new NetworkError(
        e && e.name === 'AbortError'
          ? `no answer within ${Math.round(timeout / 1000)} s`
          : 'connection failed',
      );
    } finally {
      clearTimeout(timer);
    }
    const text = await res.text().catch(() => '');
    let json = null;
    try {
      json = JSON.parse(text);
    } catch {
      // Not JSON (a proxy's error page, for example).
    }
    return { ok: res.ok, status: res.status, json, text };
  }

  /** The server's reason for refusing, as `401 unauthorized: missing or wrong bearer token`. */
  function reason(res) {
    const err = res.json && res.json.error;
    if (err && err.code) return `${res.status} ${err.code}: ${err.message || ''}`.trim();
    const snippet = (res.text || '').replace(/\s+/g, ' ').trim().slice(0, 160);
    return snippet ? `HTTP ${res.status}: ${snippet}` : `HTTP ${res.status}`;
  }

  // ---------------------------------------------------------------- polling

  async function poll() {
    clearTimeout(state.timer);
    const seq = ++state.seq;
    let outcome;
    try {
      const res = await request('GET', '/status');
      if (res.ok && res.json && res.json.health) outcome = { kind: 'ok', status: res.json };
      else if (res.status === 401 || res.status === 403) outcome = { kind: 'locked', res };
      else outcome = { kind: 'error', message: `/status failed: ${reason(res)}` };
    } catch (e) {
      outcome = {
        kind: 'down',
        message: `Cannot reach tenantry serve at ${location.host}: ${e.message || e}.`,
      };
    }
    if (seq !== state.seq) return; // a newer poll started meanwhile
    apply(outcome);
    state.timer = setTimeout(poll, POLL_MS);
  }

  function apply(outcome) {
    document.body.classList.remove('starting');
    if (outcome.kind === 'ok') {
      state.prev = state.last;
      state.last = outcome.status;
      state.lastOkAt = Date.now();
      document.body.classList.remove('stale', 'locked', 'nodata');
      render(outcome.status);
      return;
    }
    document.body.classList.add('stale');
    const since = state.last
      ? ` Showing the last snapshot, from ${fmtTime(state.lastOkAt)} (${fmtAgo(Date.now() - state.lastOkAt)}).`
      : '';
    if (outcome.kind === 'locked') {
      document.body.classList.add('locked');
      const why = reason(outcome.res);
      if (outcome.res.status === 403) {
        badge('locked', 'Admin disabled');
        banner('warn', `${why}.${since}`);
      } else if (state.token) {
        badge('locked', 'Token refused');
        banner('warn', `The admin token was refused (${why}). Enter the right one above.${since}`);
      } else {
        badge('locked', 'Token required');
        banner(
          'warn',
          `This dashboard needs the admin token (TENANTRY_ADMIN_TOKEN of tenantry serve): enter it above.${since}`,
        );
      }
      return;
    }
    badge('down', outcome.kind === 'down' ? 'Unreachable' : 'Status failed');
    banner('bad', `${outcome.message}${since} Retrying every ${POLL_MS / 1000} s.`);
    setText('updated', state.last ? `stale since ${fmtTime(state.lastOkAt)}` : '');
  }

  function badge(kind, text) {
    setText('overall', text, `badge ${kind}`);
  }

  function banner(kind, text) {
    const b = $('banner');
    if (!text) {
      b.hidden = true;
      b.textContent = '';
      return;
    }
    b.hidden = false;
    b.className = `banner ${kind}`;
    b.textContent = text;
  }

  // ---------------------------------------------------------------- rendering

  function render(s) {
    const h = s.health;
    const open = (s.breakers || []).filter((b) => b.state !== 'forced-closed');
    if (!h.healthy) {
      badge('bad', 'Unhealthy');
      banner('bad', `The host reports unhealthy: ${h.error || 'no reason given'}`);
    } else if (open.length) {
      badge('warn', `Degraded · ${plural(open.length, 'open breaker', 'open breakers')}`);
      banner(null);
    } else {
      badge('ok', 'Healthy');
      banner(null);
    }
    setText('updated', `updated ${fmtTime(s.time_unix_ms)}`);
    renderOverview(s);
    renderPlugins(s);
    renderResolution(s);
    renderBreakers(s);
    renderPools(s);
    renderBusiest(s);
  }

  function renderOverview(s) {
    const h = s.health;
    setText('ov-health', h.healthy ? 'healthy' : 'unhealthy', h.healthy ? 'good' : 'bad');
    setText('ov-mode', h.mode || '–');
    setText('ov-backend', h.backend || 'none');
    setText('ov-conns', `${fmtCount(h.open_connections)} / ${fmtCount(h.max_open_connections)}`);
    setText('ov-calls', fmtCount(s.plugin_calls));
    setText('ov-failures', fmtCount(s.plugin_call_failures), s.plugin_call_failures ? 'warn' : '');
    setText('ov-time', fmtDateTime(s.time_unix_ms));
    const err = $('ov-error');
    err.hidden = !h.error;
    err.textContent = h.error || '';
  }

  // -- plugins

  function slotElement(slot) {
    const box = $('slots');
    let e = box.querySelector(`[data-slot="${CSS.escape(slot)}"]`);
    if (e) return e;
    const field = (name) => el('dd', { 'data-field': name });
    const file = el('input', {
      type: 'file',
      accept: '.wasm,.wat,application/wasm',
      'aria-label': `WebAssembly component for ${slot}`,
    });
    const upload = el('button', { type: 'button', class: 'upload', disabled: true, text: 'Upload & swap' });
    const rollback = el('button', { type: 'button', class: 'rollback', text: 'Roll back' });
    const chosen = el('span', { class: 'file-name muted', text: 'no file chosen' });
    e = el(
      'article',
      { class: 'slot', 'data-slot': slot },
      el('h3', {}, el('span', { text: slot })),
      el(
        'dl',
        { class: 'facts' },
        el('dt', { text: 'Name', title: 'as configured; kept across swaps, used in error messages' }), field('plugin'),
        el('dt', { text: 'World' }), field('world'),
        el('dt', { text: 'WIT version' }), field('version'),
        el('dt', { text: 'sha256' }), el('dd', {}, el('code', { class: 'sha', 'data-field': 'sha256' })),
        el('dt', { text: 'Size' }), field('size'),
        el('dt', { text: 'Loaded' }), field('loaded'),
        el('dt', { text: 'Generation' }), field('generation'),
        el('dt', { text: 'Grants' }), field('grants'),
        el('dt', { text: 'Last swap' }), field('last-swap'),
      ),
      el(
        'div',
        { class: 'slot-actions' },
        el('label', { class: 'file-pick button' }, 'Choose .wasm', file),
        chosen,
        upload,
        rollback,
      ),
      el('p', { class: 'result', role: 'status', 'data-field': 'result' }),
    );
    file.addEventListener('change', () => {
      const f = file.files[0];
      chosen.textContent = f ? `${f.name} (${fmtBytes(f.size)})` : 'no file chosen';
      upload.disabled = !f;
    });
    upload.addEventListener('click', () => uploadPlugin(slot, file, upload, chosen));
    rollback.addEventListener('click', () => rollbackPlugin(slot, rollback));
    box.append(e);
    return e;
  }

  function emptySlotElement(slot) {
    return el(
      'article',
      { class: 'slot empty', 'data-slot': slot, 'data-empty': true },
      el('h3', {}, el('span', { text: slot })),
      el('p', { text: `Not configured: add [plugins.${slot}] to the configuration to load one.` }),
    );
  }

  function renderPlugins(s) {
    const plugins = s.plugins || [];
    const seen = new Set();
    for (const p of plugins) {
      seen.add(p.slot);
      const old = $('slots').querySelector(`[data-slot="${CSS.escape(p.slot)}"][data-empty]`);
      if (old) old.remove();
      const e = slotElement(p.slot);
      const f = (name) => e.querySelector(`[data-field="${name}"]`);
      f('plugin').textContent = p.plugin;
      f('world').textContent = p.world;
      f('version').textContent = p.version;
      f('sha256').textContent = p.sha256;
      f('size').textContent = fmtBytes(p.size);
      f('loaded').textContent = `${fmtDateTime(p.loaded_at_unix_ms)} (${fmtAgo(s.time_unix_ms - p.loaded_at_unix_ms)})`;
      f('generation').textContent = String(p.generation);
      f('grants').textContent = (p.grants || []).join(', ') || 'none';
      const last = f('last-swap');
      if (!p.last_swap) {
        last.textContent = 'none since start';
        last.className = 'muted';
      } else {
        const when = fmtAgo(s.time_unix_ms - p.last_swap.at_unix_ms);
        last.textContent = p.last_swap.ok
          ? `✓ ${p.last_swap.message} · ${when}`
          : `✗ rejected · ${when}: ${p.last_swap.message}`;
        last.className = p.last_swap.ok ? 'good' : 'bad';
      }
    }
    for (const e of [...$('slots').children]) {
      if (!seen.has(e.dataset.slot) && !('empty' in e.dataset)) e.remove();
    }
    for (const slot of SLOTS) {
      const box = $('slots');
      if (!seen.has(slot) && !box.querySelector(`[data-slot="${CSS.escape(slot)}"]`)) {
        box.append(emptySlotElement(slot));
      }
    }
    // Configured slots first, in the usual order; moved only when out of place (a move
    // would take the focus away from a button or file picker).
    const box = $('slots');
    const rank = (e) => ('empty' in e.dataset ? 100 : 0) + (SLOTS.indexOf(e.dataset.slot) + 1 || 50);
    const desired = [...box.children].sort((x, y) => rank(x) - rank(y));
    desired.forEach((e, i) => {
      if (box.children[i] !== e) box.insertBefore(e, box.children[i] || null);
    });
  }

  async function uploadPlugin(slot, input, button, chosen) {
    const file = input.files[0];
    if (!file) return;
    const slotEl = slotElement(slot);
    await busy(button, async () => {
      showSlotResult(slotEl, 'pending', `Uploading ${file.name} (${fmtBytes(file.size)}); compiling and self-testing…`);
      try {
        const bytes = await file.arrayBuffer();
        const res = await request('PUT', `/plugins/${encodeURIComponent(slot)}`, {
          body: bytes,
          type: 'application/wasm',
          timeout: UPLOAD_TIMEOUT_MS,
        });
        if (res.ok) {
          const o = res.json || {};
          report(
            'ok',
            `Swapped ${slot} to ${file.name}: ${short(o.previous_sha256)}… → ${short(o.sha256)}… (generation ${o.generation})`,
            slotEl,
          );
          input.value = '';
          chosen.textContent = 'no file chosen';
          button.disabled = true;
        } else {
          report('bad', `Upload of ${file.name} to ${slot} rejected: ${reason(res)}`, slotEl);
        }
      } catch (e) {
        report('bad', `Upload of ${file.name} to ${slot} failed: ${e.message || e}`, slotEl);
      }
    }, () => !input.files[0]);
    poll();
  }

  async function rollbackPlugin(slot, button) {
    const slotEl = slotElement(slot);
    await busy(button, async () => {
      try {
        const res = await request('POST', `/plugins/${encodeURIComponent(slot)}/rollback`);
        if (res.ok) {
          const o = res.json || {};
          report(
            'ok',
            `Rolled back ${slot}: ${short(o.previous_sha256)}… → ${short(o.sha256)}… (generation ${o.generation})`,
            slotEl,
          );
        } else {
          report('bad', `Rollback of ${slot} refused: ${reason(res)}`, slotEl);
        }
      } catch (e) {
        report('bad', `Rollback of ${slot} failed: ${e.message || e}`, slotEl);
      }
    });
    poll();
  }

  function showSlotResult(slotEl, kind, text) {
    const r = slotEl.querySelector('[data-field="result"]');
    r.textContent = text;
    r.className = `result ${kind}`;
  }

  // -- resolution

  function renderResolution(s) {
    const r = s.resolver;
    setText('rs-cache', fmtCount(r.cache_size));
    const hit = $('rs-hit');
    hit.textContent = fmtPct(r.hit_rate);
    hit.title = `${fmtCount(r.cache_hits)} hits, ${fmtCount(r.cache_misses)} misses`;
    setText('rs-avg', fmtMs(r.avg_resolve_ms));
    setText('rs-p99', fmtMs(r.p99_resolve_ms));
    setText('rs-resolves', fmtCount(r.resolves));
    setText('rs-failures', fmtCount(r.failures), r.failures ? 'value warn' : 'value');
    setText('rs-fallbacks', fmtCount(r.fallbacks), r.fallbacks ? 'value warn' : 'value');
    const p = state.prev;
    if (p && p.resolver && s.time_unix_ms > p.time_unix_ms) {
      const lookups = (r.cache_hits + r.cache_misses) - (p.resolver.cache_hits + p.resolver.cache_misses);
      const rate = Math.max(0, lookups) / ((s.time_unix_ms - p.time_unix_ms) / 1000);
      setText('rs-rate', rate < 10 ? rate.toFixed(1) : fmtCount(Math.round(rate)));
    }
    const h = state.history;
    if (h.length && s.time_unix_ms < h[h.length - 1].t - 5000) h.length = 0; // clock went back
    if (!h.length || s.time_unix_ms > h[h.length - 1].t) {
      h.push({ t: s.time_unix_ms, avg: r.avg_resolve_ms, p99: r.p99_resolve_ms });
    }
    while (h.length && h[0].t < s.time_unix_ms - HISTORY_MS) h.shift();
    saveHistory();
    drawChart();
  }

  function niceCeil(x) {
    if (!(x > 0)) return 1;
    const p = 10 ** Math.floor(Math.log10(x));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= x) return m * p;
    return 10 * p;
  }

  function drawChart() {
    const chart = $('latency-chart');
    chart.replaceChildren();
    // Drawn at the size it is shown, so the labels keep their size on any screen.
    const W = Math.max(260, Math.round(chart.getBoundingClientRect().width) || 640);
    const H = 170, L = 58, R = 10, T = 10, B = 24;
    chart.setAttribute('viewBox', `0 0 ${W} ${H}`);
    const pts = state.history;
    const now = pts.length ? pts[pts.length - 1].t : 0;
    const span = pts.length ? now - pts[0].t : 0;
    const windowMs = Math.min(HISTORY_MS, Math.max(60000, span));
    const minutes = Math.round(windowMs / 60000);
    $('chart-window').textContent = minutes <= 1 ? 'last minute' : `last ${minutes} minutes`;
    const startLabel = windowMs < 120000 ? `−${Math.round(windowMs / 1000)} s` : `−${minutes} min`;
    const max = niceCeil(Math.max(0, ...pts.map((p) => Math.max(p.avg || 0, p.p99 || 0))));
    const x = (t) => L + ((t - (now - windowMs)) / windowMs) * (W - L - R);
    const y = (v) => T + (1 - Math.min(v, max) / max) * (H - T - B);
    for (const v of [0, max / 2, max]) {
      chart.append(svg('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), class: 'grid' }));
      chart.append(svg('text', { x: L - 6, y: y(v) + 4, class: 'axis', 'text-anchor': 'end' }, fmtMs(v)));
    }
    chart.append(svg('text', { x: L, y: H - 6, class: 'axis' }, startLabel));
    chart.append(svg('text', { x: W - R, y: H - 6, class: 'axis', 'text-anchor': 'end' }, 'now'));
    if (!pts.length) {
      chart.append(svg('text', { x: (L + W) / 2, y: H / 2, class: 'axis', 'text-anchor': 'middle' }, 'waiting for data…'));
      return;
    }
    for (const key of ['avg', 'p99']) {
      const points = pts.map((p) => `${x(p.t).toFixed(1)},${y(p[key] || 0).toFixed(1)}`).join(' ');
      chart.append(svg('polyline', { points, class: `line ${key}`, 'data-series': key }));
      const lastPt = pts[pts.length - 1];
      chart.append(svg('circle', { cx: x(lastPt.t), cy: y(lastPt[key] || 0), r: 3, class: `dot ${key}` }));
    }
  }

  // -- breakers

  function renderBreakers(s) {
    const counts = (s.resolver && s.resolver.breakers) || {};
    const chips = $('breaker-counts');
    chips.replaceChildren(
      ...BREAKER_STATES.map((st) =>
        el(
          'span',
          { class: `chip ${st}${counts[st] ? ' lit' : ''}`, 'data-state': st },
          el('span', { text: st }),
          el('b', { text: String(counts[st] || 0) }),
        ),
      ),
    );
    const listed = (s.breakers || []).filter((b) => b.state !== 'forced-closed');
    const now = s.time_unix_ms;
    const current = new Map(listed.map((b) => [b.org, b]));
    for (const org of state.openBreakers.keys()) {
      if (!current.has(org) && !state.closed.has(org)) state.closed.set(org, { at: now, how: 'closed' });
    }
    for (const org of current.keys()) state.closed.delete(org);
    for (const [org, c] of state.closed) if (now - c.at > CLOSED_KEEP_MS) state.closed.delete(org);
    state.openBreakers = current;

    syncRows($('open-breakers'), listed, (b) => b.org, (b) => {
      const row = el(
        'li',
        { class: 'row breaker', 'data-org': b.org },
        el('div', { class: 'row-main' },
          el('strong', { class: 'org', text: b.org }),
          el('span', { class: 'pill', 'data-field': 'state' })),
        el('p', { class: 'why', 'data-field': 'why' }),
        el('div', { class: 'buttons' },
          el('button', { type: 'button', class: 'reset', text: 'Reset' }),
          el('button', { type: 'button', class: 'refresh quiet', text: 'Refresh' })),
      );
      row.querySelector('.reset').addEventListener('click', (ev) => orgAction('reset', b.org, ev.currentTarget));
      row.querySelector('.refresh').addEventListener('click', (ev) => orgAction('refresh', b.org, ev.currentTarget));
      return row;
    }, (row, b) => {
      const pill = row.querySelector('[data-field="state"]');
      pill.textContent = b.state;
      pill.className = `pill ${b.state}`;
      row.querySelector('[data-field="why"]').textContent =
        b.last_error || (b.state === 'forced-open' ? 'held open by an operator' : 'no error recorded');
    });
    $('breakers-empty').hidden = listed.length > 0;

    const closed = [...state.closed].sort((a, b) => b[1].at - a[1].at);
    syncRows($('closed-breakers'), closed, ([org]) => org, ([org]) =>
      el('li', { class: 'row breaker closed', 'data-org': org },
        el('div', { class: 'row-main' },
          el('strong', { class: 'org', text: org }),
          el('span', { class: 'pill closed', text: 'closed' })),
        el('p', { class: 'why muted', 'data-field': 'why' })),
    (row, [, c]) => {
      row.querySelector('[data-field="why"]').textContent = `${c.how} at ${fmtTime(c.at)}`;
    });
    $('closed-h').hidden = closed.length === 0;
  }

  /** Keep `container`'s children one per item, in order, keyed (rows and their buttons survive polls). */
  function syncRows(container, items, key, create, update) {
    const existing = new Map([...container.children].map((c) => [c.dataset.key, c]));
    const wanted = [];
    for (const item of items) {
      const k = String(key(item));
      let row = existing.get(k);
      if (!row) {
        row = create(item);
        row.dataset.key = k;
      }
      update(row, item);
      existing.delete(k);
      wanted.push(row);
    }
    for (const stale of existing.values()) stale.remove();
    wanted.forEach((row, i) => {
      if (container.children[i] !== row) container.insertBefore(row, container.children[i] || null);
    });
  }

  // -- pools

  function renderPools(s) {
    const h = s.health;
    const open = h.open_connections || 0;
    const max = h.max_open_connections || 0;
    setText('cap-text', `${fmtCount(open)} / ${fmtCount(max)}`);
    meter($('cap-meter'), max ? open / max : 0);
    const pools = h.pools || [];
    const body = $('pool-table').tBodies[0];
    body.replaceChildren(
      ...pools.map((p) => {
        const m = el('div', { class: 'meter small' }, el('span'));
        meter(m, p.max ? p.open / p.max : 0, p.max ? (p.open - p.idle) / p.max : 0);
        return el(
          'tr',
          { 'data-database': p.database },
          el('td', { class: 'db', text: p.database }),
          el('td', { text: p.backend }),
          el('td', { class: 'num', text: fmtCount(p.open) }),
          el('td', { class: 'num', text: fmtCount(p.idle) }),
          el('td', { class: 'num', text: fmtCount(p.max) }),
          el('td', {}, m),
        );
      }),
    );
    $('pool-table').hidden = pools.length === 0;
    $('pools-empty').hidden = pools.length > 0;
  }

  /** Fill a meter to `fraction` (and, darker, `busy` of it in use). */
  function meter(m, fraction, busyFraction) {
    const f = Math.max(0, Math.min(1, fraction || 0));
    const bar = m.firstElementChild;
    bar.style.width = `${(f * 100).toFixed(1)}%`;
    m.classList.toggle('warn', f >= 0.8 && f < 1);
    m.classList.toggle('bad', f >= 1);
    if (busyFraction !== undefined) {
      m.title = `${Math.round(busyFraction * 100)} % in use, ${Math.round((f - busyFraction) * 100)} % idle`;
    }
  }

  // -- busiest orgs

  function renderBusiest(s) {
    const orgs = s.busiest_orgs || [];
    const top = Math.max(1, ...orgs.map((o) => o.hits));
    syncRows($('busiest-table').tBodies[0], orgs, (o) => o.org, (o) => {
      const row = el(
        'tr',
        { 'data-org': o.org },
        el('td', { class: 'org', text: o.org }),
        el('td', { class: 'num', 'data-field': 'hits' }),
        el('td', { class: 'bar-cell' }, el('div', { class: 'meter small plain' }, el('span'))),
        el('td', { class: 'actions' },
          el('button', { type: 'button', class: 'quiet check', text: 'Check' }),
          el('button', { type: 'button', class: 'quiet refresh', text: 'Refresh' })),
      );
      row.querySelector('.check').addEventListener('click', (ev) => orgAction('health', o.org, ev.currentTarget));
      row.querySelector('.refresh').addEventListener('click', (ev) => orgAction('refresh', o.org, ev.currentTarget));
      return row;
    }, (row, o) => {
      row.querySelector('[data-field="hits"]').textContent = fmtCount(o.hits);
      row.querySelector('.meter span').style.width = `${((o.hits / top) * 100).toFixed(1)}%`;
    });
    $('busiest-table').hidden = orgs.length === 0;
    $('busiest-empty').hidden = orgs.length > 0;
  }

  // ---------------------------------------------------------------- actions

  async function busy(button, work, stayDisabled) {
    button.disabled = true;
    button.classList.add('busy');
    try {
      await work();
    } finally {
      button.classList.remove('busy');
      button.disabled = stayDisabled ? stayDisabled() : false;
    }
  }

  async function orgAction(action, org, button) {
    org = (org || '').trim();
    if (!org) {
      report('bad', 'Enter an org id first.');
      $('org-id').focus();
      return;
    }
    const id = encodeURIComponent(org);
    await busy(button, async () => {
      try {
        let res;
        if (action === 'health') {
          res = await request('GET', `/orgs/${id}/health`);
          const h = res.json;
          if (h && typeof h.healthy === 'boolean') {
            if (h.healthy) {
              report('ok', `${org} is healthy: ${h.url} via ${h.source} in ${fmtMs(h.latency_ms)} (breaker ${h.breaker})`);
            } else {
              report('warn', `${org} is unhealthy (breaker ${h.breaker}): ${h.error || 'no reason given'}`);
            }
            return;
          }
        } else if (action === 'refresh') {
          res = await request('POST', `/orgs/${id}/refresh`);
          if (res.ok) {
            report('ok', `Refreshed ${org}: ${res.json.url} (${res.json.source})`);
            return;
          }
        } else {
          const wanted = action === 'open' ? 'open' : 'reset';
          res = await request('POST', `/orgs/${id}/breaker`, {
            body: JSON.stringify({ state: wanted }),
            type: 'application/json',
          });
          if (res.ok) {
            const now = res.json.breaker;
            if (action === 'reset') {
              state.openBreakers.delete(org);
              if (now === 'closed') state.closed.set(org, { at: Date.now(), how: 'reset from this page' });
            }
            report('ok', `Breaker of ${org} ${action === 'reset' ? 'reset' : 'forced open'}: now ${now}`);
            return;
          }
        }
        const verb = { health: 'Health check', refresh: 'Refresh', open: 'Opening the breaker', reset: 'Breaker reset' }[action];
        report('bad', `${verb} of ${org} refused: ${reason(res)}`);
      } catch (e) {
        report('bad', `${action} of ${org} failed: ${e.message || e}`);
      }
    });
    poll();
  }

  /** Record an action's outcome in the log (and next to the plugin slot it concerns). */
  function report(kind, text, slotEl) {
    if (slotEl) showSlotResult(slotEl, kind, text);
    else {
      const r = $('org-result');
      if (r) {
        r.textContent = text;
        r.className = `result ${kind}`;
      }
    }
    const log = $('activity-log');
    log.prepend(
      el('li', { class: kind }, el('time', { text: fmtTime(Date.now()) }), el('span', { text })),
    );
    while (log.children.length > LOG_MAX) log.lastElementChild.remove();
    $('activity-empty').hidden = true;
  }

  // ---------------------------------------------------------------- wiring

  function showTokenState() {
    const input = $('token');
    input.value = '';
    input.placeholder = state.token ? 'Token set for this tab' : 'Admin token';
    $('forget-token').hidden = !state.token;
  }

  function init() {
    $('token-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const value = $('token').value.trim();
      if (!value) {
        $('token').focus();
        return;
      }
      saveToken(value);
      showTokenState();
      poll();
    });
    $('forget-token').addEventListener('click', () => {
      saveToken('');
      // Drop what this tab was shown with the token, too.
      try {
        sessionStorage.removeItem(HISTORY_KEY);
      } catch {
        // nothing kept
      }
      location.reload();
    });
    const form = $('org-form');
    form.append(el('p', { id: 'org-result', class: 'result', role: 'status' }));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      orgAction('health', $('org-id').value, form.querySelector('[data-action="health"]'));
    });
    for (const b of form.querySelectorAll('button[type="button"][data-action]')) {
      b.addEventListener('click', () => orgAction(b.dataset.action, $('org-id').value, b));
    }
    let resizeTimer = 0;
    window.addEventListener('resize', () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(drawChart, 100);
    });
    showTokenState();
    drawChart();
    poll();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
