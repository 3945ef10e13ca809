// fixrx-realtime operator console. Vanilla JS, no build step; CSP forbids inline code,
// so everything is wired here. Server data is only ever written with textContent.
'use strict';
(() => {
  const TOKEN_KEY = 'fixrx-admin-token';
  const $ = (id) => document.getElementById(id);
  const state = {
    token: null, signedIn: false, pollGen: 0, pollTimer: 0, lastOk: 0, skew: 0,
    lookup: null, lookupGen: 0, lookupTimer: 0, target: null,
  };

  class ApiError extends Error {
    constructor(status, message, field, retry) {
      super(message);
      Object.assign(this, { status, field, retry });
    }
  }

  // ---- HTTP -------------------------------------------------------------
  function retryAfter(res) {
    const h = res.headers.get('Retry-After');
    if (!h) return null;
    const n = Number(h);
    if (Number.isFinite(n)) return Math.max(0, Math.ceil(n));
    const t = Date.parse(h);
    return Number.isNaN(t) ? null : Math.max(0, Math.ceil((t - Date.now()) / 1000));
  }

  async function api(method, path, body) {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), 4000);
    const headers = { Authorization: 'Bearer ' + state.token };
    const init = { method, headers, signal: ctrl.signal, cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    try {
      let res, data = null;
      try {
        res = await fetch(path, init);
        data = await res.json().catch(() => null);
      } catch {
        throw new ApiError(0, 'Cannot reach the server');
      }
      if (res.ok && data) return data;
      const err = (data && data.error) || {};
      if (res.status === 401 && state.signedIn) expire();
      throw new ApiError(res.status, err.message || `Unexpected answer (HTTP ${res.status})`,
        err.field, res.status === 429 ? retryAfter(res) : null);
    } finally {
      clearTimeout(timer);
    }
  }

  function errText(e, what = 'Too many requests') {
    if (e.status === 429 && e.retry != null) return `${what}: try again in ${e.retry} s`;
    return e.message;
  }

  // Disabling a focused button drops focus to <body>; give it back afterwards.
  function setBusy(btn, busy) {
    if (busy) {
      btn.dataset.hadFocus = document.activeElement === btn ? '1' : '';
      btn.disabled = true;
      btn.setAttribute('aria-busy', 'true');
      return;
    }
    btn.disabled = false;
    btn.removeAttribute('aria-busy');
    if (btn.dataset.hadFocus && document.activeElement === document.body) btn.focus();
  }

  // ---- formatting -----------------------------------------------------
  const pad = (n) => String(n).padStart(2, '0');
  const clock = (ms) => { const d = new Date(ms); return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`; };
  const serverNow = () => Date.now() + state.skew;

  function uptime(s) {
    s = Math.max(0, Math.floor(s));
    const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    if (d) return `${d}d ${pad(h)}h`;
    if (h) return `${h}h ${pad(m)}m`;
    if (m) return `${m}m ${pad(s % 60)}s`;
    return `${s}s`;
  }

  function ago(ms) {
    const s = Math.round((serverNow() - ms) / 1000);
    if (s < 5) return 'just now';
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} d ago`;
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }

  // Only touch the DOM when a value changed, so text selections (copying an id) survive polls.
  function setText(node, text) {
    text = String(text);
    if (node.textContent !== text) node.textContent = text;
  }

  // ---- keyed table rendering -------------------------------------------
  // A cell is a string or { t: text, c: td class, b: badge class, sub: second line, tag: pill }.
  const cellSig = new WeakMap();
  function setCell(td, spec) {
    const s = typeof spec === 'object' ? spec : { t: spec };
    const sig = JSON.stringify(s);
    if (cellSig.get(td) === sig) return;
    cellSig.set(td, sig);
    td.className = s.c || '';
    td.replaceChildren(s.b ? el('span', 'badge ' + s.b, String(s.t)) : String(s.t));
    if (s.tag) td.append(el('span', 'tag', s.tag));
    if (s.sub) td.append(el('div', 'muted mono', s.sub));
    if (s.title) td.title = s.title;
  }

  function syncRows(table, items, attr, keyOf, cellsOf, emptyText) {
    const body = table.tBodies[0];
    const old = new Map();
    for (const tr of [...body.rows]) {
      if (tr.hasAttribute(attr)) old.set(tr.getAttribute(attr), tr);
      else tr.remove();
    }
    const seen = new Set();
    let i = 0;
    for (const item of items) {
      const key = String(keyOf(item));
      if (seen.has(key)) continue;
      seen.add(key);
      let tr = old.get(key);
      if (!tr) { tr = el('tr'); tr.setAttribute(attr, key); }
      old.delete(key);
      const cells = cellsOf(item);
      while (tr.cells.length < cells.length) tr.append(el('td'));
      cells.forEach((c, j) => setCell(tr.cells[j], c));
      if (body.rows[i] !== tr) body.insertBefore(tr, body.rows[i] || null);
      i++;
    }
    old.forEach((tr) => tr.remove());
    if (!i) {
      const td = el('td', '', emptyText);
      td.colSpan = table.tHead.rows[0].cells.length;
      const tr = el('tr', 'empty');
      tr.append(td);
      body.append(tr);
    }
  }

  const eventCells = (e) => [
    { t: clock(e.at), c: 'time', title: new Date(e.at).toLocaleString() },
    e.type, { t: e.id, c: 'mono' }, (e.rooms || []).join(', '),
  ];

  // ---- overview ------------------------------------------------------
  function renderOverview(d) {
    state.skew = d.now - Date.now();
    const c = d.cluster, ev = d.events;
    setText($('total-connections'), c.connections);
    setText($('instance-count'), c.instances);
    setText($('cluster-mode'), c.mode);
    const last5 = ev.perSecond.counts.slice(-5);
    const avg = last5.reduce((a, b) => a + b, 0) / Math.max(1, last5.length);
    setText($('events-rate'), avg === 0 ? '0' : avg < 10 ? avg.toFixed(1) : Math.round(avg));
    setText($('events-last-minute'), ev.lastMinute);
    setText($('events-total'), ev.total);

    const warn = $('missing-warning');
    warn.hidden = !(c.missing > 0);
    if (c.missing > 0) setText(warn, `${c.missing} instance(s) did not answer in time: the figures may be incomplete.`);

    syncRows($('instances'), d.instances, 'data-instance', (x) => x.id, (x) => [
      { t: x.host, sub: x.id, tag: x.self ? 'this one' : '' },
      { t: x.connections, c: 'connections' },
      { t: `${x.websocket} / ${x.polling}`, c: 'num' },
      { t: x.redis, b: { up: 'ok', down: 'bad' }[x.redis] || 'none' },
      { t: x.ready ? 'ready' : 'not ready', b: x.ready ? 'ok' : 'bad' },
      { t: uptime(x.uptimeSecs), c: 'time' },
      { t: x.version, c: 'mono' },
    ], 'No instance answered.');
    syncRows($('by-type'), ev.byType, 'data-type', (x) => x.type,
      (x) => [x.type, { t: x.lastMinute, c: 'num' }, { t: x.total, c: 'num' }], 'No events yet.');
    syncRows($('latest'), ev.latest, 'data-event-id', (x) => x.id, eventCells, 'No events yet.');
    drawPlot(ev.perSecond.counts);
  }

  // Round the y-axis maximum up to 1, 2 or 5 × 10^k so the label is a friendly number.
  function niceMax(v) {
    if (v <= 1) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    return [1, 2, 5, 10].map((m) => m * p).find((m) => m >= v);
  }

  // The viewBox is 300×100 and stretched to the box (preserveAspectRatio=none).
  function drawPlot(counts) {
    const n = counts.length, max = niceMax(Math.max(0, ...counts));
    const pts = counts.map((c, i) => {
      const x = n > 1 ? (i * 300) / (n - 1) : 300;
      return `${x.toFixed(2)} ${(100 - (c / max) * 96).toFixed(2)}`;
    });
    const line = pts.length ? 'M' + pts.join(' L') : '';
    $('plot-line').setAttribute('d', line);
    $('plot-area').setAttribute('d', line ? `${line} L300 100 L0 100 Z` : '');
    setText($('plot-max'), max);
    const sum = counts.reduce((a, b) => a + b, 0);
    setText($('plot-desc'), `${sum} events in the last ${Math.round(n / 60)} minutes, peak ${Math.max(0, ...counts)} per second.`);
  }

  function setConn(live) {
    const s = $('conn-status'), st = live ? 'live' : 'lost';
    if (s.dataset.state !== st) {
      s.dataset.state = st;
      s.textContent = live ? 'Live' : 'Connection lost: retrying…';
    }
    $('lost-banner').hidden = live;
    $('console').classList.toggle('stale', !live);
  }

  function markLost(e) {
    setConn(false);
    // No relative time here: the banner is an alert region and would be re-announced every second.
    const why = e.status ? ` (the server answered: ${e.message})` : '';
    setText($('lost-text'), `The figures below are stale since ${clock(state.lastOk)}${why}.`);
  }

  async function poll(gen) {
    try {
      const d = await api('GET', '/admin/api/overview');
      if (gen !== state.pollGen) return;
      state.lastOk = Date.now();
      renderOverview(d);
      setConn(true);
    } catch (e) {
      if (gen !== state.pollGen || e.status === 401) return;
      markLost(e);
    }
    state.pollTimer = setTimeout(() => poll(gen), 1000);
  }

  // ---- sign-in ---------------------------------------------------------
  async function signIn(token, auto) {
    const btn = $('signin').querySelector('button');
    setBusy(btn, true);
    setText($('signin-error'), '');
    state.token = token;
    const gen = ++state.pollGen;
    try {
      const d = await api('GET', '/admin/api/overview');
      if (gen !== state.pollGen) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      state.signedIn = true;
      state.lastOk = Date.now();
      $('token').value = '';
      $('signin-view').hidden = true;
      $('console').hidden = false;
      renderOverview(d);
      setConn(true);
      state.pollTimer = setTimeout(() => poll(gen), 1000);
      if (!auto) $('lookup-id').focus();
    } catch (e) {
      state.token = null;
      if (e.status === 401) sessionStorage.removeItem(TOKEN_KEY);
      setText($('signin-error'), e.status === 401 ? 'Wrong token' : errText(e, 'Too many attempts'));
      if (!auto) $('token').focus();
    } finally {
      setBusy(btn, false);
    }
  }

  function signOut(message = '') {
    sessionStorage.removeItem(TOKEN_KEY);
    Object.assign(state, { token: null, signedIn: false, lookup: null, lastOk: 0 });
    state.pollGen++;
    state.lookupGen++;
    clearTimeout(state.pollTimer);
    clearTimeout(state.lookupTimer);
    const dlg = $('confirm-disconnect');
    if (dlg.open) dlg.close();
    $('console').hidden = true;
    $('lookup-result').hidden = true;
    $('conn-status').dataset.state = 'connecting';
    $('conn-status').textContent = 'Connecting…';
    for (const id of ['lookup-error', 'disconnect-result', 'test-event-result']) setText($(id), '');
    $('signin-view').hidden = false;
    setText($('signin-error'), message);
    $('token').focus();
  }

  const expire = () => signOut('Signed out: the token is no longer accepted');

  // ---- lookup ------------------------------------------------------------
  function renderLookup(d) {
    setText($('lookup-room'), d.room);
    const st = $('lookup-state');
    setText(st, d.online ? 'online' : 'offline');
    st.className = 'badge ' + (d.online ? 'online' : 'offline');
    setText($('lookup-connections'), d.connections);
    const miss = $('lookup-missing');
    miss.hidden = !(d.missing > 0);
    setText(miss, d.missing > 0 ? `${d.missing} instance(s) did not answer: the list may be incomplete` : '');
    const dis = $('disconnect');
    if (!dis.hasAttribute('aria-busy')) {
      // A focused button that gets disabled would drop focus to <body>.
      if (!d.online && document.activeElement === dis) $('lookup-id').focus();
      dis.disabled = !d.online;
    }

    const lines = [];
    for (const inst of d.instances || []) {
      for (const s of inst.sockets || []) {
        lines.push(`${s.ref} · ${s.transport} · on ${inst.host} (${inst.id}) · since ${clock(s.since)} (${ago(s.since)})`);
      }
    }
    const ul = $('lookup-sockets');
    if (!lines.length) lines.push('No socket connected.');
    while (ul.children.length > lines.length) ul.lastElementChild.remove();
    lines.forEach((t, i) => setText(ul.children[i] || ul.appendChild(el('li')), t));
    ul.classList.toggle('none', !d.connections);

    syncRows($('lookup-latest'), d.latest || [], 'data-event-id', (x) => x.id, eventCells,
      'No recent events for this room.');
    setText($('lookup-latest-source'),
      d.latestSource === 'history' ? 'from the history' : 'recent events seen by this instance');
  }

  // One chain of refreshes per lookup; a newer lookup or sign-out bumps lookupGen.
  async function runLookup(q, gen, first) {
    const btn = $('lookup').querySelector('button');
    if (first) setBusy(btn, true);
    try {
      const d = await api('GET', `/admin/api/lookup/${q.kind}/${encodeURIComponent(q.id)}`);
      if (gen !== state.lookupGen) return;
      renderLookup(d);
      setText($('lookup-error'), '');
      $('lookup-id').removeAttribute('aria-invalid');
      if (first) {
        $('lookup-result').hidden = false;
        if (document.activeElement !== $('test-room')) $('test-room').value = d.room;
      }
    } catch (e) {
      if (gen !== state.lookupGen || e.status === 401) return;
      const msg = errText(e);
      setText($('lookup-error'), first ? msg : `Could not refresh: ${msg}`);
      if (first) {
        $('lookup-result').hidden = true;
        if (e.field === 'id') $('lookup-id').setAttribute('aria-invalid', 'true');
        return;
      }
    } finally {
      if (first) setBusy(btn, false);
    }
    if (gen === state.lookupGen) state.lookupTimer = setTimeout(() => runLookup(q, gen, false), 2000);
  }

  function startLookup(q) {
    clearTimeout(state.lookupTimer);
    state.lookup = q;
    runLookup(q, ++state.lookupGen, true);
  }

  function refreshLookup() {
    if (!state.lookup) return;
    clearTimeout(state.lookupTimer);
    runLookup(state.lookup, ++state.lookupGen, false);
  }

  // ---- actions -------------------------------------------------------
  function askDisconnect() {
    state.target = { ...state.lookup, room: $('lookup-room').textContent };
    setText($('confirm-text'), `Disconnect every socket of ${state.target.room}? Its clients will try to reconnect.`);
    $('confirm-disconnect').showModal();
    $('confirm-disconnect-no').focus();
  }

  async function doDisconnect() {
    const t = state.target, btn = $('disconnect'), out = $('disconnect-result');
    $('confirm-disconnect').close();
    if (!t) return;
    setBusy(btn, true);
    setText(out, '');
    try {
      const d = await api('POST', `/admin/api/disconnect/${t.kind}/${encodeURIComponent(t.id)}`);
      out.className = 'note done';
      setText(out, `Disconnected ${d.disconnected} socket(s) of ${d.room}`);
    } catch (e) {
      if (e.status === 401) return;
      out.className = 'note fail';
      setText(out, errText(e));
    } finally {
      setBusy(btn, false);
    }
    refreshLookup();
  }

  async function sendTest(ev) {
    ev.preventDefault();
    const btn = ev.submitter || $('test-event').querySelector('button');
    const out = $('test-event-result'), room = $('test-room'), msg = $('test-message');
    if (btn.disabled) return;
    const body = { room: room.value.trim() };
    if (msg.value) body.message = msg.value;
    setBusy(btn, true);
    setText(out, '');
    room.removeAttribute('aria-invalid');
    msg.removeAttribute('aria-invalid');
    try {
      const d = await api('POST', '/admin/api/test-event', body);
      out.className = 'note done';
      setText(out, `Sent ${d.type} ${d.id} to ${(d.rooms || []).join(', ')}`);
    } catch (e) {
      if (e.status === 401) return;
      out.className = 'note fail';
      setText(out, errText(e));
      const f = { room, message: msg }[e.field];
      if (f) { f.setAttribute('aria-invalid', 'true'); f.focus(); }
    } finally {
      setBusy(btn, false);
    }
  }

  // ---- wiring --------------------------------------------------------------
  function init() {
    $('signin').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const t = $('token').value.trim();
      if (t) signIn(t, false);
    });
    $('signout').addEventListener('click', () => signOut());
    $('lookup').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const id = $('lookup-id').value.trim();
      setText($('disconnect-result'), '');
      if (id) startLookup({ kind: $('lookup-kind').value, id });
    });
    $('disconnect').addEventListener('click', askDisconnect);
    $('confirm-disconnect-yes').addEventListener('click', doDisconnect);
    $('confirm-disconnect-no').addEventListener('click', () => $('confirm-disconnect').close());
    // Native <dialog> handles Escape (cancel) and focus trapping; return focus to the opener.
    $('confirm-disconnect').addEventListener('close', () => {
      if (!$('disconnect').disabled) $('disconnect').focus();
    });
    $('test-event').addEventListener('submit', sendTest);

    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) signIn(saved, true);
    else $('token').focus();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
