// Compliance ledger dashboard: Customer Accounts, "Delete user", erasure requests,
// revenue; and, signed in with the admin key, the platform operator's view of the
// same pages across broadcasters.
//
// A plain script (no build step, no dependencies) that talks to the public /v1 API
// with the API key (broadcaster `lk_`, or the operator's admin key `lka_`) kept in
// sessionStorage. Rules it keeps:
// - personal data never goes into the page's address, storage or the console;
//   the DOM is built with textContent only (Trusted Types are enforced by the CSP);
//   erasure requests carry ids and a non-personal reference only;
// - a 401 anywhere signs out and says why; a network failure says so and keeps
//   the page as it was; every other API error is shown with its machine-readable
//   code; a 409 shows every blocker the API returned.
'use strict';

(function () {
  const KEY_SLOT = 'ledger.apiKey';
  const PAGE_SIZE = 10;
  const TIMEOUT_MS = 20000;

  const CATEGORY_LABELS = {
    email: 'Email address',
    password: 'Password',
    first_name: 'First name',
    last_name: 'Last name',
    address: 'Address',
    company_name: 'Company name',
    phone_number: 'Phone number',
    custom_answers: 'Custom answers provided at registration',
    ip_addresses: 'IP addresses (logins and payments)',
  };
  const PRECONDITION_LABELS = {
    CUSTOMER_VISIBLE_TO_BROADCASTER: 'Customer belongs to your broadcaster',
    BROADCASTER_IS_WHITE_LABEL: 'Your broadcaster is white-label',
    NOT_SHARED_ACROSS_BROADCASTERS: 'Account not shared with other broadcasters',
    NO_ACTIVE_SUBSCRIPTION: 'No active subscription',
    ON_FORGET_LIST: 'On the forget list (decided before, re-applied)',
    PLATFORM_OPERATOR: 'Erased by the platform operator (the broadcaster rules do not apply)',
  };

  const CATEGORIES = Object.keys(CATEGORY_LABELS);
  const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  // What the API accepts as a reference (a ticket number): never personal data.
  const REFERENCE_RE = /^[A-Za-z0-9._:\/#-]{1,64}$/;
  const REQUEST_PAGE = 50;
  // Which queries of GET /v1/erasure-requests make up each filter of the panel.
  const REQUEST_FILTERS = {
    pending: [{ status: 'open' }, { status: 'deferred' }],
    overdue: [{ overdue: 'true' }],
    completed: [{ status: 'completed' }],
    refused: [{ status: 'refused' }],
    cancelled: [{ status: 'cancelled' }],
    all: [{}],
  };
  const STATUS_LABELS = {
    open: 'Open',
    deferred: 'Deferred',
    completed: 'Completed',
    refused: 'Refused',
    cancelled: 'Cancelled',
  };
  const EXTENSION_REASONS = {
    COMPLEXITY: 'Complexity of the request',
    NUMBER_OF_REQUESTS: 'Number of requests',
  };
  // The confirmation dialog's wording per kind of erasure.
  const CONFIRM_MODES = {
    now: { title: 'Delete this user permanently?', submit: 'Delete user permanently', busy: 'Deleting…' },
    later: { title: 'Erase this user when the subscription ends?', submit: 'File the erasure request', busy: 'Filing…' },
    terminate: { title: 'Terminate the subscriptions and delete this user?', submit: 'Terminate and delete permanently', busy: 'Terminating and deleting…' },
    operator: { title: 'Erase this account as the platform operator?', submit: 'Erase as operator', busy: 'Erasing…' },
  };

  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ state

  const state = {
    key: null,
    role: 'broadcaster', // or 'operator' (admin key)
    opView: null, // the operator's view of the open customer
    requests: { filter: 'pending', queries: [], items: [] },
    pending: new Map(), // customer id -> its open or deferred request
    confirmMode: 'now',
    action: null, // what the action dialog does on submit
    search: { q: '', cursors: [null], page: 0, next: null },
    selected: null, // customer id
    summary: null,
    preview: null,
    receipt: null,
    revenueDigest: null,
    loadToken: 0,
    idempotencyKey: null,
    idempotencyFor: null, // what the key was made for (see keyFor)
    busy: false,
  };

  // ------------------------------------------------------------------ helpers

  function el(tag, props, children) {
    const e = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === 'text') e.textContent = v;
        else if (k === 'class') e.className = v;
        else if (k in e && typeof v !== 'string') e[k] = v;
        else e.setAttribute(k, v === true ? '' : v);
      }
    }
    for (const c of children || []) {
      if (c === null || c === undefined || c === false) continue;
      e.append(typeof c === 'string' ? document.createTextNode(c) : c);
    }
    return e;
  }

  // The Idempotency-Key for a write: the same while its content stays the same (a
  // retry after a network failure cannot act twice), a new one once it changes
  // (say a reference corrected after a refusal), which the server would otherwise
  // refuse as IDEMPOTENCY_KEY_REUSED.
  function keyFor(content) {
    if (state.idempotencyFor !== content) {
      state.idempotencyFor = content;
      state.idempotencyKey = randomKey();
    }
    return state.idempotencyKey;
  }

  function clear(node) {
    node.replaceChildren();
  }

  function randomKey() {
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return 'dash-' + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  }

  function fmtTime(iso) {
    if (!iso) return '–';
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso;
    return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  }

  function timeEl(iso) {
    return el('time', { datetime: iso || '', text: fmtTime(iso) });
  }

  function dateEl(iso) {
    const d = new Date(iso);
    const text = Number.isNaN(d.getTime()) ? iso : d.toLocaleDateString(undefined, { dateStyle: 'medium' });
    return el('time', { datetime: iso || '', title: fmtTime(iso), text });
  }

  // Integer minor units to a decimal string, exactly (no floating point).
  function minorToDecimal(minor, digits) {
    const neg = minor < 0;
    const s = String(Math.abs(minor)).padStart(digits + 1, '0');
    const whole = digits ? s.slice(0, s.length - digits) : s;
    const frac = digits ? '.' + s.slice(s.length - digits) : '';
    return (neg ? '-' : '') + whole + frac;
  }

  function money(minor, currency) {
    try {
      const f = new Intl.NumberFormat(undefined, { style: 'currency', currency });
      const digits = f.resolvedOptions().maximumFractionDigits;
      return f.format(minorToDecimal(minor, digits));
    } catch (_) {
      return minorToDecimal(minor, 2) + ' ' + currency;
    }
  }

  function shortId(id) {
    return id ? id.slice(0, 8) + '…' : '';
  }

  function enc(id) {
    return encodeURIComponent(id);
  }

  function isOperator() {
    return state.role === 'operator';
  }

  function currentCustomerId() {
    if (isOperator()) return state.opView ? state.opView.customer_id : null;
    return state.summary ? state.summary.customer_id : null;
  }

  // A date `months` later, clamped to the month's last day (as the server does).
  function addMonthsUTC(d, months) {
    const r = new Date(d.getTime());
    const day = r.getUTCDate();
    r.setUTCDate(1);
    r.setUTCMonth(r.getUTCMonth() + months);
    const last = new Date(Date.UTC(r.getUTCFullYear(), r.getUTCMonth() + 1, 0)).getUTCDate();
    r.setUTCDate(Math.min(day, last));
    return r;
  }

  function fullName(p) {
    return [p.first_name, p.last_name].filter(Boolean).join(' ') || '(no name)';
  }

  // ------------------------------------------------------------------ API

  class ApiFailure extends Error {
    constructor(kind, status, body) {
      super(kind);
      this.kind = kind; // 'network' | 'http' | 'unauthorized'
      this.status = status || 0;
      this.body = body || null;
    }
    get code() {
      return (this.body && this.body.code) || '';
    }
  }

  async function api(method, path, opts) {
    const o = opts || {};
    let url = path;
    if (o.query) {
      const qs = new URLSearchParams();
      for (const [k, v] of Object.entries(o.query)) if (v !== null && v !== undefined) qs.set(k, v);
      url += '?' + qs.toString();
    }
    const headers = { Accept: 'application/json', Authorization: 'Bearer ' + (o.key || state.key) };
    if (o.idempotencyKey) headers['Idempotency-Key'] = o.idempotencyKey;
    if (o.body !== undefined) headers['Content-Type'] = 'application/json';
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
    let res;
    try {
      res = await fetch(url, {
        method,
        headers,
        body: o.body === undefined ? undefined : JSON.stringify(o.body),
        cache: 'no-store',
        credentials: 'omit',
        referrerPolicy: 'no-referrer',
        signal: abort.signal,
      });
    } catch (_) {
      throw new ApiFailure('network');
    } finally {
      clearTimeout(timer);
    }
    let body = null;
    try {
      body = await res.json();
    } catch (_) {
      body = null;
    }
    if (res.status === 401) throw new ApiFailure('unauthorized', 401, body);
    if (!res.ok) throw new ApiFailure('http', res.status, body);
    return body;
  }

  // Shared handling: 401 signs out; network failures show the banner.
  function handleCommon(err) {
    if (err instanceof ApiFailure && err.kind === 'unauthorized') {
      signOut('Your API key is invalid, expired or was revoked. Sign in again with a valid key.');
      return true;
    }
    if (err instanceof ApiFailure && err.kind === 'network') {
      showBanner('Cannot reach the server. Check your connection and try again.');
      return true;
    }
    return false;
  }

  function describe(err) {
    if (err instanceof ApiFailure) {
      if (err.kind === 'network') return 'Cannot reach the server. Check your connection and try again.';
      if (err.body && err.body.message) return err.body.message + ' (' + err.status + ' ' + err.code + ')';
      return 'The server answered ' + err.status + (err.code ? ' ' + err.code : '') + '.';
    }
    return 'Something went wrong.';
  }

  // A 404 in words, with its code.
  function notFoundText(what) {
    return what + ' (404 NOT_FOUND)';
  }

  // ------------------------------------------------------------------ banner

  function showBanner(text) {
    $('banner-text').textContent = text;
    $('banner').hidden = false;
  }

  function hideBanner() {
    $('banner').hidden = true;
    $('banner-text').textContent = '';
  }

  // ------------------------------------------------------------------ sign-in

  function showSignIn(message) {
    $('app').hidden = true;
    $('session').hidden = true;
    $('signin').hidden = false;
    const err = $('signin-error');
    err.textContent = message || '';
    err.hidden = !message;
    $('api-key').value = '';
    $('api-key').focus();
  }

  async function enterApp() {
    $('signin').hidden = true;
    $('app').hidden = false;
    $('session').hidden = false;
    const k = state.key;
    state.role = k.startsWith('lka_') ? 'operator' : 'broadcaster';
    const op = isOperator();
    document.body.classList.toggle('operator', op);
    $('who').textContent = (op ? 'Platform operator · admin key ' : 'Signed in · key ') + k.slice(0, 6) + '…' + k.slice(-4);
    $('accounts-title').textContent = op ? 'Customer Accounts · all broadcasters' : 'Customer Accounts';
    $('search-label').textContent = op ? 'Open a customer by id' : 'Search by customer id, email or name';
    $('search-q').placeholder = op ? 'Customer id (UUID)' : 'e.g. ada@example.com';
    $('search-hint').hidden = !op;
    $('revenue').hidden = op;
    resetSummary();
    clearResults();
    $('search-status').textContent = '';
    $('search-q').value = '';
    $('search-q').focus();
    await Promise.all([loadRequests(false), op ? null : loadRevenue()]);
  }

  // A request every key of its kind may make: the revenue for a broadcaster's
  // key, the erasure requests for the admin key.
  function checkKey(key) {
    if (key.startsWith('lka_')) return api('GET', '/v1/erasure-requests', { key, query: { limit: 1 } });
    return api('GET', '/v1/revenue', { key });
  }

  async function signIn(ev) {
    ev.preventDefault();
    const key = $('api-key').value.trim();
    const err = $('signin-error');
    if (!key) {
      err.textContent = 'Enter your API key.';
      err.hidden = false;
      $('api-key').focus();
      return;
    }
    const btn = $('signin-submit');
    btn.disabled = true;
    btn.textContent = 'Signing in…';
    err.hidden = true;
    try {
      await checkKey(key);
      state.key = key;
      sessionStorage.setItem(KEY_SLOT, key);
      hideBanner();
      await enterApp();
    } catch (e) {
      err.textContent =
        e instanceof ApiFailure && e.kind === 'unauthorized'
          ? 'This API key is not valid. Check it and try again.'
          : describe(e);
      err.hidden = false;
      $('api-key').focus();
    } finally {
      btn.disabled = false;
      btn.textContent = 'Sign in';
    }
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY_SLOT);
    state.key = null;
    state.revenueDigest = null;
    state.search = { q: '', cursors: [null], page: 0, next: null };
    state.loadToken++;
    for (const d of [$('confirm-dialog'), $('action-dialog')]) if (d.open) d.close();
    state.role = 'broadcaster';
    state.pending = new Map();
    state.requests = { filter: 'pending', queries: [], items: [] };
    document.body.classList.remove('operator');
    clear($('requests-body'));
    $('requests-table').hidden = true;
    $('requests-more').hidden = true;
    $('requests-status').textContent = '';
    hideBanner();
    resetSummary();
    clearResults();
    $('search-q').value = '';
    $('search-status').textContent = '';
    clear($('revenue-list'));
    $('revenue-digest').textContent = '–';
    $('revenue-check').hidden = true;
    showSignIn(message);
  }

  // ------------------------------------------------------------------ search

  function clearResults() {
    clear($('results'));
    $('pager').hidden = true;
  }

  async function runSearch(ev) {
    ev.preventDefault();
    const q = $('search-q').value.trim();
    if (!q) {
      $('search-status').textContent = 'Type a customer id, an email address or the start of a name.';
      $('search-q').focus();
      return;
    }
    if (isOperator()) {
      // No search across broadcasters by email or name: the operator opens by id.
      if (!UUID_RE.test(q)) {
        $('search-status').textContent = 'Enter a customer id (a UUID). The operator view does not search by email or name.';
        $('search-q').focus();
        return;
      }
      $('search-status').textContent = '';
      await openCustomer(q.toLowerCase());
      return;
    }
    state.search = { q, cursors: [null], page: 0, next: null };
    await loadPage();
  }

  async function loadPage() {
    const s = state.search;
    const status = $('search-status');
    status.textContent = 'Searching…';
    $('accounts').setAttribute('aria-busy', 'true');
    try {
      // The query (an email or a name) goes in the body: never in a URL.
      const body = { q: s.q, limit: PAGE_SIZE };
      if (s.cursors[s.page]) body.cursor = s.cursors[s.page];
      const page = await api('POST', '/v1/customers/search', { body });
      s.next = page.next_cursor || null;
      renderResults(page.items || []);
      hideBanner();
    } catch (e) {
      if (!handleCommon(e)) status.textContent = 'Search failed: ' + describe(e);
      else if (e.kind === 'network') status.textContent = 'Search failed: the server could not be reached.';
    } finally {
      $('accounts').removeAttribute('aria-busy');
    }
  }

  function renderResults(items) {
    const s = state.search;
    const list = $('results');
    clear(list);
    const n = items.length;
    if (n === 0 && s.page === 0) {
      $('search-status').textContent = 'No customers match this search.';
    } else {
      const first = s.page * PAGE_SIZE + 1;
      $('search-status').textContent =
        n === 1 && s.page === 0 && !s.next
          ? '1 customer found.'
          : 'Showing ' + (n === 1 ? String(first) : first + '–' + (first + n - 1)) + (s.next ? ' (more on the next page)' : '') + '.';
    }
    for (const c of items) list.append(resultItem(c));
    $('pager').hidden = s.page === 0 && !s.next;
    $('prev-page').disabled = s.page === 0;
    $('next-page').disabled = !s.next;
    $('page-label').textContent = 'Page ' + (s.page + 1);
  }

  function resultItem(c) {
    const erased = c.status === 'erased' || !c.profile;
    const name = erased ? 'Erased customer' : fullName(c.profile);
    const btn = el('button', { type: 'button', class: 'result', 'data-id': c.customer_id }, [
      el('span', { class: 'result-name', text: name }),
      el('span', { class: 'result-email', text: erased ? shortId(c.customer_id) : c.profile.email }),
      el('span', { class: 'badges' }, [
        erased ? el('span', { class: 'badge erased', text: 'erased' }) : null,
        c.shared ? el('span', { class: 'badge', text: 'shared' }) : null,
        c.subscriptions && c.subscriptions.some((x) => x.active)
          ? el('span', { class: 'badge active', text: 'active subscription' })
          : null,
      ]),
    ]);
    if (c.customer_id === state.selected) btn.setAttribute('aria-current', 'true');
    btn.addEventListener('click', () => openCustomer(c.customer_id));
    return el('li', null, [btn]);
  }

  function markSelected(id) {
    for (const b of $('results').querySelectorAll('button.result')) {
      if (b.dataset.id === id) b.setAttribute('aria-current', 'true');
      else b.removeAttribute('aria-current');
    }
  }

  // ------------------------------------------------------------------ summary

  function resetSummary() {
    state.selected = null;
    state.summary = null;
    state.opView = null;
    state.preview = null;
    state.receipt = null;
    $('summary-title').textContent = 'Customer summary';
    $('summary-sub').textContent = '';
    clear($('summary-body'));
    $('summary-body').hidden = true;
    clear($('receipt'));
    $('receipt').hidden = true;
    $('erasure-note').hidden = true;
    clear($('erasure-note'));
    const del = $('delete-user');
    del.hidden = true;
    del.disabled = true;
    $('summary-status').hidden = false;
    $('summary-status').textContent = isOperator()
      ? 'Open a customer by id, here or from an erasure request, to see its summary.'
      : 'Search for a customer and open it to see its summary.';
  }

  async function openCustomer(id) {
    const token = ++state.loadToken;
    state.selected = id;
    state.receipt = null;
    markSelected(id);
    $('summary').setAttribute('aria-busy', 'true');
    $('summary-status').textContent = 'Loading customer…';
    $('summary-status').hidden = false;
    $('delete-user').disabled = true;
    try {
      await fetchCustomer(id);
      if (token !== state.loadToken) return;
      renderSummary();
      hideBanner();
      if (window.matchMedia('(max-width: 56rem)').matches) $('summary-title').focus();
    } catch (e) {
      if (token !== state.loadToken) return;
      if (e instanceof ApiFailure && e.status === 404) {
        resetSummary();
        $('summary-status').textContent = notFoundText(
          isOperator() ? 'No customer has this id.' : 'This customer does not exist for your broadcaster.',
        );
      } else if (!handleCommon(e)) {
        $('summary-status').textContent = 'Could not load the customer: ' + describe(e);
      } else if (e.kind === 'network') {
        $('summary-status').textContent = 'Could not load the customer: the server could not be reached.';
      }
    } finally {
      if (token === state.loadToken) $('summary').removeAttribute('aria-busy');
    }
  }

  // Reads what the summary panel shows: the broadcaster's summary and erasure
  // preview, or the operator's view (ids only).
  async function fetchCustomer(id) {
    if (isOperator()) {
      const view = await api('GET', '/v1/admin/customers/' + enc(id));
      if (state.selected === id) state.opView = view;
      return;
    }
    const [summary, preview] = await Promise.all([
      api('GET', '/v1/customers/' + enc(id)),
      api('GET', '/v1/customers/' + enc(id) + '/erasure-preview'),
    ]);
    if (state.selected === id) {
      state.summary = summary;
      state.preview = preview;
    }
  }

  function dlRow(term, value) {
    const dd = el('dd');
    if (value === null || value === undefined || value === '') dd.append(el('span', { class: 'muted', text: '–' }));
    else dd.append(value);
    return [el('dt', { text: term }), dd];
  }

  // The summary panel's body, emptied and shown (the status line hidden).
  function emptySummaryBody() {
    const body = $('summary-body');
    clear(body);
    $('summary-status').textContent = '';
    $('summary-status').hidden = true;
    body.hidden = false;
    return body;
  }

  function renderSummary() {
    if (isOperator()) {
      renderOperatorSummary();
      return;
    }
    const s = state.summary;
    const body = emptySummaryBody();
    const erased = s.status === 'erased' || !s.profile;
    const p = s.profile;
    $('summary-title').textContent = erased ? 'Erased customer' : fullName(p);
    $('summary-sub').textContent = 'Customer ' + s.customer_id;

    const identity = el('dl', { class: 'facts' });
    if (erased) {
      const t = s.tombstone || {};
      identity.append(
        ...dlRow('Status', el('span', { class: 'badge erased', text: 'Personal data erased' })),
        ...dlRow('Erased at', timeEl(t.erased_at)),
        ...dlRow('Erasure request', el('code', { text: t.request_id || '–' })),
        ...dlRow('Log position', t.position !== undefined ? String(t.position) : null),
      );
      body.append(
        el('div', { class: 'tombstone', role: 'note' }, [
          el('strong', { text: 'Tombstone. ' }),
          'This account was anonymized. Name, email, phone, address, company, answers and IP addresses are gone for good; only ids and revenue history remain.',
        ]),
      );
    } else {
      identity.append(
        ...dlRow('Name', fullName(p)),
        ...dlRow('Email', p.email),
        ...dlRow('Phone', p.phone_number),
        ...dlRow('Address', p.address),
        ...dlRow('Company', p.company_name),
      );
      if (p.custom_answers && p.custom_answers.length) {
        const ul = el('ul', { class: 'plain' });
        for (const a of p.custom_answers) ul.append(el('li', null, [el('span', { class: 'muted', text: a.question + ' ' }), a.answer]));
        identity.append(...dlRow('Answers', ul));
      }
    }
    identity.append(
      ...dlRow(
        'Linked broadcasters',
        s.shared ? 'Your broadcaster and at least one other (shared account)' : 'Your broadcaster only',
      ),
      ...dlRow('Created', timeEl(s.created_at)),
      ...dlRow('Last change', timeEl(s.updated_at)),
    );
    body.append(el('h3', { text: erased ? 'Account' : 'Identity' }), identity);

    // Subscriptions
    body.append(el('h3', { text: 'Subscriptions' }));
    if (!s.subscriptions.length) {
      body.append(el('p', { class: 'muted', text: 'No subscriptions.' }));
    } else {
      const rows = s.subscriptions.map((x) =>
        el('tr', null, [
          el('td', null, [el('code', { text: shortId(x.subscription_id), title: x.subscription_id, 'aria-label': x.subscription_id })]),
          el('td', { text: x.offer_id }),
          el('td', null, [
            el('span', { class: 'badge ' + (x.active ? 'active' : ''), text: x.active ? 'Active' : 'Terminated' }),
          ]),
          el('td', { class: 'nowrap' }, [dateEl(x.started_at)]),
          el('td', { class: 'nowrap' }, [x.terminated_at ? dateEl(x.terminated_at) : '–']),
          el('td', { text: x.yours ? 'You' : 'Another broadcaster' }),
          el('td', null, [terminateCell(x)]),
        ]),
      );
      body.append(
        el('div', { class: 'table-wrap' }, [
          el('table', null, [
            el('caption', { class: 'sr-only', text: 'Subscriptions' }),
            el('thead', null, [
              el('tr', null, ['Subscription', 'Offer', 'Status', 'Started', 'Ended', 'Started by', 'Actions'].map((h) => el('th', { scope: 'col', text: h }))),
            ]),
            el('tbody', null, rows),
          ]),
        ]),
      );
    }

    // Payments
    body.append(el('h3', { text: 'Payments' }));
    if (!s.totals.length) {
      body.append(el('p', { class: 'muted', text: 'No payments.' }));
    } else {
      body.append(
        el('p', {
          class: 'muted',
          text: s.payment_count + ' payment' + (s.payment_count === 1 ? '' : 's') + ', ' + s.refund_count + ' refund' + (s.refund_count === 1 ? '' : 's') + '.',
        }),
        el('div', { class: 'table-wrap' }, [
          el('table', null, [
            el('caption', { class: 'sr-only', text: 'Payment totals per currency' }),
            el('thead', null, [
              el('tr', null, [
                el('th', { scope: 'col', text: 'Currency' }),
                el('th', { scope: 'col', class: 'num', text: 'Captured' }),
                el('th', { scope: 'col', class: 'num', text: 'Refunded' }),
                el('th', { scope: 'col', class: 'num', text: 'Net' }),
              ]),
            ]),
            el(
              'tbody',
              null,
              s.totals.map((t) =>
                el('tr', null, [
                  el('th', { scope: 'row', text: t.currency }),
                  el('td', { class: 'num', text: money(t.captured, t.currency) }),
                  el('td', { class: 'num', text: money(t.refunded, t.currency) }),
                  el('td', { class: 'num', text: money(t.net, t.currency) }),
                ]),
              ),
            ),
          ]),
        ]),
      );
    }

    renderErasureState();
    renderReceipt();
  }

  // The open customer's subscriptions, whichever view shows it.
  function viewSubscriptions() {
    if (isOperator()) return state.opView ? state.opView.subscriptions : [];
    return state.summary ? state.summary.subscriptions : [];
  }

  function blockerItem(b) {
    const item = blockerBody(b);
    item.append(' ', el('code', { class: 'code', text: b.code }));
    return item;
  }

  function blockerBody(b) {
    const subs = viewSubscriptions();
    switch (b.code) {
      case 'ACTIVE_SUBSCRIPTION': {
        const ids = b.subscriptions || [];
        const ul = el('ul', { class: 'plain subs' });
        for (const id of ids) {
          const s = subs.find((x) => x.subscription_id === id);
          let who = '';
          if (s && isOperator()) who = ' (broadcaster ' + shortId(s.broadcaster_id) + ': only it can terminate it)';
          else if (s && !s.yours) who = ' (started by another broadcaster: ask it to terminate)';
          ul.append(el('li', null, [el('code', { text: id }), s ? ' — ' + s.offer_id + who : '']));
        }
        return el('li', { 'data-code': b.code }, [
          el('strong', { text: 'Active subscription. ' }),
          'Deleting the user would end their access, so ' +
            (ids.length === 1 ? 'this subscription' : 'these ' + ids.length + ' subscriptions') +
            ' must end first:',
          ul,
        ]);
      }
      case 'SHARED_ACROSS_BROADCASTERS':
        return el('li', { 'data-code': b.code }, [
          el('strong', { text: 'Shared account. ' }),
          'This account is also linked to other broadcasters, and no single broadcaster can delete an account shared by several. Forward the erasure request to the platform operator.',
        ]);
      case 'NOT_WHITE_LABEL':
        return el('li', { 'data-code': b.code }, [
          el('strong', { text: 'Not a white-label integration. ' }),
          'Only broadcasters with a white-label integration can delete users, because other customers’ accounts may be associated with other broadcasters. Forward the erasure request to the platform operator.',
        ]);
      default:
        return el('li', { 'data-code': b.code }, [el('strong', { text: b.code + '. ' }), b.message || '']);
    }
  }

  // Whether the open customer is erased, erasable now, and what blocks it, for
  // the caller (a broadcaster's preview, or the operator's view).
  function erasureFacts() {
    if (isOperator()) {
      const v = state.opView;
      return { erased: v.status === 'erased', erasable: v.erasable, blockers: v.blockers || [] };
    }
    const s = state.summary;
    const pv = state.preview;
    return {
      erased: s.status === 'erased' || !!(pv && pv.already_erased),
      erasable: !!(pv && pv.erasable),
      blockers: (pv && pv.blockers) || [],
    };
  }

  function renderErasureState(refusal, message) {
    const del = $('delete-user');
    const note = $('erasure-note');
    clear(note);
    note.className = 'note';
    del.hidden = false;
    const f = erasureFacts();
    const refused = !!(refusal && refusal.length);
    const blockers = refused ? refusal : f.blockers;
    const op = isOperator();
    if (f.erased) {
      del.disabled = true;
      del.textContent = op ? 'Erased' : 'Deleted';
      note.hidden = true;
      return;
    }
    del.textContent = op ? 'Erase as operator' : 'Delete user';
    if (f.erasable && !refused) {
      del.disabled = false;
      note.hidden = true;
      return;
    }
    del.disabled = true;
    note.classList.add('blocked');
    if (message) note.append(el('p', { class: 'note-message', text: message }));
    note.append(
      el('p', {
        class: 'note-title',
        text: refused
          ? 'The erasure was refused. It is blocked because:'
          : (op ? 'The operator’s erasure is unavailable for this customer:' : 'Delete user is unavailable for this customer:'),
      }),
      el('ul', { class: 'blockers' }, blockers.map(blockerItem)),
    );
    if (!op && blockers.length === 1 && blockers[0].code === 'ACTIVE_SUBSCRIPTION') note.append(waitingActions(blockers[0]));
    note.hidden = false;
  }

  // The two ways on when the only blocker is an active subscription: an erasure
  // request that waits for it to end, and (when every one is the caller's)
  // "terminate and erase".
  function waitingActions(blocker) {
    const s = state.summary;
    const box = el('div', { class: 'note-actions' });
    const pending = state.pending.get(s.customer_id);
    if (pending) {
      box.append(
        el('p', { id: 'pending-request', class: 'pending' }, [
          'Erasure request ',
          el('code', { text: pending.request_id }),
          ' is ' + (STATUS_LABELS[pending.status] || pending.status).toLowerCase() + ', due ',
          dateEl(pending.due_at),
          ': it completes by itself when the last subscription ends.',
        ]),
      );
    } else {
      const later = el('button', { id: 'erase-later', type: 'button', class: 'secondary', text: 'Erase when the subscription ends' });
      later.addEventListener('click', () => openConfirm('later'));
      box.append(later);
    }
    const ids = blocker.subscriptions || [];
    const mine = ids.every((id) => s.subscriptions.some((x) => x.subscription_id === id && x.yours));
    if (mine) {
      const now = el('button', { id: 'terminate-erase', type: 'button', class: 'danger', text: 'Terminate and erase' });
      now.addEventListener('click', () => openConfirm('terminate'));
      box.append(now);
    }
    return box;
  }

  // ------------------------------------------------------------------ operator view

  function renderOperatorSummary() {
    const v = state.opView;
    const body = emptySummaryBody();
    const erased = v.status === 'erased';
    $('summary-title').textContent = erased ? 'Erased customer' : 'Customer ' + shortId(v.customer_id);
    $('summary-sub').textContent = 'Customer ' + v.customer_id;
    body.append(
      el('p', { class: 'note info', role: 'note' }, [
        el('strong', { text: 'Operator view. ' }),
        'Ids, links and subscriptions only: personal data is shown to the customer’s own broadcasters, never here.',
      ]),
    );
    if (erased) {
      body.append(
        el('div', { class: 'tombstone', role: 'note' }, [
          el('strong', { text: 'Tombstone. ' }),
          'This account was anonymized. Its personal data is gone for good; only ids and revenue history remain.',
        ]),
      );
    }
    const shared = v.broadcasters.length > 1;
    const facts = el('dl', { class: 'facts' });
    facts.append(
      ...dlRow('Status', el('span', { class: 'badge ' + (erased ? 'erased' : 'active'), text: erased ? 'Personal data erased' : 'Active' })),
      ...dlRow('Linked broadcasters', v.broadcasters.length + (shared ? ' (shared account)' : '')),
    );
    body.append(el('h3', { text: 'Account' }), facts);

    body.append(el('h3', { text: 'Linked broadcasters' }));
    body.append(
      el('div', { class: 'table-wrap' }, [
        el('table', { id: 'op-broadcasters' }, [
          el('caption', { class: 'sr-only', text: 'Linked broadcasters' }),
          el('thead', null, [el('tr', null, ['Broadcaster', 'Integration', 'Account'].map((h) => el('th', { scope: 'col', text: h })))]),
          el(
            'tbody',
            null,
            v.broadcasters.map((b) =>
              el('tr', null, [
                el('td', null, [el('code', { text: b.broadcaster_id })]),
                el('td', { text: b.integration === 'white_label' ? 'White-label' : b.integration === 'shared' ? 'Shared' : b.integration }),
                el('td', { text: b.registered ? 'Registered here' : 'Linked later' }),
              ]),
            ),
          ),
        ]),
      ]),
    );

    body.append(el('h3', { text: 'Subscriptions' }));
    if (!v.subscriptions.length) {
      body.append(el('p', { class: 'muted', text: 'No subscriptions.' }));
    } else {
      body.append(
        el('div', { class: 'table-wrap' }, [
          el('table', null, [
            el('caption', { class: 'sr-only', text: 'Subscriptions with every broadcaster' }),
            el('thead', null, [
              el('tr', null, ['Subscription', 'Broadcaster', 'Offer', 'Status', 'Started', 'Ends', 'Ended'].map((h) => el('th', { scope: 'col', text: h }))),
            ]),
            el(
              'tbody',
              null,
              v.subscriptions.map((x) =>
                el('tr', null, [
                  el('td', null, [el('code', { text: shortId(x.subscription_id), title: x.subscription_id, 'aria-label': x.subscription_id })]),
                  el('td', null, [el('code', { text: shortId(x.broadcaster_id), title: x.broadcaster_id })]),
                  el('td', { text: x.offer_id }),
                  el('td', null, [el('span', { class: 'badge ' + (x.active ? 'active' : ''), text: x.active ? 'Active' : 'Terminated' })]),
                  el('td', { class: 'nowrap' }, [dateEl(x.started_at)]),
                  el('td', { class: 'nowrap' }, [x.ends_at ? dateEl(x.ends_at) : '–']),
                  el('td', { class: 'nowrap' }, [x.terminated_at ? dateEl(x.terminated_at) : '–']),
                ]),
              ),
            ),
          ]),
        ]),
      );
    }
    if (erased && v.erasure && !state.receipt) state.receipt = receiptOfRecord(v.erasure);
    renderErasureState();
    renderReceipt();
  }

  // An erasure record (GET /v1/erasures, the operator's view) in a receipt's shape.
  function receiptOfRecord(r) {
    return {
      request_id: r.request_id,
      customer_id: r.customer_id,
      at: r.at,
      categories_erased: r.categories_erased,
      preconditions_checked: r.preconditions_checked,
      event_position: r.position,
      erased_by: r.erased_by,
      revenue_digest_before: r.revenue_digest_before,
      revenue_digest_after: r.revenue_digest_after,
    };
  }

  function actorText(a) {
    if (!a) return '–';
    if (a.kind === 'operator') return 'The platform operator';
    if (!isOperator()) return 'Your broadcaster' + (a.key_id ? ' (key ' + shortId(a.key_id) + ')' : '');
    return 'Broadcaster ' + shortId(a.broadcaster_id);
  }

  function renderReceipt() {
    const box = $('receipt');
    clear(box);
    const r = state.receipt;
    if (!r || r.customer_id !== currentCustomerId()) {
      box.hidden = true;
      return;
    }
    const same = r.revenue_digest_before && r.revenue_digest_before === r.revenue_digest_after;
    const dl = el('dl', { class: 'facts' });
    dl.append(
      ...dlRow('Request id', el('code', { text: r.request_id })),
      ...dlRow('Time', timeEl(r.at)),
      ...dlRow('Customer', el('code', { text: r.customer_id })),
      ...dlRow('Data erased', (r.categories_erased || []).map((c) => CATEGORY_LABELS[c] || c).join(', ')),
      ...dlRow('Erased by', actorText(r.erased_by)),
      ...dlRow('Checks passed', (r.preconditions_checked || []).map((c) => PRECONDITION_LABELS[c] || c).join('; ')),
      ...(r.data_key_destroyed === undefined
        ? []
        : dlRow('Data key destroyed', r.data_key_destroyed ? 'Yes' : 'Pending (finished by the server shortly)')),
      ...dlRow('Log position', String(r.event_position)),
      ...dlRow('Revenue digest before', el('code', { class: 'digest-value', text: r.revenue_digest_before || '–' })),
      ...dlRow('Revenue digest after', el('code', { class: 'digest-value', text: r.revenue_digest_after || '–' })),
    );
    box.append(
      el('h3', { text: 'Erasure receipt' }),
      el('p', { class: same ? 'check ok' : 'check warn', id: 'receipt-check' }, [
        same ? 'Revenue digest unchanged by the erasure.' : 'Revenue digests before and after differ.',
      ]),
      dl,
    );
    box.hidden = false;
  }

  // ------------------------------------------------------------------ erasure

  // The subscriptions an erasure waits for or terminates, as a list.
  function subscriptionList(ids) {
    const subs = viewSubscriptions();
    return el(
      'ul',
      { class: 'plain subs' },
      ids.map((id) => {
        const s = subs.find((x) => x.subscription_id === id);
        return el('li', null, [el('code', { text: id }), s ? ' — ' + s.offer_id : '']);
      }),
    );
  }

  // mode: 'now' (DELETE), 'later' (an erasure request that waits for the
  // subscriptions), 'terminate' (terminate and erase) or 'operator'.
  function openConfirm(mode) {
    const id = currentCustomerId();
    if (!id) return;
    const m = typeof mode === 'string' ? mode : isOperator() ? 'operator' : 'now';
    const f = erasureFacts();
    if (f.erased) return;
    if ((m === 'now' || m === 'operator') && !f.erasable) return;
    const waitingFor = (f.blockers.find((b) => b.code === 'ACTIVE_SUBSCRIPTION') || {}).subscriptions || [];
    if ((m === 'later' || m === 'terminate') && !waitingFor.length) return;
    state.confirmMode = m;
    const words = CONFIRM_MODES[m];
    $('confirm-title').textContent = words.title;
    $('confirm-id').textContent = id;
    const extra = $('confirm-extra');
    clear(extra);
    if (m === 'later') {
      extra.append(
        el('p', {
          class: 'note info',
          text: 'The erasure request is recorded now and is due in one month. It waits while these subscriptions are active and runs by itself as soon as the last one ends; until then you can cancel it under Erasure requests:',
        }),
        subscriptionList(waitingFor),
      );
    } else if (m === 'terminate') {
      extra.append(
        el('p', { class: 'note blocked', text: 'These subscriptions are terminated now (the customer loses access at once), then the user is deleted:' }),
        subscriptionList(waitingFor),
      );
    } else if (m === 'operator') {
      extra.append(
        el('p', {
          class: 'note info',
          text: 'As the platform operator you erase this account for every broadcaster it is linked to; each of them sees the receipt, marked as the operator’s.',
        }),
      );
    }
    const ul = $('confirm-categories');
    clear(ul);
    const cats = (!isOperator() && state.preview && state.preview.categories) || CATEGORIES;
    for (const c of cats) ul.append(el('li', { text: CATEGORY_LABELS[c] || c }));
    $('confirm-reference-row').hidden = m === 'now';
    $('confirm-reference-label').textContent = m === 'operator' ? 'Reference (required)' : 'Reference (optional)';
    $('confirm-reference').value = '';
    $('confirm-reference').disabled = false;
    $('confirm-received-row').hidden = m !== 'later';
    $('confirm-received').value = '';
    $('confirm-received').disabled = false;
    $('confirm-received').max = localDay(new Date());
    $('confirm-text').value = '';
    $('confirm-submit').disabled = true;
    $('confirm-submit').textContent = words.submit;
    $('confirm-error').hidden = true;
    $('confirm-text').disabled = false;
    state.idempotencyFor = null;
    $('confirm-dialog').showModal();
    (m === 'operator' ? $('confirm-reference') : $('confirm-text')).focus();
  }

  function referenceValue() {
    return $('confirm-reference').value.trim();
  }

  // YYYY-MM-DD of a date in the browser's time zone (the date input's format).
  function localDay(d) {
    const p = (n) => String(n).padStart(2, '0');
    return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate());
  }

  // The chosen "received on" day as the start of that day in the browser's time
  // zone (never after now for today), or null.
  function receivedValue() {
    const v = $('confirm-received').value;
    if (!/^\d{4}-\d{2}-\d{2}$/.test(v)) return null;
    const start = new Date(v + 'T00:00:00');
    return isNaN(start.getTime()) ? null : start.toISOString();
  }

  function confirmReady() {
    if (state.busy || $('confirm-text').value.trim() !== 'DELETE') return false;
    const m = state.confirmMode;
    const ref = referenceValue();
    if (m === 'operator') return REFERENCE_RE.test(ref);
    if (m === 'now') return true;
    if (m === 'later' && $('confirm-received').value && !receivedValue()) return false;
    return ref === '' || REFERENCE_RE.test(ref);
  }

  function closeConfirm() {
    const dlg = $('confirm-dialog');
    if (dlg.open) dlg.close();
  }

  // The erasure the dialog confirms: its receipt, or (a request that waits) the
  // request.
  async function runErasure(mode, id) {
    const ref = referenceValue();
    const received = mode === 'later' ? receivedValue() : null;
    const opts = { idempotencyKey: keyFor(mode + ' ' + id + ' ' + ref + ' ' + (received || '')) };
    switch (mode) {
      case 'now':
        return { receipt: await api('DELETE', '/v1/customers/' + enc(id), opts) };
      case 'terminate': {
        const r = await api('POST', '/v1/customers/' + enc(id) + '/terminate-and-erase', { ...opts, body: ref ? { reference: ref } : {} });
        return { receipt: r.receipt, request: r };
      }
      case 'operator': {
        const r = await api('POST', '/v1/admin/customers/' + enc(id) + '/anonymize', { ...opts, body: { reference: ref } });
        return { receipt: r.receipt, request: r };
      }
      default: {
        const body = { customer_id: id };
        if (ref) body.reference = ref;
        if (received) body.received_at = received;
        const r = await api('POST', '/v1/erasure-requests', { ...opts, body });
        return { receipt: r.receipt || null, request: r };
      }
    }
  }

  async function submitConfirm(ev) {
    ev.preventDefault();
    if (!confirmReady()) return;
    const id = currentCustomerId();
    const mode = state.confirmMode;
    state.busy = true;
    const btn = $('confirm-submit');
    btn.disabled = true;
    btn.textContent = CONFIRM_MODES[mode].busy;
    $('confirm-text').disabled = true;
    $('confirm-reference').disabled = true;
    $('confirm-received').disabled = true;
    $('confirm-cancel').disabled = true;
    const err = $('confirm-error');
    err.hidden = true;
    const digestBefore = state.revenueDigest;
    try {
      const done = await runErasure(mode, id);
      closeConfirm();
      if (done.receipt) {
        state.receipt = done.receipt;
        if (done.request) state.pending.delete(id);
        forgetResult(id);
        await reloadAfterErasure(id, digestBefore);
      } else {
        await afterRequestFiled(id, done.request);
      }
      loadRequests(false);
    } catch (e) {
      if (e instanceof ApiFailure && e.status === 409 && e.body && e.body.details && e.body.details.blockers) {
        closeConfirm();
        renderErasureState(e.body.details.blockers);
        $('erasure-note').focus();
      } else if (e instanceof ApiFailure && e.status === 404) {
        closeConfirm();
        resetSummary();
        $('summary-status').textContent = notFoundText('This customer no longer exists for your broadcaster.');
      } else if (e instanceof ApiFailure && e.kind === 'unauthorized') {
        handleCommon(e);
      } else {
        err.textContent =
          e instanceof ApiFailure && e.kind === 'network'
            ? 'Cannot reach the server, so the erasure is not confirmed. Try again: retrying is safe.'
            : 'The erasure failed: ' + describe(e);
        err.hidden = false;
      }
    } finally {
      state.busy = false;
      btn.textContent = CONFIRM_MODES[mode].submit;
      btn.disabled = !confirmReady();
      $('confirm-text').disabled = false;
      $('confirm-reference').disabled = false;
      $('confirm-received').disabled = false;
      $('confirm-cancel').disabled = false;
    }
  }

  // A request filed to wait for the subscriptions: deferred (the usual case), or
  // refused for a permanent reason (recorded, and shown with its code).
  async function afterRequestFiled(id, request) {
    if (request.status === 'open' || request.status === 'deferred') state.pending.set(id, request);
    await refreshCustomer(id);
    if (request.status === 'refused') {
      renderErasureState(
        [{ code: request.refusal_code, message: 'The request was refused and recorded.' }],
        'Erasure request ' + request.request_id + ' was refused (' + request.refusal_code + ').',
      );
    }
    const p = $('pending-request');
    if (p) p.focus();
  }

  // Re-reads the open customer and redraws the panel (keeps the receipt).
  async function refreshCustomer(id) {
    try {
      await fetchCustomer(id);
      if (state.selected === id) renderSummary();
    } catch (e) {
      if (!handleCommon(e)) $('summary-status').textContent = 'Could not reload the customer: ' + describe(e);
    }
  }

  // The result list no longer shows the erased customer's name or email.
  function forgetResult(id) {
    for (const b of $('results').querySelectorAll('button.result')) {
      if (b.dataset.id !== id) continue;
      b.replaceChildren(
        el('span', { class: 'result-name', text: 'Erased customer' }),
        el('span', { class: 'result-email', text: shortId(id) }),
        el('span', { class: 'badges' }, [el('span', { class: 'badge erased', text: 'erased' })]),
      );
    }
  }

  async function reloadAfterErasure(id, digestBefore) {
    await refreshCustomer(id);
    if (!isOperator()) await loadRevenue(digestBefore);
    $('summary-title').focus();
  }

  // ------------------------------------------------------------------ action dialog

  // A small confirmation for one action: terminate a subscription, cancel or
  // extend a request. `run` performs it; errors are shown with their code.
  function openAction(cfg) {
    state.action = cfg;
    $('action-title').textContent = cfg.title;
    $('action-desc').textContent = cfg.desc;
    const fields = $('action-fields');
    clear(fields);
    for (const f of cfg.fields || []) fields.append(f);
    const btn = $('action-submit');
    btn.textContent = cfg.submit;
    btn.className = cfg.danger ? 'danger' : '';
    btn.disabled = false;
    $('action-error').hidden = true;
    state.idempotencyFor = null;
    $('action-dialog').showModal();
    (fields.querySelector('input, select') || btn).focus();
  }

  async function submitAction(ev) {
    ev.preventDefault();
    const cfg = state.action;
    if (!cfg || state.busy) return;
    state.busy = true;
    const btn = $('action-submit');
    btn.disabled = true;
    $('action-cancel').disabled = true;
    const err = $('action-error');
    err.hidden = true;
    try {
      const result = await cfg.run(keyFor(cfg.title + ' ' + (cfg.content ? cfg.content() : '')));
      $('action-dialog').close();
      if (cfg.done) await cfg.done(result);
    } catch (e) {
      if (e instanceof ApiFailure && e.kind === 'unauthorized') handleCommon(e);
      else {
        err.textContent =
          e instanceof ApiFailure && e.kind === 'network'
            ? 'Cannot reach the server. Try again: retrying is safe.'
            : cfg.failed + ': ' + describe(e);
        err.hidden = false;
      }
    } finally {
      state.busy = false;
      btn.disabled = false;
      $('action-cancel').disabled = false;
    }
  }

  // ------------------------------------------------------------------ terminate

  function terminateCell(x) {
    if (!x.active) return '–';
    if (!x.yours) return el('span', { class: 'muted', text: 'Its broadcaster only' });
    const b = el('button', {
      type: 'button',
      class: 'secondary small terminate',
      'data-sub': x.subscription_id,
      'aria-label': 'Terminate subscription ' + x.subscription_id,
      text: 'Terminate',
    });
    b.addEventListener('click', () => openTerminate(x));
    return b;
  }

  function openTerminate(x) {
    const id = currentCustomerId();
    openAction({
      title: 'Terminate this subscription?',
      desc:
        'Subscription ' + x.subscription_id + ' (' + x.offer_id + ') ends now and the customer loses access to it. This cannot be undone. Payments and revenue are not affected.',
      submit: 'Terminate subscription',
      danger: true,
      failed: 'The subscription was not terminated',
      run: (key) =>
        api('POST', '/v1/customers/' + enc(id) + '/subscriptions/' + enc(x.subscription_id) + '/terminate', { idempotencyKey: key }),
      done: () => afterTerminate(id),
    });
  }

  // After a termination: redraw the customer; a request waiting for its
  // subscriptions may now complete (the server does it by itself), so watch it.
  async function afterTerminate(id) {
    const digestBefore = state.revenueDigest;
    const waiting = state.pending.get(id);
    await refreshCustomer(id);
    const f = state.selected === id ? erasureFacts() : null;
    if (waiting && f && !f.blockers.length) {
      $('summary-status').hidden = false;
      $('summary-status').textContent = 'Subscription terminated. Erasure request ' + waiting.request_id + ' now runs…';
      await watchRequest(waiting.request_id, id, digestBefore);
    } else {
      $('summary-status').hidden = false;
      $('summary-status').textContent = 'Subscription terminated.';
    }
    loadRequests(false);
  }

  async function watchRequest(rid, id, digestBefore) {
    const until = Date.now() + TIMEOUT_MS;
    while (Date.now() < until) {
      let r;
      try {
        r = await api('GET', '/v1/erasure-requests/' + enc(rid));
      } catch (e) {
        if (!handleCommon(e)) $('summary-status').textContent = 'Could not follow erasure request ' + rid + ': ' + describe(e);
        return;
      }
      if (r.status !== 'open' && r.status !== 'deferred') {
        state.pending.delete(id);
        if (r.status === 'completed' && r.receipt) {
          state.receipt = r.receipt;
          forgetResult(id);
          $('summary-status').textContent = 'Erasure request ' + rid + ' completed.';
          await reloadAfterErasure(id, digestBefore);
        } else {
          $('summary-status').textContent = 'Erasure request ' + rid + ' is ' + r.status + (r.refusal_code ? ' (' + r.refusal_code + ')' : '') + '.';
          await refreshCustomer(id);
        }
        return;
      }
      await new Promise((res) => setTimeout(res, 400));
    }
    $('summary-status').textContent = 'Erasure request ' + rid + ' is still waiting; see Erasure requests.';
  }

  // ------------------------------------------------------------------ requests

  // Every open or deferred request the caller can see, by customer (what the
  // summary panel needs to say "a request is waiting").
  async function refreshPending() {
    const pending = new Map();
    for (const status of ['open', 'deferred']) {
      let cursor = null;
      for (let page = 0; page < 10; page++) {
        const r = await api('GET', '/v1/erasure-requests', { query: { status, limit: 100, cursor } });
        for (const q of r.items) pending.set(q.customer_id, q);
        cursor = r.next_cursor || null;
        if (!cursor) break;
      }
    }
    state.pending = pending;
  }

  async function loadRequests(more) {
    const r = state.requests;
    if (!more) {
      r.filter = $('requests-filter').value;
      r.queries = (REQUEST_FILTERS[r.filter] || REQUEST_FILTERS.pending).map((query) => ({ query, cursor: null, done: false }));
      r.items = [];
    }
    const status = $('requests-status');
    status.textContent = 'Loading requests…';
    $('requests').setAttribute('aria-busy', 'true');
    try {
      if (!more) await refreshPending();
      for (const q of r.queries) {
        if (q.done) continue;
        const page = await api('GET', '/v1/erasure-requests', { query: { ...q.query, limit: REQUEST_PAGE, cursor: q.cursor } });
        r.items.push(...page.items);
        q.cursor = page.next_cursor || null;
        q.done = !q.cursor;
      }
      renderRequests();
      if (!more && state.selected && !isOperator() && state.summary) renderErasureState();
    } catch (e) {
      if (!handleCommon(e)) status.textContent = 'Could not load the erasure requests: ' + describe(e);
      else if (e.kind === 'network') status.textContent = 'Could not load the erasure requests: the server could not be reached.';
    } finally {
      $('requests').removeAttribute('aria-busy');
    }
  }

  function renderRequests() {
    const r = state.requests;
    const items = r.items.slice();
    // Waiting requests by due date (the most urgent first); the others as filed.
    if (r.filter === 'pending' || r.filter === 'overdue') items.sort((a, b) => a.due_at.localeCompare(b.due_at));
    const body = $('requests-body');
    clear(body);
    for (const q of items) body.append(requestRow(q));
    $('requests-table').hidden = items.length === 0;
    const overdue = items.filter((q) => q.overdue).length;
    $('requests-status').textContent = items.length
      ? items.length + ' request' + (items.length === 1 ? '' : 's') + (overdue ? ', ' + overdue + ' overdue' : '') + '.'
      : 'No erasure requests here.';
    $('requests-more').hidden = r.queries.every((q) => q.done);
  }

  function requestRow(q) {
    const ended = q.status !== 'open' && q.status !== 'deferred';
    const open = el('button', { type: 'button', class: 'link', 'data-customer': q.customer_id, title: q.customer_id, text: shortId(q.customer_id) });
    open.addEventListener('click', () => openCustomer(q.customer_id));
    const statusCell = el('td', null, [
      el('span', { class: 'badge status-' + q.status, text: STATUS_LABELS[q.status] || q.status }),
      q.overdue ? el('span', { class: 'badge overdue', text: 'Overdue' }) : null,
    ]);
    if (q.status === 'deferred' && q.waiting_for && q.waiting_for.length) {
      statusCell.append(
        el('div', { class: 'small-text muted', text: 'waits for ' + q.waiting_for.length + ' subscription' + (q.waiting_for.length === 1 ? '' : 's') }),
      );
    }
    if (q.refusal_code) statusCell.append(el('div', null, [el('code', { text: q.refusal_code })]));
    const due = el('td', { class: 'nowrap' }, [dateEl(q.due_at)]);
    if (q.extension_reason) due.append(el('div', { class: 'small-text muted', text: 'extended: ' + (EXTENSION_REASONS[q.extension_reason] || q.extension_reason) }));
    const actions = el('div', { class: 'actions-cell' });
    if (!ended) {
      const cancel = el('button', { type: 'button', class: 'secondary small', 'data-action': 'cancel', text: 'Cancel' });
      cancel.addEventListener('click', () => openCancel(q));
      actions.append(cancel);
      if (!q.extension_reason) {
        const extend = el('button', { type: 'button', class: 'secondary small', 'data-action': 'extend', text: 'Extend' });
        extend.addEventListener('click', () => openExtend(q));
        actions.append(extend);
      }
    } else {
      actions.append(q.ended_at ? el('span', { class: 'small-text muted' }, ['ended ', dateEl(q.ended_at)]) : '–');
    }
    return el(
      'tr',
      { class: q.overdue ? 'overdue' : null, 'data-request': q.request_id, 'data-status': q.status, 'data-overdue': String(!!q.overdue) },
      [
        el('td', null, [el('code', { text: shortId(q.request_id), title: q.request_id })]),
        el('td', null, [open]),
        statusCell,
        el('td', { class: 'nowrap' }, [dateEl(q.received_at)]),
        due,
        el('td', { text: actorText(q.requested_by) }),
        el('td', null, [q.reference ? el('code', { text: q.reference }) : '–']),
        el('td', null, [actions]),
      ],
    );
  }

  function afterRequestChange(q) {
    return async () => {
      await loadRequests(false);
      if (state.selected === q.customer_id) await refreshCustomer(q.customer_id);
    };
  }

  function openCancel(q) {
    openAction({
      title: 'Cancel this erasure request?',
      desc:
        'Request ' + q.request_id + ' for customer ' + q.customer_id + ' is withdrawn and erases nothing. The cancellation is recorded; a new request can be filed later.',
      submit: 'Cancel request',
      danger: true,
      failed: 'The request was not cancelled',
      run: (key) => api('POST', '/v1/erasure-requests/' + enc(q.request_id) + '/cancel', { idempotencyKey: key }),
      done: afterRequestChange(q),
    });
  }

  function openExtend(q) {
    const due = new Date(q.due_at);
    const day = (d) => d.toISOString().slice(0, 10);
    const latest = addMonthsUTC(due, 2);
    const input = el('input', { id: 'extend-date', type: 'date', min: day(new Date(due.getTime() + 86400000)), max: day(latest), value: day(latest), required: true });
    const reason = el(
      'select',
      { id: 'extend-reason' },
      Object.entries(EXTENSION_REASONS).map(([v, t]) => el('option', { value: v, text: t })),
    );
    openAction({
      title: 'Extend the due date?',
      desc:
        'Request ' + q.request_id + ' is due ' + fmtTime(q.due_at) + '. GDPR Art. 12(3) allows one extension, by at most two months, for the complexity or the number of requests; tell the data subject why within the first month.',
      fields: [
        el('label', { for: 'extend-date', text: 'New due date' }),
        input,
        el('label', { for: 'extend-reason', text: 'Reason' }),
        reason,
      ],
      submit: 'Extend due date',
      failed: 'The due date was not extended',
      content: () => input.value + ' ' + reason.value,
      run: (key) => {
        // The chosen day, at the time of day of the current due date.
        const dueAt = new Date(input.value + due.toISOString().slice(10));
        if (!input.value || Number.isNaN(dueAt.getTime())) {
          return Promise.reject(new ApiFailure('http', 400, { code: 'INVALID_INPUT', message: 'Choose a new due date.' }));
        }
        return api('POST', '/v1/erasure-requests/' + enc(q.request_id) + '/extend', {
          idempotencyKey: key,
          body: { due_at: dueAt.toISOString(), reason: reason.value },
        });
      },
      done: afterRequestChange(q),
    });
  }

  // ------------------------------------------------------------------ revenue

  async function loadRevenue(compareTo) {
    const status = $('revenue-status');
    status.textContent = 'Loading revenue…';
    $('revenue').setAttribute('aria-busy', 'true');
    try {
      const r = await api('GET', '/v1/revenue');
      renderRevenue(r, compareTo);
      status.textContent = 'Checked at ' + new Date().toLocaleTimeString() + '.';
    } catch (e) {
      if (!handleCommon(e)) status.textContent = 'Could not load revenue: ' + describe(e);
      else if (e.kind === 'network') status.textContent = 'Could not load revenue: the server could not be reached.';
    } finally {
      $('revenue').removeAttribute('aria-busy');
    }
  }

  function renderRevenue(r, compareTo) {
    const list = $('revenue-list');
    clear(list);
    const totals = r.totals || [];
    for (const t of totals) {
      list.append(
        el('li', { 'data-currency': t.currency }, [
          el('div', { class: 'rev-head' }, [
            el('span', { class: 'rev-cur', text: t.currency }),
            el('span', { class: 'rev-net' }, [money(t.net, t.currency), el('small', { text: ' net' })]),
          ]),
          el('dl', { class: 'rev-facts' }, [
            el('dt', { text: 'Captured' }),
            el('dd', { text: money(t.gross_captured, t.currency) }),
            el('dt', { text: 'Refunded' }),
            el('dd', { text: money(t.refunded, t.currency) }),
            el('dt', { text: 'Payments' }),
            el('dd', { text: t.payment_count.toLocaleString() }),
            el('dt', { text: 'Refunds' }),
            el('dd', { text: t.refund_count.toLocaleString() }),
          ]),
        ]),
      );
    }
    list.hidden = totals.length === 0;
    if (totals.length === 0) $('revenue-status').textContent = 'No revenue yet.';
    $('revenue-digest').textContent = r.digest;
    const check = $('revenue-check');
    const before = compareTo !== undefined ? compareTo : null;
    if (before) {
      check.hidden = false;
      if (before === r.digest) {
        check.className = 'check ok';
        check.textContent = 'Unchanged: the digest is the same as before the erasure.';
      } else {
        check.className = 'check warn';
        check.textContent = 'Changed since the previous check (new payments or refunds were recorded meanwhile).';
      }
    } else {
      check.hidden = true;
    }
    state.revenueDigest = r.digest;
  }

  // ------------------------------------------------------------------ wiring

  function init() {
    $('signin-form').addEventListener('submit', signIn);
    $('sign-out').addEventListener('click', () => signOut('You are signed out.'));
    $('search-form').addEventListener('submit', runSearch);
    $('prev-page').addEventListener('click', () => {
      if (state.search.page === 0) return;
      state.search.page--;
      loadPage();
    });
    $('next-page').addEventListener('click', () => {
      const s = state.search;
      if (!s.next) return;
      s.cursors[s.page + 1] = s.next;
      s.page++;
      loadPage();
    });
    $('delete-user').addEventListener('click', openConfirm);
    $('confirm-form').addEventListener('submit', submitConfirm);
    for (const f of ['confirm-text', 'confirm-reference', 'confirm-received']) {
      $(f).addEventListener('input', () => {
        $('confirm-submit').disabled = !confirmReady();
      });
    }
    $('action-form').addEventListener('submit', submitAction);
    $('action-cancel').addEventListener('click', () => $('action-dialog').close());
    $('action-dialog').addEventListener('cancel', (ev) => {
      if (state.busy) ev.preventDefault();
    });
    $('requests-filter').addEventListener('change', () => loadRequests(false));
    $('requests-refresh').addEventListener('click', () => loadRequests(false));
    $('requests-more').addEventListener('click', () => loadRequests(true));
    $('confirm-cancel').addEventListener('click', closeConfirm);
    $('confirm-dialog').addEventListener('cancel', (ev) => {
      if (state.busy) ev.preventDefault();
    });
    $('confirm-dialog').addEventListener('close', () => {
      const del = $('delete-user');
      if (!del.disabled && !del.hidden) del.focus();
    });
    $('revenue-refresh').addEventListener('click', () => loadRevenue());
    $('banner-close').addEventListener('click', hideBanner);
    $('erasure-note').tabIndex = -1;

    const saved = sessionStorage.getItem(KEY_SLOT);
    if (saved) {
      state.key = saved;
      checkKey(saved)
        .then(() => enterApp())
        .catch((e) => {
          if (e instanceof ApiFailure && e.kind === 'network') {
            showSignIn('Cannot reach the server. Check your connection and sign in again.');
          } else {
            signOut('Your API key is invalid, expired or was revoked. Sign in again with a valid key.');
          }
        });
    } else {
      showSignIn('');
    }
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
