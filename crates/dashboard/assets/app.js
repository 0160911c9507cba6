// Compliance ledger dashboard: Customer Accounts, "Delete user", revenue.
//
// A plain script (no build step, no dependencies) that talks to the public /v1 API
// with the broadcaster API key kept in sessionStorage. Rules it keeps:
// - personal data never goes into the page's address, storage or the console;
//   the DOM is built with textContent only (Trusted Types are enforced by the CSP);
// - a 401 anywhere signs out and says why; a network failure says so and keeps
//   the page as it was; a 409 shows every blocker the API returned.
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
  };

  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ state

  const state = {
    key: null,
    search: { q: '', cursors: [null], page: 0, next: null },
    selected: null, // customer id
    summary: null,
    preview: null,
    receipt: null,
    revenueDigest: null,
    loadToken: 0,
    idempotencyKey: null,
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
      return 'The server answered ' + err.status + '.';
    }
    return 'Something went wrong.';
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
    $('who').textContent = 'Signed in · key ' + k.slice(0, 6) + '…' + k.slice(-4);
    resetSummary();
    clearResults();
    $('search-status').textContent = '';
    $('search-q').value = '';
    $('search-q').focus();
    await loadRevenue();
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
      await api('GET', '/v1/revenue', { key });
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
    const dlg = $('confirm-dialog');
    if (dlg.open) dlg.close();
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
    $('summary-status').textContent = 'Search for a customer and open it to see its summary.';
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
      const [summary, preview] = await Promise.all([
        api('GET', '/v1/customers/' + encodeURIComponent(id)),
        api('GET', '/v1/customers/' + encodeURIComponent(id) + '/erasure-preview'),
      ]);
      if (token !== state.loadToken) return;
      state.summary = summary;
      state.preview = preview;
      renderSummary();
      hideBanner();
      if (window.matchMedia('(max-width: 56rem)').matches) $('summary-title').focus();
    } catch (e) {
      if (token !== state.loadToken) return;
      if (e instanceof ApiFailure && e.status === 404) {
        resetSummary();
        $('summary-status').textContent = 'This customer does not exist for your broadcaster.';
      } else if (!handleCommon(e)) {
        $('summary-status').textContent = 'Could not load the customer: ' + describe(e);
      } else if (e.kind === 'network') {
        $('summary-status').textContent = 'Could not load the customer: the server could not be reached.';
      }
    } finally {
      if (token === state.loadToken) $('summary').removeAttribute('aria-busy');
    }
  }

  function dlRow(term, value) {
    const dd = el('dd');
    if (value === null || value === undefined || value === '') dd.append(el('span', { class: 'muted', text: '–' }));
    else dd.append(value);
    return [el('dt', { text: term }), dd];
  }

  function renderSummary() {
    const s = state.summary;
    const body = $('summary-body');
    clear(body);
    $('summary-status').textContent = '';
    $('summary-status').hidden = true;
    body.hidden = false;
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
        ]),
      );
      body.append(
        el('div', { class: 'table-wrap' }, [
          el('table', null, [
            el('caption', { class: 'sr-only', text: 'Subscriptions' }),
            el('thead', null, [
              el('tr', null, ['Subscription', 'Offer', 'Status', 'Started', 'Ended', 'Started by'].map((h) => el('th', { scope: 'col', text: h }))),
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

  function blockerItem(b) {
    const subs = state.summary ? state.summary.subscriptions : [];
    switch (b.code) {
      case 'ACTIVE_SUBSCRIPTION': {
        const ids = b.subscriptions || [];
        const ul = el('ul', { class: 'plain subs' });
        for (const id of ids) {
          const s = subs.find((x) => x.subscription_id === id);
          ul.append(
            el('li', null, [
              el('code', { text: id }),
              s ? ' — ' + s.offer_id + (s.yours ? '' : ' (started by another broadcaster: ask it to terminate)') : '',
            ]),
          );
        }
        return el('li', { 'data-code': b.code }, [
          el('strong', { text: 'Active subscription. ' }),
          'Deleting the user would end their access, so terminate ' +
            (ids.length === 1 ? 'this subscription' : 'these ' + ids.length + ' subscriptions') +
            ' first, then delete the user:',
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

  function renderErasureState(refusal) {
    const s = state.summary;
    const pv = state.preview;
    const del = $('delete-user');
    const note = $('erasure-note');
    clear(note);
    note.className = 'note';
    del.hidden = false;
    const erased = s.status === 'erased' || (pv && pv.already_erased);
    const blockers = (refusal && refusal.length ? refusal : pv && pv.blockers) || [];
    if (erased) {
      del.disabled = true;
      del.textContent = 'Deleted';
      note.hidden = true;
      return;
    }
    del.textContent = 'Delete user';
    if (pv && pv.erasable && !(refusal && refusal.length)) {
      del.disabled = false;
      note.hidden = true;
      return;
    }
    del.disabled = true;
    note.classList.add('blocked');
    note.append(
      el('p', { class: 'note-title', text: refusal ? 'The deletion was refused. It is blocked because:' : 'Delete user is unavailable for this customer:' }),
      el('ul', { class: 'blockers' }, blockers.map(blockerItem)),
    );
    note.hidden = false;
  }

  function renderReceipt() {
    const box = $('receipt');
    clear(box);
    const r = state.receipt;
    if (!r || !state.summary || r.customer_id !== state.summary.customer_id) {
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
      ...dlRow('Checks passed', (r.preconditions_checked || []).map((c) => PRECONDITION_LABELS[c] || c).join('; ')),
      ...dlRow('Data key destroyed', r.data_key_destroyed ? 'Yes' : 'Pending (finished on restart)'),
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

  function openConfirm() {
    const s = state.summary;
    const pv = state.preview;
    if (!s || !pv || !pv.erasable) return;
    $('confirm-id').textContent = s.customer_id;
    const ul = $('confirm-categories');
    clear(ul);
    for (const c of pv.categories) ul.append(el('li', { text: CATEGORY_LABELS[c] || c }));
    $('confirm-text').value = '';
    $('confirm-submit').disabled = true;
    $('confirm-submit').textContent = 'Delete user permanently';
    $('confirm-error').hidden = true;
    $('confirm-text').disabled = false;
    state.idempotencyKey = randomKey();
    $('confirm-dialog').showModal();
    $('confirm-text').focus();
  }

  function confirmReady() {
    return $('confirm-text').value.trim() === 'DELETE' && !state.busy;
  }

  function closeConfirm() {
    const dlg = $('confirm-dialog');
    if (dlg.open) dlg.close();
  }

  async function submitConfirm(ev) {
    ev.preventDefault();
    if (!confirmReady()) return;
    const s = state.summary;
    const id = s.customer_id;
    state.busy = true;
    const btn = $('confirm-submit');
    btn.disabled = true;
    btn.textContent = 'Deleting…';
    $('confirm-text').disabled = true;
    $('confirm-cancel').disabled = true;
    const err = $('confirm-error');
    err.hidden = true;
    const digestBefore = state.revenueDigest;
    try {
      const receipt = await api('DELETE', '/v1/customers/' + encodeURIComponent(id), {
        idempotencyKey: state.idempotencyKey,
      });
      state.receipt = receipt;
      closeConfirm();
      forgetResult(id);
      await reloadAfterErasure(id, digestBefore);
    } catch (e) {
      if (e instanceof ApiFailure && e.status === 409 && e.body && e.body.details && e.body.details.blockers) {
        closeConfirm();
        renderErasureState(e.body.details.blockers);
        $('erasure-note').focus();
      } else if (e instanceof ApiFailure && e.status === 404) {
        closeConfirm();
        resetSummary();
        $('summary-status').textContent = 'This customer no longer exists for your broadcaster.';
      } else if (e instanceof ApiFailure && e.kind === 'unauthorized') {
        handleCommon(e);
      } else {
        err.textContent =
          e instanceof ApiFailure && e.kind === 'network'
            ? 'Cannot reach the server, so the deletion is not confirmed. Try again: retrying is safe.'
            : 'The deletion failed: ' + describe(e);
        err.hidden = false;
      }
    } finally {
      state.busy = false;
      btn.textContent = 'Delete user permanently';
      btn.disabled = !confirmReady();
      $('confirm-text').disabled = false;
      $('confirm-cancel').disabled = false;
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
    try {
      const [summary, preview] = await Promise.all([
        api('GET', '/v1/customers/' + encodeURIComponent(id)),
        api('GET', '/v1/customers/' + encodeURIComponent(id) + '/erasure-preview'),
      ]);
      if (state.selected === id) {
        state.summary = summary;
        state.preview = preview;
        renderSummary();
      }
    } catch (e) {
      handleCommon(e);
    }
    await loadRevenue(digestBefore);
    $('summary-title').focus();
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
    $('confirm-text').addEventListener('input', () => {
      $('confirm-submit').disabled = !confirmReady();
    });
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
      api('GET', '/v1/revenue')
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
