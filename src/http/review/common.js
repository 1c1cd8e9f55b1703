// Hearken pages: helpers shared by the review page (review.js) and the calls
// list (calls.js). Loaded first, deferred, by both pages; it only defines
// window.HearkenPage and touches neither the DOM nor the network.
//
// One frozen object rather than loose globals: the pages' own scripts keep
// their names to themselves (each runs in a closure), and nothing a page
// does can swap a helper out from under the other.
'use strict';

(() => {
  // The operator token is shared by both pages (signing in on one signs in on
  // the other) and kept for this tab only, never in localStorage or a cookie.
  const TOKEN_KEY = 'hearken-token';

  const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
  /** Text safe inside HTML and inside quoted attribute values. */
  function esc(value) {
    return String(value ?? '').replace(/[&<>"']/g, (c) => ESCAPES[c]);
  }

  /** A word safe to use in a class name (kinds and states come from JSON). */
  function token(value) {
    return String(value ?? '').toLowerCase().replace(/[^a-z0-9_-]/g, '-').slice(0, 40);
  }

  function pad2(n) {
    return n < 10 ? '0' + n : String(n);
  }

  /** mm:ss, or h:mm:ss from an hour on; '–' for anything but a finite number. */
  function fmtTime(seconds) {
    if (!Number.isFinite(seconds)) return '–';
    const total = Math.max(0, Math.floor(seconds + 1e-6));
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = total % 60;
    return h > 0 ? `${h}:${pad2(m)}:${pad2(s)}` : `${pad2(m)}:${pad2(s)}`;
  }

  const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  /** "12 May 2026, 14:00" in local time, or with { weekday: true }
   *  "Tue 12 May 2026, 14:00"; null unless `rfc3339` is a parseable string.
   *  No Intl: its start-up is slow. */
  function fmtDate(rfc3339, { weekday = false } = {}) {
    if (typeof rfc3339 !== 'string') return null;
    const d = new Date(rfc3339);
    if (Number.isNaN(d.getTime())) return null;
    const day = weekday ? `${WEEKDAYS[d.getDay()]} ` : '';
    return `${day}${d.getDate()} ${MONTHS[d.getMonth()]} ${d.getFullYear()}, `
      + `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
  }

  // The token when sessionStorage is unavailable (some privacy settings): it
  // then lasts only until the page is left.
  let memoryToken = null;

  /** The operator token, or null when nobody has signed in. */
  function operatorToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || memoryToken;
    } catch (_) {
      return memoryToken;
    }
  }

  /** Keeps `value` as the operator token; a falsy value forgets it. */
  function storeToken(value) {
    memoryToken = value || null;
    try {
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      // Storage disabled: memoryToken keeps it for this page.
    }
  }

  /** Forgets the operator token (signing out, or the server answered 401). */
  function clearToken() {
    storeToken(null);
  }

  window.HearkenPage = Object.freeze({
    esc, token, pad2, fmtTime, fmtDate, operatorToken, storeToken, clearToken,
  });
})();
