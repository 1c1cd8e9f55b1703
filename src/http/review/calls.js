// Hearken calls list: GET /calls. Reads GET /v1/calls with the operator
// token (kept by common.js for this tab, asked for when missing) and shows
// the calls newest first, each row linking to its review page /calls/{id}.
// Shared helpers come from common.js, loaded before this script.
//
// Test hooks: window.hearkenCalls = { ready } (resolved after the first
// render) and document.body.dataset.state = 'loading' | 'login' | 'error' | 'ready'.
'use strict';

(() => {
  const { esc, token, pad2, fmtTime, fmtDate, operatorToken, storeToken, clearToken } = window.HearkenPage;
  // While a call is live or a job is running, the list refreshes itself.
  const REFRESH_MS = 10000;

  const $ = (id) => document.getElementById(id);
  let refreshTimer = 0;
  let resolveReady;
  const ready = new Promise((resolve) => { resolveReady = resolve; });
  window.hearkenCalls = { ready };

  function startedMs(call) {
    const ms = typeof call.started_at === 'string' ? Date.parse(call.started_at) : Number.NaN;
    return Number.isNaN(ms) ? -Infinity : ms;
  }
  /** "12 May 2026, 14:00" in local time (the review page adds the weekday). */
  function fmtStarted(call) {
    return fmtDate(call.started_at) || 'Unknown start';
  }
  function fmtClock(d) {
    return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  }

  function show(id) {
    for (const section of ['loading', 'login', 'message', 'list']) $(section).hidden = section !== id;
  }

  function showLogin(error) {
    window.clearTimeout(refreshTimer);
    show('login');
    $('signout').hidden = true;
    $('login-error').hidden = !error;
    $('login-error').textContent = error || '';
    document.body.dataset.state = 'login';
    $('token-input').focus();
  }

  function showMessage(title, text) {
    window.clearTimeout(refreshTimer);
    $('message-title').textContent = title;
    $('message-text').textContent = text;
    show('message');
    document.body.dataset.state = 'error';
  }

  async function load() {
    window.clearTimeout(refreshTimer);
    if (!operatorToken()) return showLogin();
    let res;
    try {
      res = await fetch('/v1/calls', {
        headers: { Accept: 'application/json', Authorization: `Bearer ${operatorToken()}` },
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch (_) {
      return showMessage('Something went wrong', 'The server could not be reached.');
    }
    if (res.status === 401) {
      clearToken();
      return showLogin('That token was not accepted.');
    }
    let body = null;
    try {
      body = await res.json();
    } catch (_) {
      // Not JSON: the status says enough.
    }
    if (!res.ok) {
      const detail = body && typeof body.detail === 'string' ? body.detail : `The server answered ${res.status}.`;
      return showMessage('Something went wrong', detail);
    }
    render(body && Array.isArray(body.calls) ? body.calls : []);
  }

  function badge(state) {
    const text = typeof state === 'string' && state ? state.replace(/_/g, ' ') : '–';
    return `<span class="state state-${token(state)}">${esc(text)}</span>`;
  }

  function render(calls) {
    const rows = calls.filter((c) => c && typeof c === 'object')
      .map((c) => ({ c, ms: startedMs(c) }))
      .sort((a, b) => b.ms - a.ms);
    $('calls').innerHTML = rows.map(({ c }) => {
      const id = String(c.call_id ?? '');
      const href = `/calls/${encodeURIComponent(id)}`;
      const participants = typeof c.participants === 'number' ? c.participants : '–';
      const node = typeof c.node === 'string' && c.node ? ` <span class="muted">on ${esc(c.node)}</span>` : '';
      return `<tr data-href="${esc(href)}">`
        + `<td><a href="${esc(href)}">${esc(fmtStarted(c))}</a><span class="call-id">${esc(id)}</span></td>`
        + `<td class="num">${fmtTime(c.duration_seconds)}</td>`
        + `<td class="num">${esc(participants)}</td>`
        + `<td>${esc(c.consent_mode || 'none')}</td>`
        + `<td>${badge(c.transcript)}</td><td>${badge(c.insights)}</td><td>${badge(c.mix)}</td>`
        + `<td>${badge(c.state)}${node}</td></tr>`;
    }).join('');
    $('no-calls').hidden = rows.length > 0;
    $('calls-count').textContent = rows.length ? `${rows.length}` : '';
    $('refreshed').textContent = `Updated ${fmtClock(new Date())}`;
    show('list');
    $('signout').hidden = false;
    document.body.dataset.state = 'ready';
    resolveReady(rows.length);
    const busy = rows.some(({ c }) => c.state === 'active'
      || [c.insights, c.mix].some((s) => s === 'pending' || s === 'running'));
    if (busy) refreshTimer = window.setTimeout(load, REFRESH_MS);
  }

  // A click anywhere on a row opens the call (links keep their own behaviour,
  // so a middle click or ctrl-click still opens a new tab).
  $('calls').addEventListener('click', (event) => {
    if (event.target.closest('a')) return;
    const row = event.target.closest('tr[data-href]');
    if (row) location.assign(row.dataset.href);
  });
  $('refresh').addEventListener('click', load);
  $('login-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const value = $('token-input').value.trim();
    if (!value) return;
    storeToken(value);
    $('token-input').value = '';
    show('loading');
    load();
  });
  $('signout').addEventListener('click', () => {
    clearToken();
    showLogin();
  });

  load();
})();
