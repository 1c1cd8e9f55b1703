// Hearken call review: GET /calls/{id}[?share=TOKEN].
//
// Plain script, no build step, nothing loaded from elsewhere. It reads
// GET /v1/calls/{id}/review once, renders everything in one pass, then only
// moves the playhead and toggles the class of one word while the audio plays:
// a one-hour call has ~10,000 words, so the transcript is built as one string
// of escaped text and never re-rendered, and clicks are handled by one
// delegated listener per container.
//
// Shared helpers (escaping, time and date formats, the operator token) come
// from common.js, loaded before this script.
//
// Test hooks: window.hearkenReview = { ready, renderMs, player, seek(callTime) }
// and document.body.dataset.state = 'loading' | 'login' | 'error' | 'ready'.
'use strict';

(() => {
  const scriptStart = performance.now();

  const { esc, token, fmtTime, fmtDate, operatorToken, storeToken, clearToken } = window.HearkenPage;
  const POLL_MS = 2000;
  const PALETTE_SIZE = 8;
  // A word stays highlighted this long after its end, so short pauses between
  // words do not flicker; longer pauses highlight nothing.
  const WORD_HOLD_S = 0.6;
  // After the reader scrolls, following playback waits this long.
  const FOLLOW_PAUSE_MS = 4000;

  const $ = (id) => document.getElementById(id);
  const player = $('player');
  const params = new URLSearchParams(location.search);
  const share = params.get('share') || null;
  const callId = callIdFromPath(location.pathname);

  let resolveReady;
  let rejectReady;
  const ready = new Promise((resolve, reject) => {
    resolveReady = resolve;
    rejectReady = reject;
  });
  // An error page rejects `ready`; nobody has to listen for that.
  ready.catch(() => {});

  // renderMs: script start to the first full render (fetch included);
  // timings splits it: fetchMs (request and JSON), buildMs (DOM and layout).
  const hooks = { ready, renderMs: null, timings: {}, player, seek };
  window.hearkenReview = hooks;

  // View state, set by render().
  let view = null;
  let pollTimer = 0;
  let rafId = 0;
  let currentWord = -1;
  let lastClockSecond = -1;
  let lastUserScroll = 0;
  // Height of the sticky player box; followed words are kept below it.
  let stickyHeight = 0;

  // ---------- helpers ----------

  function callIdFromPath(path) {
    const m = /^\/calls\/([^/]+)\/?$/.exec(path);
    if (!m) return null;
    try {
      return decodeURIComponent(m[1]);
    } catch (_) {
      return null;
    }
  }

  /** A finite number from JSON, or `fallback`. */
  function num(value, fallback = 0) {
    const n = typeof value === 'number' ? value : Number.NaN;
    return Number.isFinite(n) ? n : fallback;
  }

  /** The objects of a JSON array (anything else is skipped, not a crash). */
  function arr(value) {
    return Array.isArray(value) ? value.filter((x) => x !== null && typeof x === 'object') : [];
  }

  function fmtSeconds(seconds) {
    if (!Number.isFinite(seconds)) return '–';
    return seconds < 10 ? `${seconds.toFixed(1)} s` : `${Math.round(seconds)} s`;
  }

  function fmtPercent(ratio) {
    return `${Math.round(Math.max(0, Math.min(1, ratio)) * 100)}%`;
  }

  /** "Tue 12 May 2026, 14:00" in local time, or null. */
  function fmtDay(rfc3339) {
    return fmtDate(rfc3339, { weekday: true });
  }

  /** 10000 as "10,000". */
  function groupDigits(n) {
    return String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  }

  function setState(state) {
    document.body.dataset.state = state;
  }

  function show(id) {
    for (const section of ['loading', 'login', 'message', 'review']) {
      $(section).hidden = section !== id;
    }
  }

  // ---------- auth and API ----------

  class ApiError extends Error {
    constructor(status, problem) {
      const detail = problem && typeof problem.detail === 'string' ? problem.detail : null;
      const title = problem && typeof problem.title === 'string' ? problem.title : null;
      super(detail || title || `The server answered ${status}.`);
      this.status = status;
      this.detail = detail;
    }
  }

  async function api(path) {
    const url = new URL(path, location.origin);
    const headers = { Accept: 'application/json' };
    if (share) url.searchParams.set('share', share);
    else headers.Authorization = `Bearer ${operatorToken()}`;
    let res;
    try {
      res = await fetch(url.href, { headers, cache: 'no-store', credentials: 'omit' });
    } catch (_) {
      throw new ApiError(0, { detail: 'The server could not be reached.' });
    }
    if (!res.ok) {
      let problem = null;
      try {
        problem = await res.json();
      } catch (_) {
        // Not problem+json: the status alone says enough.
      }
      throw new ApiError(res.status, problem);
    }
    return res.json();
  }

  /** The audio URL with this viewer's credential (an <audio> sends no headers). */
  function audioUrl(raw) {
    const url = new URL(raw, location.href);
    if (share) {
      if (!url.searchParams.has('share')) url.searchParams.set('share', share);
    } else {
      url.searchParams.set('access_token', operatorToken() || '');
    }
    return url.href;
  }

  function reviewPath() {
    return `/v1/calls/${encodeURIComponent(callId)}/review`;
  }

  // ---------- page flow ----------

  async function start() {
    $('signout').hidden = Boolean(share);
    if (!callId) return showMessage('No call here', 'This address does not name a call.');
    if (!share && !operatorToken()) return showLogin();
    show('loading');
    setState('loading');
    let data;
    const fetchStart = performance.now();
    try {
      data = await api(reviewPath());
    } catch (e) {
      return handleApiError(e);
    }
    hooks.timings.fetchMs = Math.round((performance.now() - fetchStart) * 10) / 10;
    try {
      render(data);
    } catch (e) {
      console.error(e);
      showMessage('This call could not be shown', 'The review data was not understood.');
    }
  }

  function handleApiError(e) {
    const status = e instanceof ApiError ? e.status : 0;
    if (status === 401 && !share) {
      clearToken();
      return showLogin('That token was not accepted.');
    }
    if (status === 410) return showMessage('Link unavailable', 'This link has expired or was revoked.');
    if (status === 401) return showMessage('Link not valid', e.message);
    if (status === 404) return showMessage('Not found', e.detail || 'There is no such call.');
    return showMessage('Something went wrong', e.message || String(e));
  }

  function showLogin(error) {
    stopPolling();
    show('login');
    $('signout').hidden = true;
    const err = $('login-error');
    err.hidden = !error;
    err.textContent = error || '';
    setState('login');
    $('token-input').focus();
  }

  function showMessage(title, text) {
    stopPolling();
    $('message-title').textContent = title;
    $('message-text').textContent = text;
    show('message');
    setState('error');
    rejectReady(new Error(text));
  }

  $('login-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const value = $('token-input').value.trim();
    if (!value) return;
    storeToken(value);
    $('token-input').value = '';
    start();
  });

  $('signout').addEventListener('click', () => {
    clearToken();
    player.removeAttribute('src');
    player.load();
    showLogin();
  });

  // ---------- render ----------

  function render(data) {
    const buildStart = performance.now();
    const call = data.call || {};
    const range = data.range && Number.isFinite(data.range.start) && Number.isFinite(data.range.end)
      && data.range.end > data.range.start ? data.range : null;
    const transcript = arr(data.transcript);
    let duration = num(call.duration_seconds, NaN);
    if (!Number.isFinite(duration) || duration <= 0) {
      // Not known yet (a live call): the last thing that happened.
      duration = transcript.reduce((m, seg) => Math.max(m, num(seg.end)), 0);
      for (const p of arr(data.participants)) {
        for (const pair of arr(p.talk)) duration = Math.max(duration, num(pair[1]));
      }
    }
    const t0 = range ? range.start : 0;
    const t1 = range ? range.end : Math.max(duration, 1);

    view = {
      data, range, t0, t1, span: t1 - t0,
      offset: num(data.audio && data.audio.offset),
      people: new Map(),
      starts: new Float64Array(0), ends: new Float64Array(0), words: [],
      audioSet: false,
      insightsShown: false,
    };
    for (const p of arr(data.participants)) person(p.id, p.name);

    document.title = `Call ${call.call_id || callId} · Hearken`;
    renderHeader(call, data.consent, data.share, range, duration);
    renderLanes(data);
    renderTranscript(transcript);
    renderInsights(data.insights);
    renderConsent(data.consent);
    setAudio(data.audio, data.call);
    $('clock-end').textContent = fmtTime(t1);
    showTime(t0);

    show('review');
    $('signout').hidden = Boolean(share);
    setState('ready');
    watchStickyHeight();
    // One forced layout here, so renderMs includes laying the page out.
    void document.body.offsetHeight;
    const now = performance.now();
    hooks.timings.buildMs = Math.round((now - buildStart) * 10) / 10;
    hooks.renderMs = Math.round((now - scriptStart) * 10) / 10;
    resolveReady(hooks);
  }

  /** The display entry of a participant: a name and a palette slot. */
  function person(id, name) {
    const key = String(id ?? '');
    let p = view.people.get(key);
    if (!p) {
      p = { id: key, name: null, color: view.people.size % PALETTE_SIZE };
      view.people.set(key, p);
    }
    if (!p.name && typeof name === 'string' && name) p.name = name;
    return p;
  }

  function displayName(id, name) {
    const p = person(id, name);
    return p.name || p.id || 'Unknown';
  }

  function renderHeader(call, consent, shareInfo, range, duration) {
    $('call-title').textContent = `Call ${call.call_id || callId}`;
    const items = [];
    const started = fmtDay(call.started_at);
    if (started) items.push(['Started', started]);
    items.push(['Duration', Number.isFinite(duration) && duration > 0 ? fmtTime(duration) : '–']);
    const mode = call.consent_mode || (consent && consent.mode);
    items.push(['Consent', mode || 'none']);
    if (call.end_reason) items.push(['Ended', call.end_reason]);
    $('call-meta').innerHTML = items
      .map(([k, v]) => `<li><span class="meta-k">${esc(k)}</span> <span class="meta-v">${esc(v)}</span></li>`)
      .join('');

    const banner = $('excerpt-banner');
    banner.hidden = !range;
    if (range) banner.textContent = `Shared excerpt: ${fmtTime(range.start)}–${fmtTime(range.end)}`;

    const note = $('share-note');
    const parts = [];
    if (shareInfo) {
      const expires = fmtDay(shareInfo.expires_at);
      parts.push(expires ? `Shared link, valid until ${expires}` : 'Shared link');
      if (typeof shareInfo.note === 'string' && shareInfo.note) parts.push(`“${shareInfo.note}”`);
    }
    note.hidden = parts.length === 0;
    note.textContent = parts.join(' · ');
  }

  // ---------- lanes ----------

  /** Left edge and width, as percentages of the shown stretch, of [s, e]. */
  function place(s, e) {
    const a = Math.max(view.t0, s);
    const b = Math.min(view.t1, e);
    if (!(b > a)) return null;
    return [((a - view.t0) / view.span) * 100, ((b - a) / view.span) * 100];
  }

  function div(cls, text) {
    const d = document.createElement('div');
    d.className = cls;
    if (text !== undefined) d.textContent = text;
    return d;
  }

  function renderLanes(data) {
    const lanes = $('lanes');
    lanes.textContent = '';
    const frag = document.createDocumentFragment();
    const notRecorded = arr(data.consent && data.consent.not_recorded);

    const rows = arr(data.participants).length ? arr(data.participants)
      : [...new Set(arr(data.transcript).map((s) => s.participant))].map((id) => ({ id, talk: [] }));
    for (const p of rows) {
      const who = person(p.id, p.name);
      const row = div(`lane spk-${who.color}`);
      const label = div('lane-label');
      const dot = document.createElement('span');
      dot.className = 'dot';
      label.append(dot, document.createTextNode(displayName(p.id, p.name)));
      label.title = displayName(p.id, p.name);
      const track = div('track');
      for (const gap of notRecorded) {
        if (gap.participant != null && String(gap.participant) !== who.id) continue;
        const at = place(num(gap.start), num(gap.end));
        if (!at) continue;
        const g = div('gap');
        g.style.left = `${at[0]}%`;
        g.style.width = `${at[1]}%`;
        g.title = `Not recorded ${fmtTime(num(gap.start))}–${fmtTime(num(gap.end))}${gap.reason ? `: ${gap.reason}` : ''}`;
        track.append(g);
      }
      for (const spanPair of arr(p.talk)) {
        const at = place(num(spanPair[0]), num(spanPair[1]));
        if (!at) continue;
        const t = div('talk');
        t.style.left = `${at[0]}%`;
        t.style.width = `${at[1]}%`;
        track.append(t);
      }
      row.append(label, track);
      frag.append(row);
    }

    // Key moments as ticks under the lanes.
    const moments = arr(data.insights && data.insights.key_moments);
    if (moments.length) {
      const row = div('lane lane-moments');
      row.append(div('lane-label muted', 'Moments'));
      const track = div('track');
      for (const m of moments) {
        const s = num(m.start);
        const at = place(s, s + 1e-9);
        if (!at) continue;
        const tick = div(`tick kind-${token(m.kind)}`);
        tick.style.left = `${at[0]}%`;
        tick.dataset.s = String(s);
        tick.title = `${fmtTime(s)} ${m.kind || ''}: ${m.label || ''}`;
        track.append(tick);
      }
      row.append(track);
      frag.append(row);
    }

    // The time axis.
    const axis = div('lane lane-axis');
    axis.append(div('lane-label'));
    const scale = div('track axis');
    const step = niceStep(view.span);
    let index = 0;
    for (let t = Math.ceil(view.t0 / step) * step; t <= view.t1 + 1e-6; t += step, index++) {
      const at = (t - view.t0) / view.span;
      // Labels at the ends are aligned inwards so they are not cut off;
      // narrow screens show every other one.
      const edge = at < 0.04 ? ' first' : at > 0.96 ? ' last' : '';
      const mark = div(`axis-mark${edge}${index % 2 && !edge ? ' odd' : ''}`, fmtTime(t));
      mark.style.left = `${at * 100}%`;
      scale.append(mark);
    }
    axis.append(scale);
    frag.append(axis);

    // The playhead and the hover line sit over all tracks.
    const overlay = div('lanes-overlay');
    const head = div('playhead');
    const hover = div('hoverline');
    const hoverLabel = div('hover-label');
    hover.append(hoverLabel);
    overlay.append(hover, head);
    frag.append(overlay);
    lanes.append(frag);
    view.playhead = head;
    view.hover = hover;
    view.hoverLabel = hoverLabel;
  }

  /** An axis step giving about six labels. */
  function niceStep(span) {
    const steps = [5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];
    for (const s of steps) if (span / s <= 7) return s;
    return 14400;
  }

  /** The call time under a pointer on the lanes, or null off the tracks. */
  function timeAtPointer(event) {
    const track = $('lanes').querySelector('.track');
    if (!track) return null;
    const rect = track.getBoundingClientRect();
    if (event.clientX < rect.left || event.clientX > rect.right) return null;
    return view.t0 + ((event.clientX - rect.left) / rect.width) * view.span;
  }

  $('lanes').addEventListener('click', (event) => {
    if (!view) return;
    const tick = event.target.closest('[data-s]');
    if (tick) return seek(Number(tick.dataset.s));
    const t = timeAtPointer(event);
    if (t !== null) seek(t);
  });
  $('lanes').addEventListener('mousemove', (event) => {
    if (!view || !view.hover) return;
    const t = timeAtPointer(event);
    view.hover.classList.toggle('on', t !== null);
    if (t === null) return;
    view.hover.style.transform = `translateX(${((t - view.t0) / view.span) * 100}%)`;
    view.hoverLabel.textContent = fmtTime(t);
  });
  $('lanes').addEventListener('mouseleave', () => {
    if (view && view.hover) view.hover.classList.remove('on');
  });

  // ---------- transcript ----------

  function renderTranscript(transcript) {
    const box = $('transcript');
    const html = [];
    const starts = [];
    const ends = [];
    for (const seg of transcript) {
      const who = person(seg.participant, seg.name);
      const segStart = num(seg.start);
      html.push(
        `<div class="seg spk-${who.color}"><div class="seg-head"><span class="who">${esc(displayName(seg.participant, seg.name))}</span>`,
        `<span class="at" data-s="${segStart}">${fmtTime(segStart)}</span></div><p>`,
      );
      const words = arr(seg.words);
      for (let i = 0; i < words.length; i++) {
        const w = words[i] || {};
        const s = num(w.s, segStart);
        starts.push(s);
        ends.push(num(w.e, s));
        // Unquoted attributes: a finite number needs none, and 10,000 words
        // parse measurably faster without them.
        html.push(`${i ? ' ' : ''}<span class=w data-s=${s}>${esc(w.w)}</span>`);
      }
      html.push('</p></div>');
    }
    if (!transcript.length) html.push('<p class="muted empty">There is no transcript for this call.</p>');
    box.innerHTML = html.join('');
    $('transcript-count').textContent = starts.length ? `${groupDigits(starts.length)} words` : '';

    // Word starts in time order for the binary search; speakers who overlap
    // put later segments' words before earlier ones' last words.
    const elements = box.getElementsByClassName('w');
    const order = Array.from(starts.keys());
    let sorted = true;
    for (let i = 1; i < starts.length && sorted; i++) sorted = starts[i - 1] <= starts[i];
    if (!sorted) order.sort((a, b) => starts[a] - starts[b] || a - b);
    view.starts = Float64Array.from(order, (i) => starts[i]);
    view.ends = Float64Array.from(order, (i) => ends[i]);
    view.words = order.map((i) => elements[i]);
    currentWord = -1;
  }

  $('transcript').addEventListener('click', (event) => {
    if (!view) return;
    const target = event.target.closest('[data-s]');
    if (!target) return;
    // Selecting text to copy it is not a request to seek.
    const selection = window.getSelection();
    if (selection && !selection.isCollapsed && selection.toString().trim()) return;
    seek(Number(target.dataset.s));
  });

  /** The index of the last word starting at or before `t`, or -1. A media
   *  element reports a seek to a word's start a hair before it
   *  (5.525999… for 5.526), so `t` is taken 5 ms later: far less than
   *  any word. */
  function wordAt(t) {
    t += 0.005;
    const starts = view.starts;
    let lo = 0;
    let hi = starts.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (starts[mid] <= t) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found;
  }

  function highlight(t) {
    let i = wordAt(t);
    if (i >= 0 && t > view.ends[i] + WORD_HOLD_S) i = -1;
    if (i === currentWord) return;
    if (currentWord >= 0) view.words[currentWord].classList.remove('current');
    currentWord = i;
    if (i < 0) return;
    const el = view.words[i];
    el.classList.add('current');
    if (!player.paused) follow(el);
  }

  /** Keeps the spoken word in view while playing, unless the reader scrolled. */
  function follow(el) {
    if (!$('follow').checked || Date.now() - lastUserScroll < FOLLOW_PAUSE_MS) return;
    const rect = el.getBoundingClientRect();
    const top = stickyHeight + 8;
    if (rect.top >= top && rect.bottom <= window.innerHeight - 24) return;
    const target = window.scrollY + rect.top - top - (window.innerHeight - top) / 3;
    window.scrollTo({ top: Math.max(0, target), behavior: 'smooth' });
  }
  for (const type of ['wheel', 'touchmove']) {
    window.addEventListener(type, () => { lastUserScroll = Date.now(); }, { passive: true });
  }
  window.addEventListener('keydown', (event) => {
    if (['PageUp', 'PageDown', 'Home', 'End', 'ArrowUp', 'ArrowDown'].includes(event.key)) {
      lastUserScroll = Date.now();
    }
  });

  // ---------- side panels ----------

  function stat(label, value, extraClass = '') {
    return `<div class="stat ${extraClass}"><div class="stat-v">${esc(value)}</div><div class="stat-k">${esc(label)}</div></div>`;
  }

  function renderInsights(insights) {
    const box = $('insights');
    const moments = $('moments');
    const trackers = $('trackers');
    if (!insights || typeof insights !== 'object') {
      box.innerHTML = '<p class="muted">Insights are not ready yet.</p>';
      moments.innerHTML = '<li class="muted">None yet.</li>';
      trackers.innerHTML = '<li class="muted">None yet.</li>';
      return;
    }
    view.insightsShown = true;
    const dur = num(insights.duration_seconds, view.span);
    const silence = num(insights.silence_seconds);
    const html = ['<div class="stats">',
      stat('Interactivity', `${num(insights.interactivity).toFixed(1)}/min`),
      stat('Overlap', fmtSeconds(num(insights.overlap_seconds))),
      stat('Silence', dur > 0 ? `${fmtTime(silence)} · ${fmtPercent(silence / dur)}` : fmtTime(silence)),
      stat('Speaker switches', String(Math.round(num(insights.speaker_switches)))),
      '</div>', '<ul class="people">'];
    for (const p of arr(insights.participants)) {
      const who = person(p.participant, p.name);
      const ratio = Math.max(0, Math.min(1, num(p.talk_ratio)));
      const mono = p.longest_monologue;
      const monoText = mono ? fmtSeconds(num(mono.seconds)) : '–';
      html.push(`<li class="person spk-${who.color}">`,
        `<div class="person-head"><span class="dot"></span><span class="who">${esc(displayName(p.participant, p.name))}</span>`,
        `<span class="ratio-text">${fmtPercent(ratio)}</span></div>`,
        `<div class="ratio" role="img" aria-label="talk ratio ${fmtPercent(ratio)}"><span class="ratio-bar" data-ratio="${ratio}"></span></div>`,
        '<dl class="facts">',
        `<div><dt>Talk time</dt><dd>${fmtTime(num(p.talk_seconds))}</dd></div>`,
        `<div><dt>Turns</dt><dd>${Math.round(num(p.turns))}</dd></div>`,
        `<div><dt title="Longest monologue">Monologue</dt><dd>${mono
          ? `<span class="seekable" data-s="${num(mono.start)}" title="Longest monologue, from ${fmtTime(num(mono.start))}">${monoText}</span>`
          : monoText}</dd></div>`,
        `<div><dt>Patience</dt><dd>${p.patience_seconds == null ? '–' : fmtSeconds(num(p.patience_seconds))}</dd></div>`,
        `<div><dt>Questions</dt><dd>${Math.round(num(p.questions))}</dd></div>`,
        `<div><dt>Words</dt><dd>${groupDigits(num(p.words))}</dd></div>`,
        '</dl></li>');
    }
    html.push('</ul>');
    box.innerHTML = html.join('');
    // Widths through the CSSOM: a strict style-src forbids style attributes.
    for (const bar of box.querySelectorAll('.ratio-bar')) {
      bar.style.width = `${Number(bar.dataset.ratio) * 100}%`;
    }

    const list = arr(insights.key_moments).slice().sort((a, b) => num(a.start) - num(b.start));
    moments.innerHTML = list.length ? list.map((m) => {
      const s = num(m.start);
      const name = m.participant != null ? displayName(m.participant, null) : '';
      const label = typeof m.label === 'string' ? m.label : '';
      const who = name && !label.includes(name) ? ` · ${esc(name)}` : '';
      return `<li class="moment kind-${token(m.kind)}" data-s="${s}"><span class="kind">${esc(m.kind)}</span>`
        + `<span class="time">${fmtTime(s)}</span><span class="label">${esc(label)}${who}</span></li>`;
    }).join('') : '<li class="muted">No key moments.</li>';

    const trackerList = arr(insights.trackers);
    trackers.innerHTML = trackerList.length ? trackerList.map((t) => {
      const hits = arr(t.hits);
      const shown = hits.slice(0, 24).map((h) => `<span class="hit" data-s="${num(h.start)}" title="${esc(h.text || h.phrase)}">${fmtTime(num(h.start))}</span>`).join('');
      const more = hits.length > 24 ? `<span class="muted"> +${hits.length - 24} more</span>` : '';
      return `<li class="tracker"><div class="tracker-head"><span class="tracker-name">${esc(t.name)}</span>`
        + `<span class="count">${Math.round(num(t.count, hits.length))}</span></div>`
        + (shown ? `<div class="hits">${shown}${more}</div>` : '') + '</li>';
    }).join('') : '<li class="muted">No trackers configured.</li>';
  }

  function renderConsent(consent) {
    const box = $('consent');
    if (!consent || typeof consent !== 'object') {
      box.innerHTML = '<p class="muted">No consent record.</p>';
      return;
    }
    const html = [`<p class="consent-mode">Mode <span class="chip">${esc(consent.mode || 'none')}</span></p>`];
    const people = arr(consent.participants);
    if (people.length) {
      html.push('<ul class="consent-people">');
      for (const p of people) {
        const who = person(p.id, p.name);
        const how = [p.method, p.location].filter((x) => typeof x === 'string' && x).map(esc);
        if (p.at != null) how.push(`at <span class="seekable" data-s="${num(p.at)}">${fmtTime(num(p.at))}</span>`);
        html.push(`<li class="spk-${who.color}"><div class="consent-who"><span class="dot"></span>`,
          `<span class="who">${esc(displayName(p.id, p.name))}</span>`,
          `<span class="state state-${token(p.state)}">${esc(p.state || 'unknown')}</span></div>`,
          how.length ? `<div class="consent-how">${how.join(' · ')}</div>` : '', '</li>');
      }
      html.push('</ul>');
    }
    const gaps = arr(consent.not_recorded);
    html.push('<h3>Not recorded</h3>');
    html.push(gaps.length ? `<ul class="gaps">${gaps.map((g) => {
      const who = g.participant == null ? 'Everyone' : displayName(g.participant, null);
      return `<li data-s="${num(g.start)}"><span class="time">${fmtTime(num(g.start))}–${fmtTime(num(g.end))}</span> `
        + `<span class="who">${esc(who)}</span>${g.reason ? ` <span class="muted">${esc(g.reason)}</span>` : ''}</li>`;
    }).join('')}</ul>` : '<p class="muted">Everything was recorded.</p>');
    const events = arr(consent.events);
    if (events.length) {
      html.push('<h3>Events</h3><ol class="events">');
      for (const ev of events) {
        html.push(`<li data-s="${num(ev.t)}"><span class="time">${fmtTime(num(ev.t))}</span> <span>${esc(ev.label)}</span></li>`);
      }
      html.push('</ol>');
    }
    box.innerHTML = html.join('');
  }

  $('side').addEventListener('click', (event) => {
    if (!view) return;
    const target = event.target.closest('[data-s]');
    if (target) seek(Number(target.dataset.s));
  });

  // ---------- audio ----------

  /** Shows the player once the mix exists; until then its state, polling
   *  while it can still come (being made, or the call still going on). */
  function setAudio(audio, call) {
    const a = audio && typeof audio === 'object' ? audio : {};
    const ended = Boolean(call && typeof call === 'object' && call.ended_at);
    view.offset = num(a.offset, view.offset);
    const box = $('audio-state');
    if (typeof a.url === 'string' && a.url) {
      box.hidden = true;
      player.hidden = false;
      if (!view.audioSet) {
        view.audioSet = true;
        player.src = audioUrl(a.url);
        if (view.pendingSeek != null) seek(view.pendingSeek);
      }
      stopPolling();
      return;
    }
    player.hidden = true;
    box.hidden = false;
    const state = typeof a.state === 'string' ? a.state : 'pending';
    const progress = Math.max(0, Math.min(1, num(a.progress)));
    const text = {
      pending: 'The recording is queued for mixing…',
      running: `Mixing the recording… ${fmtPercent(progress)}`,
      failed: 'Mixing the recording failed; the transcript is still here.',
      none: ended ? 'No audio was recorded in this call.' : 'The recording is mixed when the call ends.',
      done: 'The recording is almost ready…',
    }[state] || `Audio: ${state}`;
    $('audio-state-text').textContent = text;
    $('audio-progress').style.width = `${progress * 100}%`;
    box.className = `audio-state state-${token(state)}`;
    if (state === 'failed' || (state === 'none' && ended)) stopPolling();
    else schedulePoll();
  }

  function schedulePoll() {
    stopPolling();
    pollTimer = window.setTimeout(poll, POLL_MS);
  }

  function stopPolling() {
    if (pollTimer) window.clearTimeout(pollTimer);
    pollTimer = 0;
  }

  async function poll() {
    pollTimer = 0;
    if (!view) return;
    let data;
    try {
      data = await api(reviewPath());
    } catch (e) {
      if (e instanceof ApiError && [401, 404, 410].includes(e.status)) return handleApiError(e);
      return schedulePoll(); // a blip: try again
    }
    if (!data || typeof data !== 'object') return schedulePoll();
    if (!view.insightsShown && data.insights) renderInsights(data.insights);
    setAudio(data.audio, data.call);
  }

  /** Seeks the player to call time `callTime`; returns the file time. */
  function seek(callTime) {
    if (!view || !Number.isFinite(callTime)) return null;
    const t = Math.max(view.t0, Math.min(view.t1, callTime));
    const fileTime = Math.max(0, t - view.offset);
    if (!view.audioSet) view.pendingSeek = t;
    try {
      player.currentTime = fileTime;
    } catch (_) {
      // No media yet: applied when the URL arrives (pendingSeek).
    }
    showTime(t);
    return fileTime;
  }

  /** Moves the playhead, the clock and the highlighted word to call time `t`. */
  function showTime(t) {
    if (!view) return;
    if (view.playhead) {
      const pct = Math.max(0, Math.min(100, ((t - view.t0) / view.span) * 100));
      view.playhead.style.transform = `translateX(${pct}%)`;
    }
    const second = Math.floor(t);
    if (second !== lastClockSecond) {
      lastClockSecond = second;
      $('clock-now').textContent = fmtTime(t);
    }
    highlight(t);
  }

  function syncFromPlayer() {
    if (view && view.audioSet) showTime(player.currentTime + view.offset);
  }

  function frame() {
    syncFromPlayer();
    rafId = player.paused ? 0 : requestAnimationFrame(frame);
  }

  player.addEventListener('play', () => {
    if (!rafId) rafId = requestAnimationFrame(frame);
  });
  // timeupdate also runs where animation frames do not (a background tab).
  for (const type of ['timeupdate', 'seeked', 'seeking', 'pause', 'loadedmetadata']) {
    player.addEventListener(type, syncFromPlayer);
  }
  player.addEventListener('error', () => {
    if (!view || !view.audioSet) return;
    const box = $('audio-state');
    box.hidden = false;
    box.className = 'audio-state state-failed';
    $('audio-state-text').textContent = 'The recording could not be played.';
  });

  // Space plays and pauses, arrows step five seconds (outside form fields).
  window.addEventListener('keydown', (event) => {
    if (!view || document.body.dataset.state !== 'ready') return;
    const tag = event.target && event.target.tagName;
    if (['INPUT', 'TEXTAREA', 'SELECT', 'BUTTON', 'AUDIO'].includes(tag) || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === ' ' && view.audioSet) {
      event.preventDefault();
      if (player.paused) player.play().catch(() => {});
      else player.pause();
    } else if ((event.key === 'ArrowLeft' || event.key === 'ArrowRight') && view.audioSet) {
      event.preventDefault();
      seek(player.currentTime + view.offset + (event.key === 'ArrowLeft' ? -5 : 5));
    }
  });

  // ---------- sticky header height ----------

  let stickyObserver = null;
  /** Tells the side column and follow() how tall the sticky player box is.
   * The observer reports after layout, so this forces none; the value is set
   * on the side column only, as a custom property on the root would restyle
   * all 10,000 words. */
  function watchStickyHeight() {
    if (stickyObserver || !('ResizeObserver' in window)) return;
    const box = $('playerbox');
    const side = $('side');
    stickyObserver = new ResizeObserver(() => {
      const height = getComputedStyle(box).position === 'sticky' ? box.offsetHeight : 0;
      if (height === stickyHeight) return;
      stickyHeight = height;
      side.style.setProperty('--sticky-h', `${height}px`);
    });
    stickyObserver.observe(box);
  }

  start();
})();
