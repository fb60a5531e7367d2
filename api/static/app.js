// The officers' dashboard: sign-in, the live alert queue, alert detail and actions, the map
// with a supervisee panel, and the monthly report. Plain ES modules, no framework, no CDN.

import * as api from './api.js';
import { renderAdmin } from './admin.js';
import * as casework from './case.js';
import { applyStatic, getLang, setLang, t } from './i18n.js';
import { citationText, showCasework } from './casework.js';
import { MapView } from './map.js';
import { renderReport } from './report.js';
import { renderSignins } from './signins.js';
import {
  beep, currentMonth, fill, formatDate, formatDateTime, h, label, relativeTime, unlockAudio,
} from './util.js';

const STATUSES = ['open', 'acknowledged', 'resolved'];
const SEVERITIES = ['critical', 'high', 'medium', 'low'];
const SEVERITY_RANK = { critical: 0, high: 1, medium: 2, low: 3 };
const TYPES = ['zone_exit', 'zone_enter', 'curfew', 'permit_overrun', 'device_offline', 'gnss_lost',
  'strap_tamper', 'case_tamper', 'battery_low', 'battery_critical', 'gnss_jamming',
  'checkin_missed'];
const OUTCOMES = ['violation', 'justified', 'false_alarm'];
const LIST_LIMIT = 200;
const DAY_MS = 86_400_000;

const $ = (id) => document.getElementById(id);

const state = {
  user: null,
  units: [],          // units visible to the officer
  unitByCode: new Map(),
  config: { tile_url: null },
  alerts: new Map(),  // id -> alert (fetched and streamed)
  fresh: new Set(),   // ids that arrived live, highlighted for a while
  selectedId: null,
  history: [],
  filters: { status: 'unresolved', severity: '', type: '', unit: '', q: '' },
  muted: localStorage.getItem('giamsat.muted') === '1',
  stream: null,
  connState: ['connecting'],
  view: 'alerts',
  map: null,
  mapReady: null,     // the promise of the map's first load
  supToken: 0,
  supervisees: [],
  supSearch: '',
  selectedSup: null,  // {id, detail, zones, track, permits}
  positions: null,
  report: null,
  signins: null,      // admins: GET /auth/failures
  timers: [],
  citations: new Map(), // alert id -> the citation of the rule it enforces
};

// --- small UI helpers -----------------------------------------------------------------------

function toast(message, kind = 'ok') {
  const el = $('toast');
  el.textContent = message;
  el.className = `toast toast-${kind}`;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 5000);
}

function announce(message) {
  const el = $('announcer');
  el.textContent = '';
  setTimeout(() => { el.textContent = message; }, 50);
}

function errorMessage(err) {
  if (err && err.status === 403) return t('forbidden');
  return t('action.failed', { msg: err && err.message ? err.message : String(err) });
}

function asList(data, ...keys) {
  if (Array.isArray(data)) return data;
  for (const k of [...keys, 'items', 'results', 'data']) if (data && Array.isArray(data[k])) return data[k];
  return [];
}

function alertMessage(a) {
  return casework.withName((getLang() === 'en' ? a.message_en : a.message_vi) || a.message_vi || a.message_en || label('type', a.type), a);
}

function severityBadge(sev) {
  return h('span', { class: `badge sev-${sev}` }, label('severity', sev));
}

function statusBadge(status) {
  return h('span', { class: `status status-${status}` }, label('status', status));
}

function unitName(code) {
  const u = state.unitByCode.get(code);
  return u ? `${u.name} (${code})` : code || t('unknown');
}

// --- sign-in --------------------------------------------------------------------------------

function showLogin(message) {
  stopApp();
  $('app-view').hidden = true;
  $('login-view').hidden = false;
  const err = $('login-error');
  err.hidden = !message;
  err.textContent = message || '';
  $('login-password').value = '';
  ($('login-username').value ? $('login-password') : $('login-username')).focus();
}

async function onLoginSubmit(ev) {
  ev.preventDefault();
  unlockAudio(); // a user gesture: lets the critical chime play later
  const username = $('login-username').value.trim();
  const password = $('login-password').value;
  const err = $('login-error');
  if (!username || !password) {
    err.textContent = t('login.failed');
    err.hidden = false;
    return;
  }
  $('login-submit').disabled = true;
  try {
    await api.login(username, password);
    err.hidden = true;
    await startApp();
  } catch (e) {
    err.textContent = e.status === 429 ? t('login.throttled', { s: e.retryAfter ?? '?' })
      : e.status === 401 || e.status === 400 ? t('login.failed') : t('login.error');
    err.hidden = false;
  } finally {
    $('login-submit').disabled = false;
  }
}

// --- the app shell --------------------------------------------------------------------------

async function startApp() {
  const session = api.getSession();
  state.user = session.user;
  $('login-view').hidden = true;
  $('app-view').hidden = false;
  renderWho();
  renderMute();
  buildFilters();
  try {
    state.config = await api.get('/config');
  } catch {
    state.config = { tile_url: null };
  }
  await loadUnits();
  await casework.loadNames();
  renderWho();
  buildFilters();
  buildReportForm();
  state.stream = api.openAlertStream({
    onAlert: onStreamAlert,
    onState: (s, secs) => { state.connState = [s, secs]; renderConn(); },
    onReconnect: () => loadAlerts(),
  });
  await loadAlerts();
  renderDetail();
  watchSession();
  state.timers.push(setInterval(refreshTimes, 30_000));
  state.timers.push(setInterval(() => { if (state.view === 'map' && state.map) loadPositions(); }, 30_000));
  route();
  $('main').focus({ preventScroll: true });
}

// --- the sign-in's lifetime -----------------------------------------------------------------
// Tokens are short-lived. While the officer is at work (a click, key or scroll since the token
// was issued) the dashboard swaps it for a fresh one when two thirds of its life have passed,
// up to the sign-in's own limit (a shift); an unattended screen keeps none alive. When the
// token runs out, ask for the password again (the address, hence the open view, is kept): the
// live stream would otherwise go on unauthenticated.

let lastActivity = 0;
for (const type of ['pointerdown', 'keydown', 'wheel', 'touchstart']) {
  document.addEventListener(type, () => { lastActivity = Date.now(); }, { capture: true, passive: true });
}

function watchSession() {
  const first = api.getSession();
  const life = first.expires_at - (first.issued_at || Date.now());
  const every = Math.max(1000, Math.min(30_000, life / 6));
  let refreshing = false;
  state.timers.push(setInterval(async () => {
    const s = api.getSession();
    if (!s) return;
    const now = Date.now();
    if (now >= s.expires_at) {
      api.clearSession();
      showLogin(t('login.expired'));
      return;
    }
    const due = s.issued_at && now >= s.issued_at + (2 * (s.expires_at - s.issued_at)) / 3;
    const worthIt = (s.session_ends_at || 0) > s.expires_at;
    if (!due || !worthIt || refreshing || lastActivity < s.issued_at) return;
    refreshing = true;
    try {
      const fresh = await api.refresh();
      const before = state.user || {};
      if (fresh.user && (fresh.user.unit !== before.unit || fresh.user.role !== before.role)) {
        // Moved to another unit or role meanwhile: start over with what they may now see
        // (signed in still; the address keeps the view).
        stopApp();
        await startApp();
        return;
      }
      if (state.stream) state.stream.renew();
    } catch {
      /* refused or unreachable: the token runs out as it would have */
    } finally {
      refreshing = false;
    }
  }, every));
}

function stopApp() {
  if (state.stream) state.stream.close();
  state.stream = null;
  state.timers.forEach((id) => { clearInterval(id); clearTimeout(id); });
  state.timers = [];
  state.alerts.clear();
  state.selectedId = null;
  state.selectedSup = null;
  state.supToken += 1;
  state.supervisees = [];
  state.positions = null;
  state.report = null;
  state.signins = null;
  fill($('signins-body'));
  state.casePanel = null;
  if (state.map) state.map.map.remove(); // another officer may sign in next: start afresh
  state.map = null;
  state.mapReady = null;
}

async function loadUnits() {
  let units = [];
  try {
    units = asList(await api.get('/units', { with_boundary: true }), 'units');
  } catch {
    units = [];
  }
  const own = state.user && state.user.unit;
  if (own && !units.some((u) => u.code === own)) {
    try { units.push(await api.get(`/units/${encodeURIComponent(own)}`)); } catch { /* ignore */ }
  }
  // The province around the officer's commune, for the map (may be outside the scope).
  const ownUnit = units.find((u) => u.code === own);
  if (ownUnit && ownUnit.parent && !units.some((u) => u.code === ownUnit.parent)) {
    try { units.push({ ...(await api.get(`/units/${encodeURIComponent(ownUnit.parent)}`)), outside: true }); } catch { /* ignore */ }
  }
  state.units = units;
  state.unitByCode = new Map(units.map((u) => [u.code, u]));
}

function renderWho() {
  // The unit first: it is what the officer must be sure of; the whole line is in the title.
  const u = state.user || {};
  const parts = [
    u.unit ? `${t('unit')}: ${unitName(u.unit)}` : null,
    u.display_name || u.username,
    u.role ? t(`role.${u.role}`) : null,
  ].filter(Boolean);
  const el = $('who');
  el.textContent = parts.join(' · ');
  el.title = parts.join(' · ');
}

function renderConn() {
  const [s, secs] = state.connState;
  const el = $('conn');
  el.className = `conn conn-${s}`;
  const text = s === 'live' ? t('conn.live') : s === 'retry' ? t('conn.retry') : t('conn.connecting');
  // The countdown is visual only: a screen reader hears the state change, not every second.
  fill(el, h('span', {}, text), s === 'retry' ? h('span', { 'aria-hidden': 'true' }, ` ${t('conn.retry.in', { s: secs })}`) : null);
  el.dataset.state = s;
}

function renderMute() {
  const b = $('mute');
  b.textContent = state.muted ? t('sound.off') : t('sound.on');
  b.setAttribute('aria-pressed', state.muted ? 'true' : 'false');
  b.setAttribute('aria-label', `${t('sound.label')}: ${state.muted ? t('sound.off') : t('sound.on')}`);
}

function rerenderAll() {
  applyStatic();
  $('toast').hidden = true; // it spoke the other language
  renderWho();
  renderConn();
  renderMute();
  buildFilters();
  buildReportForm();
  renderList();
  renderDetail();
  renderSupPanel();
  if (state.map) state.map.renderLegend();
  if (state.report) renderReport($('report-body'), state.report, unitName(state.report.unit));
  if (state.signins) renderSignins($('signins-body'), state.signins);
  if (state.view === 'admin') route();
}

// --- routing: #/alerts[/id], #/map[/supervisee], #/report ---------------------------------

function route() {
  if ($('app-view').hidden) return;
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  const manager = state.user && ['province', 'admin'].includes(state.user.role);
  $('tab-admin').hidden = !manager;
  $('tab-signins').hidden = !isAdmin();
  const views = ['alerts', 'map', 'report', 'casework', ...(manager ? ['admin'] : []),
    ...(isAdmin() ? ['signins'] : [])];
  const view = views.includes(parts[0]) ? parts[0] : 'alerts';
  state.view = view;
  for (const v of ['alerts', 'map', 'report', 'casework', 'admin', 'signins']) {
    $(`view-${v}`).hidden = v !== view;
    const tab = $(`tab-${v}`);
    if (v === view) tab.setAttribute('aria-current', 'page');
    else tab.removeAttribute('aria-current');
  }
  if (view === 'alerts') {
    const id = parts[1] ? Number(parts[1]) : null;
    if (id !== state.selectedId) selectAlert(id);
  } else if (view === 'map') {
    showMap();
  } else if (view === 'casework') {
    showCasework($('view-casework'));
  } else if (view === 'admin') {
    renderAdmin($('view-admin'), { user: state.user, loadUnits: async () => { await loadUnits(); return state.units; } });
  } else if (view === 'signins') {
    loadSignins();
  }
}

function isAdmin() {
  return state.user?.role === 'admin';
}

async function loadSignins() {
  try {
    state.signins = await api.get('/auth/failures');
    renderSignins($('signins-body'), state.signins);
  } catch (e) {
    if (e.status !== 401) toast(errorMessage(e), 'error');
  }
}

// --- the alert queue ------------------------------------------------------------------------

function option(value, text, selected) {
  return h('option', { value, selected: value === selected }, text);
}

function buildFilters() {
  const f = state.filters;
  fill($('f-status'),
    option('unresolved', t('filter.unresolved'), f.status),
    option('', t('filter.all'), f.status),
    ...STATUSES.map((s) => option(s, label('status', s), f.status)),
  );
  fill($('f-severity'),
    option('', t('filter.all'), f.severity),
    ...SEVERITIES.map((s) => option(s, label('severity', s), f.severity)),
  );
  fill($('f-type'),
    option('', t('filter.all'), f.type),
    ...TYPES.map((s) => option(s, label('type', s), f.type)),
  );
  const scoped = state.units.filter((u) => !u.outside);
  $('f-unit-wrap').hidden = scoped.length < 2;
  fill($('f-unit'),
    option('', t('filter.all'), f.unit),
    ...scoped.map((u) => option(u.code, `${u.name} (${u.code})`, f.unit)),
  );
}

function onFilterChange() {
  state.filters = {
    status: $('f-status').value,
    severity: $('f-severity').value,
    type: $('f-type').value,
    unit: $('f-unit').value,
    q: $('f-q').value,
  };
  loadAlerts();
}

async function loadAlerts() {
  const f = state.filters;
  const base = { severity: f.severity, type: f.type, unit: f.unit, q: f.q, limit: LIST_LIMIT };
  const statuses = f.status === 'unresolved' ? ['open', 'acknowledged'] : [f.status];
  $('alert-list').setAttribute('aria-busy', 'true');
  try {
    const lists = await Promise.all(statuses.map((status) => api.get('/alerts', { ...base, status })));
    const fetched = new Map();
    for (const list of lists) for (const a of asList(list, 'alerts')) fetched.set(a.id, a);
    casework.rememberNames([...fetched.values()]);
    // Keep what streamed in meanwhile if it is newer than what the list returned.
    for (const [id, a] of state.alerts) {
      const got = fetched.get(id);
      if (got && (a.updated_at || 0) > (got.updated_at || 0)) fetched.set(id, a);
    }
    if (state.selectedId && state.alerts.has(state.selectedId) && !fetched.has(state.selectedId)) {
      fetched.set(state.selectedId, state.alerts.get(state.selectedId));
    }
    state.alerts = fetched;
  } catch (e) {
    if (e.status !== 401) toast(errorMessage(e), 'error');
  }
  $('alert-list').setAttribute('aria-busy', 'false');
  renderList();
  if (state.selectedId) renderDetail();
}

function matchesFilters(a) {
  const f = state.filters;
  if (f.status === 'unresolved' ? a.status === 'resolved' : f.status && a.status !== f.status) return false;
  if (f.severity && a.severity !== f.severity) return false;
  if (f.type && a.type !== f.type) return false;
  if (f.unit && a.unit !== f.unit && state.unitByCode.get(a.unit)?.parent !== f.unit) return false;
  return casework.matchesSearch(a, f.q);
}

function visibleAlerts() {
  return [...state.alerts.values()]
    .filter(matchesFilters)
    .sort((a, b) => (b.opened_at || 0) - (a.opened_at || 0) || b.id - a.id);
}

function alertRow(a) {
  const selected = a.id === state.selectedId;
  const flags = [
    a.active ? h('span', { class: 'flag flag-active' }, t('flag.active')) : null,
    a.escalated ? h('span', { class: 'flag flag-escalated' }, t('flag.escalated')) : null,
    a.occurred_at != null ? h('span', { class: 'flag flag-late', title: t('detail.late.text', {
      occurred: formatDateTime(a.occurred_at), raised: formatDateTime(a.raised_at ?? a.opened_at),
    }) }, t('queue.late')) : null,
  ];
  return h('li', { class: `alert-row sev-row-${a.severity}${state.fresh.has(a.id) ? ' fresh' : ''}`, dataset: { id: a.id, status: a.status } },
    h('button', {
      type: 'button',
      class: 'alert-button',
      'aria-current': selected ? 'true' : null,
      onclick: () => { location.hash = `#/alerts/${a.id}`; },
    },
    h('span', { class: 'row-top' },
      severityBadge(a.severity),
      h('span', { class: 'row-type' }, label('type', a.type)),
      statusBadge(a.status),
      ...flags,
      h('time', { class: 'row-time', datetime: new Date(a.opened_at).toISOString(), dataset: { ts: a.opened_at }, title: formatDateTime(a.opened_at) }, relativeTime(a.opened_at))),
    h('span', { class: 'row-msg' }, alertMessage(a)),
    h('span', { class: 'row-meta' }, `#${a.id} · ${casework.personLabel(a.supervisee_id)}${a.zone_id ? ` · ${casework.zoneLabel(a.zone_id, a.explanation && a.explanation.purpose)}` : ''} · ${a.unit}`)));
}

function renderList() {
  const list = visibleAlerts();
  const ul = $('alert-list');
  // Live updates redraw the list: keep the keyboard focus on the alert it was on.
  const focused = ul.contains(document.activeElement) ? document.activeElement.closest('.alert-row') : null;
  const focusId = focused ? focused.dataset.id : null;
  fill(ul, ...(list.length ? list.map(alertRow) : [h('li', { class: 'empty' }, t('queue.empty'))]));
  if (focusId) {
    const btn = ul.querySelector(`.alert-row[data-id="${focusId}"] button`);
    if (btn) btn.focus({ preventScroll: true });
  }
  $('queue-count').textContent = t(list.length === 1 ? 'queue.count.one' : 'queue.count', { n: list.length });
}

function refreshTimes() {
  for (const el of document.querySelectorAll('time[data-ts]')) el.textContent = relativeTime(Number(el.dataset.ts));
}

function onStreamAlert(a) {
  const prev = state.alerts.get(a.id);
  if (prev && (prev.updated_at || 0) > (a.updated_at || 0)) return; // an older change, late
  state.alerts.set(a.id, { ...prev, ...a });
  const isNew = !prev;
  const becameCritical = a.severity === 'critical' && (!prev || prev.severity !== 'critical');
  if (isNew) {
    state.fresh.add(a.id);
    setTimeout(() => { state.fresh.delete(a.id); const li = document.querySelector(`.alert-row[data-id="${a.id}"]`); if (li) li.classList.remove('fresh'); }, 8000);
    if (matchesFilters(a)) announce(t('new.alert', { msg: alertMessage(a) }));
  }
  if (becameCritical && a.status === 'open' && !state.muted) beep();
  renderList();
  if (a.id === state.selectedId) {
    renderDetail();
    loadHistory(a.id);
  }
}

// --- alert detail and actions ---------------------------------------------------------------

async function selectAlert(id) {
  state.selectedId = id;
  state.history = [];
  renderList();
  renderDetail();
  if (id) {
    // focus the opened alert at once (a keyboard user is not left on the row while the
    // history loads), and again after it: the pane may be rebuilt when the alert comes with it
    const first = $('detail-heading');
    if (first) first.focus({ preventScroll: false });
    await loadHistory(id);
    const heading = $('detail-heading');
    const lost = !document.activeElement || document.activeElement === document.body;
    if (heading && lost && id === state.selectedId) heading.focus({ preventScroll: false });
  }
}

async function loadHistory(id) {
  try {
    const data = await api.get(`/alerts/${id}/history`);
    if (id !== state.selectedId) return;
    state.history = asList(data, 'history');
    if (!state.alerts.has(id) && data && data.alert) {
      // a link to an alert the queue's filter leaves out (e.g. resolved): show it all the same
      state.alerts.set(id, data.alert);
      casework.rememberNames([data.alert]);
      renderDetail();
    }
    if (data && data.alert && data.alert.citation) {  // the law behind the rule (issue 13)
      state.citations.set(id, data.alert.citation);
      if (state.alerts.has(id) && $('detail-summary')) renderSummary(state.alerts.get(id));
    }
  } catch (e) {
    if (id === state.selectedId && e.status !== 401) state.history = null;
  }
  renderHistory();
}

function field(name, value) {
  return [h('dt', {}, t(name)), h('dd', {}, value ?? t('unknown'))];
}

/** Why a zone alert fired, from its explanation (fixes, distance, accuracy, margin). */
function basis(a) {
  const e = a.explanation;
  if (!e || e.distance_m == null) return null;
  const r = (x) => (x == null ? '?' : Math.round(Math.abs(x)));
  return t('detail.basis.text', { count: e.count ?? '?', d: r(e.distance_m), acc: r(e.acc_m), margin: r(e.margin_m) });
}

function renderDetail() {
  const pane = $('alert-detail');
  const a = state.alerts.get(state.selectedId);
  if (!state.selectedId || !a) {
    delete pane.dataset.alertId;
    fill(pane,
      h('h2', { id: 'detail-heading', tabindex: '-1', class: 'sr-only' }, t('detail.heading')),
      h('p', { class: 'placeholder' }, t('detail.none')));
    return;
  }
  // A live update of the alert on screen redraws its summary only; the forms are rebuilt only
  // when its status (hence the possible actions) or the language changes, so a note being
  // typed, the caret and the focus stay where they are.
  const sameAlert = pane.dataset.alertId === String(a.id) && pane.dataset.lang === getLang();
  if (!sameAlert) {
    pane.dataset.alertId = String(a.id);
    pane.dataset.lang = getLang();
    fill(pane,
      h('div', { class: 'pane-head' },
        h('h2', { id: 'detail-heading', tabindex: '-1' }, `${t('detail.heading')} #${a.id}`),
        h('button', { type: 'button', class: 'tool close', 'aria-label': t('detail.close'), onclick: () => { location.hash = '#/alerts'; } }, '✕')),
      h('div', { id: 'detail-summary', class: 'detail-summary' }),
      h('div', { id: 'detail-actions' }),
      h('section', { id: 'alert-commands', class: 'alert-commands' }),
      h('section', { class: 'history', 'aria-labelledby': 'history-heading' },
        h('h3', { id: 'history-heading' }, t('detail.history')),
        h('ol', { id: 'history-list', class: 'history-list' })));
  }
  renderSummary(a);
  if (!sameAlert) {
    if (state.stopCommands) state.stopCommands();
    state.stopCommands = a.device_id ? casework.commandsPanel($('alert-commands'), a.device_id, { since: a.opened_at, alertId: a.id }) : null;
  }
  const actions = $('detail-actions');
  if (!sameAlert || actions.dataset.status !== a.status) {
    actions.dataset.status = a.status;
    fill(actions, ...actionForms(a));
  }
  renderHistory();
}

function renderSummary(a) {
  const pos = a.lat != null && a.lon != null ? `${a.lat.toFixed(5)}, ${a.lon.toFixed(5)}` : null;
  fill($('detail-summary'),
    h('div', { class: 'detail-title' },
      severityBadge(a.severity), statusBadge(a.status),
      a.active ? h('span', { class: 'flag flag-active' }, t('flag.active')) : null,
      a.escalated ? h('span', { class: 'flag flag-escalated' }, t('flag.escalated')) : null),
    h('p', { class: 'detail-msg' }, alertMessage(a)),
    h('dl', { class: 'fields' },
      ...field('detail.id', `#${a.id}`),
      ...field('detail.type', label('type', a.type)),
      ...field('detail.supervisee', h('a', { href: `#/map/${encodeURIComponent(a.supervisee_id)}` }, casework.personLabel(a.supervisee_id))),
      ...field('detail.device', a.device_id),
      ...field('detail.zone', casework.zoneLabel(a.zone_id, a.explanation && a.explanation.purpose)),
      ...field('unit', unitName(a.unit)),
      ...field('detail.position', pos),
      ...field('detail.opened', `${formatDateTime(a.opened_at)} (${relativeTime(a.opened_at)})`),
      // raised from fixes that arrived late (a restart, a backlog, a device's buffer)
      ...(a.occurred_at != null ? field('detail.late', t('detail.late.text', {
        occurred: formatDateTime(a.occurred_at), raised: formatDateTime(a.raised_at ?? a.opened_at),
      })) : []),
      ...field('detail.updated', formatDateTime(a.updated_at)),
      ...(basis(a) ? field('detail.basis', basis(a)) : []),
      ...(state.citations.has(a.id) ? field('detail.law', citationText(state.citations.get(a.id))) : []),
      ...(a.occurrences > 1 ? field('detail.occurrences', String(a.occurrences)) : []),
      ...(a.acknowledged_at ? field('detail.acked', `${formatDateTime(a.acknowledged_at)} · ${a.acknowledged_by || ''}`) : []),
      ...(a.resolved_at ? field('detail.resolved', `${formatDateTime(a.resolved_at)} · ${a.resolved_by || ''}`) : []),
      ...(a.outcome ? field('detail.outcome', label('outcome', a.outcome)) : [])),
    h('button', { type: 'button', class: 'link-button', onclick: () => showAlertOnMap(a) }, t('detail.showmap')));
}

function actionForms(a) {
  const forms = [];
  if (a.status === 'open') {
    forms.push(h('form', { class: 'action-form', id: 'ack-form', onsubmit: (ev) => { ev.preventDefault(); acknowledge(a.id); } },
      h('h3', {}, t('ack.heading')),
      h('label', { for: 'ack-note' }, t('ack.note')),
      h('textarea', { id: 'ack-note', rows: '2', maxlength: '2000' }),
      h('button', { type: 'submit', class: 'primary', id: 'ack-submit' }, t('ack.submit'))));
  }
  if (a.status !== 'resolved') {
    forms.push(h('form', { class: 'action-form', id: 'resolve-form', onsubmit: (ev) => { ev.preventDefault(); resolve(a.id); } },
      h('h3', {}, t('resolve.heading')),
      h('fieldset', {},
        h('legend', {}, t('resolve.outcome')),
        ...OUTCOMES.map((o) => h('label', { class: 'radio' },
          h('input', { type: 'radio', name: 'outcome', value: o, id: `outcome-${o}`, required: true }),
          ` ${label('outcome', o)}`))),
      h('label', { for: 'resolve-note' }, t('resolve.note')),
      h('textarea', { id: 'resolve-note', rows: '2', maxlength: '2000' }),
      h('button', { type: 'submit', class: 'primary', id: 'resolve-submit' }, t('resolve.submit'))));
  }
  return forms;
}

function renderHistory() {
  const ol = $('history-list');
  if (!ol) return;
  if (state.history === null) {
    fill(ol, h('li', { class: 'muted' }, t('unknown')));
    return;
  }
  if (!state.history.length) {
    fill(ol, h('li', { class: 'muted' }, t('detail.history.empty')));
    return;
  }
  const items = [...state.history].sort((x, y) => (y.at || 0) - (x.at || 0) || (y.id || 0) - (x.id || 0));
  fill(ol, ...items.map((e) => {
    const actor = e.actor === 'system' ? t('actor.system') : e.actor;
    const extra = [];
    if (e.data && e.data.severity) extra.push(label('severity', e.data.severity));
    if (e.data && e.data.outcome) extra.push(label('outcome', e.data.outcome));
    return h('li', {},
      h('time', { datetime: e.at ? new Date(e.at).toISOString() : null }, formatDateTime(e.at)),
      ' ',
      h('strong', {}, label('history', e.action)),
      extra.length ? ` (${extra.join(', ')})` : '',
      ' ',
      h('span', { class: 'muted' }, t('history.by', { who: actor })),
      e.note ? h('div', { class: 'history-note' }, e.note) : null);
  }));
}

async function acknowledge(id) {
  const btn = $('ack-submit');
  btn.disabled = true;
  try {
    const note = $('ack-note').value.trim();
    const res = await api.post(`/alerts/${id}/ack`, note ? { note } : {});
    applyActionResult(id, res, { status: 'acknowledged' });
    toast(t('ack.done', { id }));
    announce(t('ack.done', { id }));
  } catch (e) {
    toast(errorMessage(e), 'error');
    btn.disabled = false;
  }
}

async function resolve(id) {
  const chosen = document.querySelector('#resolve-form input[name=outcome]:checked');
  if (!chosen) {
    toast(t('resolve.needoutcome'), 'error');
    document.querySelector('#resolve-form input[name=outcome]').focus();
    return;
  }
  const btn = $('resolve-submit');
  btn.disabled = true;
  try {
    const note = $('resolve-note').value.trim();
    const res = await api.post(`/alerts/${id}/resolve`, { outcome: chosen.value, note });
    applyActionResult(id, res, { status: 'resolved', outcome: chosen.value });
    toast(t('resolve.done', { id }));
    announce(t('resolve.done', { id }));
  } catch (e) {
    toast(errorMessage(e), 'error');
    btn.disabled = false;
  }
}

function applyActionResult(id, res, fallback) {
  const alert = res && (res.alert || (res.id !== undefined ? res : null));
  const prev = state.alerts.get(id) || {};
  state.alerts.set(id, alert ? { ...prev, ...alert } : { ...prev, ...fallback, updated_at: Date.now() });
  renderList();
  renderDetail();
  loadHistory(id);
  const heading = $('detail-heading');
  if (heading) heading.focus();
}

function showAlertOnMap(a) {
  location.hash = `#/map/${encodeURIComponent(a.supervisee_id)}`;
  state.pendingFocus = a;
}

// --- the map and the supervisee panel -------------------------------------------------------

async function showMap() {
  if (!state.map) {
    state.map = new MapView($('map'), {
      tileUrl: state.config && (state.config.map_tiles_url || state.config.tile_url),
      tileAttribution: state.config && state.config.map_tiles_attribution,
      onSelectSupervisee: (id) => { location.hash = `#/map/${encodeURIComponent(id)}`; },
    });
    state.mapReady = loadMapData();
  }
  state.map.refreshSize();
  await state.mapReady;
  // Apply the selection the address asks for *now*: an earlier call may finish late.
  if (state.view !== 'map') return;
  const want = decodeURIComponent(location.hash.replace(/^#\/?/, '').split('/')[1] || '') || null;
  if (want) await selectSupervisee(want);
  else if (state.selectedSup) {
    state.selectedSup = null;
    state.supToken += 1;
    state.map.clearTrack();
    renderSupPanel();
  }
  if (state.pendingFocus) {
    const a = state.pendingFocus;
    state.pendingFocus = null;
    state.map.focusOn(a.lat, a.lon, `#${a.id} ${label('type', a.type)}`);
  }
}

async function mapLimit(items, limit, fn) {
  const out = [];
  let i = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (i < items.length) {
      const k = i++;
      try { out[k] = await fn(items[k]); } catch { out[k] = null; }
    }
  });
  await Promise.all(workers);
  return out;
}

async function loadMapData() {
  const own = state.user && state.user.unit;
  // Boundaries: the unit list may leave them out; fetch each unit's detail then (bounded).
  const units = state.units.slice(0, 80);
  const full = await mapLimit(units, 4, async (u) => (u.boundary !== undefined ? u : { ...u, ...(await api.get(`/units/${encodeURIComponent(u.code)}`)) }));
  full.forEach((u, k) => { if (u) state.units[k] = u; });
  state.unitByCode = new Map(state.units.map((u) => [u.code, u]));
  state.map.setUnits(state.units, own);
  const home = own || (state.units[0] && state.units[0].code);
  state.map.fitUnit(home);
  try {
    state.supervisees = asList(await api.get('/supervisees', {}), 'supervisees');
  } catch {
    state.supervisees = [];
  }
  renderSupPanel();
  await loadPositions();
  if (!state.selectedSup) state.map.fitUnit(home); // now with the positions in view
  // Zones of every supervisee for the overview, when the unit is of a modest size.
  if (state.supervisees.length <= 60) {
    await mapLimit(state.supervisees, 4, async (s) => {
      const fc = await api.get(`/supervisees/${encodeURIComponent(s.id)}/zones`);
      state.map.setZones(s.id, fc);
    });
  }
}

/** Supervisees with an unresolved alert: their dots stand out on the map. */
function alertingSupervisees() {
  return new Set([...state.alerts.values()].filter((a) => a.status !== 'resolved').map((a) => a.supervisee_id));
}

async function loadPositions() {
  try {
    state.positions = await api.get('/positions', {});
    state.map.setPositions(state.positions, Date.now(), alertingSupervisees());
  } catch {
    /* the map keeps what it had */
  }
}

async function selectSupervisee(id) {
  if (state.selectedSup && state.selectedSup.id === id && state.selectedSup.loaded) {
    renderSupPanel();
    return;
  }
  const token = ++state.supToken; // only the latest selection's answers are drawn
  state.selectedSup = { id, loaded: false };
  renderSupPanel();
  const now = Date.now();
  const enc = encodeURIComponent(id);
  const [detail, zones, track, permits] = await Promise.all([
    api.get(`/supervisees/${enc}`).catch(() => null),
    api.get(`/supervisees/${enc}/zones`).catch(() => null),
    api.get(`/supervisees/${enc}/track`, { from: now - DAY_MS, to: now }).catch(() => null),
    api.get(`/supervisees/${enc}/permits`).catch(() => null),
  ]);
  if (token !== state.supToken) return;
  state.selectedSup = { id, loaded: true, detail, zones, track, permits };
  let bounds = null;
  if (zones) bounds = state.map.setZones(id, zones, { selected: true }).getBounds();
  const tb = state.map.setTrack(track);
  if (tb && tb.isValid()) bounds = bounds && bounds.isValid() ? bounds.extend(tb) : tb;
  if (bounds && bounds.isValid() && !state.pendingFocus) state.map.fit(bounds);
  renderSupPanel();
}

function violationsText(v) {
  if (typeof v !== 'object') return String(v);
  const text = v.court_threshold ? t('sup.violations.of', { n: v.count, max: v.court_threshold }) : String(v.count);
  return v.court_threshold_reached ? h('span', {}, text, h('strong', { class: 'court-flag' }, t('sup.court'))) : text;
}

function zoneSummary(f) {
  const p = f.properties || {};
  const parts = [label('zone', p.kind)];
  if (p.purpose) parts.push(label('purpose', p.purpose));
  if (p.radius_m) parts.push(t('zone.circle', { r: Math.round(p.radius_m) }));
  const sched = Array.isArray(p.schedule) && p.schedule.length
    ? p.schedule.map((w) => `${(w.days || []).join(',')} ${w.start}–${w.end}`).join('; ')
    : null;
  return h('li', { class: `zone-item zone-${p.kind} ${p.purpose === 'protection' ? 'zone-protection' : ''}` },
    h('strong', {}, p.id || f.id || ''), ` · ${parts.join(' · ')}`,
    sched ? h('div', { class: 'muted' }, `${t('zone.schedule')}: ${sched}`) : null);
}

// A permit's revocation or shortening is a new version on the server (the earlier ones stay);
// the officer gives a reason, and a shortened permit's new end in local time.
function permitItem(p, supId) {
  const now = Date.now();
  const ends = p.ends_at;
  const note = ends == null ? t('permit.never')
    : p.revoked_at != null ? t('permit.revoked', { at: formatDateTime(p.revoked_at) }) : null;
  return h('li', { class: 'permit-item', dataset: { permit: String(p.id) } },
    h('strong', {}, `#${p.id}`), ` ${formatDateTime(p.valid_from)} – ${formatDateTime(ends ?? p.valid_to)} · ${p.reason}`,
    note ? h('div', { class: 'muted' }, note) : null,
    ends != null && ends > now ? permitActions(p, supId) : null);
}

function permitActions(p, supId) {
  const reason = h('input', { type: 'text', maxlength: 1000, class: 'permit-reason', placeholder: t('permit.reason'), 'aria-label': t('permit.reason') });
  const until = h('input', { type: 'datetime-local', class: 'permit-until', 'aria-label': t('permit.until') });
  const change = async (kind) => {
    const why = reason.value.trim();
    if (!why) { toast(t('permit.reason.needed'), 'error'); reason.focus(); return; }
    if (kind === 'shorten' && !until.value) { toast(t('permit.until.needed'), 'error'); until.focus(); return; }
    const body = kind === 'shorten' ? { valid_to: new Date(until.value).getTime(), reason: why } : { reason: why };
    try {
      await api.post(`/permits/${p.id}/${kind}`, body);
      toast(t(`permit.${kind}.done`, { id: p.id }));
      const permits = await api.get(`/supervisees/${encodeURIComponent(supId)}/permits`);
      if (state.selectedSup && state.selectedSup.id === supId) {
        state.selectedSup.permits = permits;
        renderSupPanel();
      }
    } catch (e) {
      toast(errorMessage(e), 'error');
    }
  };
  return h('div', { class: 'permit-actions' }, reason,
    h('button', { type: 'button', class: 'permit-revoke', onclick: () => change('revoke') }, t('permit.revoke')),
    until,
    h('button', { type: 'button', class: 'permit-shorten', onclick: () => change('shorten') }, t('permit.shorten')));
}

function renderSupPanel() {
  const panel = $('sup-panel');
  if (!panel) return;
  const sel = state.selectedSup;
  if (!sel) {
    const q = state.supSearch.toLowerCase();
    const list = state.supervisees.filter((s) => !q || s.id.toLowerCase().includes(q) || (s.name || '').toLowerCase().includes(q));
    const search = h('input', {
      type: 'search', id: 'sup-search', value: state.supSearch, placeholder: t('sup.search'), 'aria-label': t('sup.search'),
      oninput: (ev) => { state.supSearch = ev.target.value; renderSupPanel(); const el = $('sup-search'); el.focus(); el.setSelectionRange(el.value.length, el.value.length); },
    });
    fill(panel,
      h('h2', { id: 'sup-heading' }, t('sup.heading')),
      search,
      h('p', { class: 'muted' }, t('sup.select')),
      h('ul', { class: 'sup-list' }, ...(list.length ? list.map((s) => h('li', {},
        h('a', { href: `#/map/${encodeURIComponent(s.id)}` },
          h('strong', {}, s.id), ' ', s.name || '',
          h('span', { class: 'muted small' }, ` · ${label('sentence', s.sentence_type)}`)))) : [h('li', { class: 'muted' }, t('sup.none'))])));
    return;
  }
  const d = sel.detail || {};
  const pos = d.last_position || (state.positions && asList(state.positions.features).find((f) => f.properties && f.properties.supervisee_id === sel.id));
  const p = pos ? pos.properties : null;
  const nTrack = sel.track ? asList(sel.track.features).length : 0;
  const alerts = [...state.alerts.values()].filter((a) => a.supervisee_id === sel.id);
  fill(panel,
    h('a', { href: '#/map', class: 'back' }, `← ${t('sup.back')}`),
    h('h2', { id: 'sup-heading' }, `${d.name || ''} `, h('span', { class: 'muted' }, `(${sel.id})`)),
    !sel.loaded ? h('p', { class: 'muted' }, t('queue.loading')) : null,
    sel.loaded ? h('dl', { class: 'fields' },
      ...field('sup.sentence', label('sentence', d.sentence_type)),
      ...field('sup.period', d.sentence_start ? `${formatDate(d.sentence_start)} – ${formatDate(d.sentence_end)}` : null),
      ...field('unit', unitName(d.unit)),
      ...(d.violations ? field('sup.violations', violationsText(d.violations)) : []),
      ...field('detail.device', d.device_id || (p && p.device_id)),
      ...field('sup.lastpos', p ? `${formatDateTime(p.ts)} (± ${Math.round(p.acc ?? 0)} m)` : null),
      ...field('sup.battery', p && p.battery != null ? `${Math.round(p.battery)} %` : null)) : null,
    sel.loaded ? h('h3', {}, t('sup.zones')) : null,
    sel.loaded ? h('ul', { class: 'zone-list' }, ...(sel.zones && asList(sel.zones.features).length
      ? sel.zones.features.map(zoneSummary) : [h('li', { class: 'muted' }, t('sup.zones.none'))])) : null,
    sel.loaded ? h('h3', {}, t('sup.permits')) : null,
    sel.loaded ? h('ul', { class: 'permit-list', id: 'permit-list' }, ...(Array.isArray(sel.permits) && sel.permits.length
      ? sel.permits.map((p) => permitItem(p, sel.id)) : [h('li', { class: 'muted' }, t('sup.permits.none'))])) : null,
    sel.loaded ? h('h3', {}, t('sup.track')) : null,
    sel.loaded ? h('p', {}, nTrack ? t('sup.track.count', { n: nTrack }) : t('sup.track.none')) : null,
    sel.loaded && alerts.length ? h('h3', {}, t('nav.alerts')) : null,
    sel.loaded && alerts.length ? h('ul', { class: 'sup-alerts' }, ...alerts.map((a) => h('li', {},
      h('a', { href: `#/alerts/${a.id}` }, severityBadge(a.severity), ` ${label('type', a.type)} · ${label('status', a.status)}`)))) : null,
    h('button', { type: 'button', class: 'primary', id: 'case-export', onclick: () => openCaseExport(sel.id) }, t('sup.export')),
    sel.loaded ? casePanel(sel) : null,
  );
}

/** The case panel (casework.renderCasePanel) of the selection, built once per selection and
 *  language, kept across redraws so forms being filled keep their content. */
function casePanel(sel) {
  const key = `${sel.id}:${getLang()}`;
  if (!state.casePanel || state.casePanel.dataset.key !== key) {
    state.casePanel = h('div', { id: 'case-panel', class: 'case-panel', dataset: { key } });
    casework.renderCasePanel(state.casePanel, {
      sid: sel.id, detail: sel.detail, zones: sel.zones, track: sel.track, map: state.map, toast,
      reloadZones: async () => {
        const fc = await api.get(`/supervisees/${encodeURIComponent(sel.id)}/zones`);
        sel.zones = fc;
        state.map.setZones(sel.id, fc, { selected: true });
        renderSupPanel();
        return fc;
      },
      reloadPermits: async () => {  // after a grant: the panel's list (revoke, shorten) refreshes
        sel.permits = await api.get(`/supervisees/${encodeURIComponent(sel.id)}/permits`);
        renderSupPanel();
      },
    });
  }
  return state.casePanel;
}

async function openCaseExport(id) {
  // Open the window within the click (popup blockers), then fill it with the authorised page.
  const w = window.open('', '_blank');
  const now = Date.now();
  try {
    const res = await api.fetchRaw(`/supervisees/${encodeURIComponent(id)}/case-export`, { from: now - 30 * DAY_MS, to: now });
    const html = await res.text();
    const url = URL.createObjectURL(new Blob([html], { type: 'text/html;charset=utf-8' }));
    if (w) w.location.href = url;
    else location.href = url;
  } catch (e) {
    if (w) w.close();
    toast(errorMessage(e), 'error');
  }
}

// --- the monthly report ---------------------------------------------------------------------

function buildReportForm() {
  const sel = $('r-unit');
  const current = sel.value || (state.user && state.user.unit) || '';
  const scoped = state.units.filter((u) => !u.outside);
  fill(sel, ...scoped.map((u) => option(u.code, `${u.name} (${u.code})`, current)));
  casework.fillMonthPicker($('r-month'), currentMonth());
}

async function showReport(ev) {
  ev.preventDefault();
  const unit = $('r-unit').value;
  const month = $('r-month').value;
  const body = $('report-body');
  fill(body, h('p', { class: 'muted' }, t('queue.loading')));
  try {
    state.report = await api.get('/reports/monthly', { unit, month, format: 'json' });
    renderReport(body, state.report, unitName(unit));
  } catch (e) {
    state.report = null;
    fill(body, h('p', { class: 'form-error' }, errorMessage(e)));
  }
}

async function downloadCsv() {
  const unit = $('r-unit').value;
  const month = $('r-month').value;
  try {
    const res = await api.fetchRaw('/reports/monthly', { unit, month, format: 'csv' });
    const blob = await res.blob();
    const a = h('a', { href: URL.createObjectURL(blob), download: `bao-cao-${unit}-${month}.csv` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
  } catch (e) {
    toast(errorMessage(e), 'error');
  }
}

// --- wiring ---------------------------------------------------------------------------------

function init() {
  applyStatic();
  $('login-form').addEventListener('submit', onLoginSubmit);
  for (const b of document.querySelectorAll('.lang-toggle')) {
    b.addEventListener('click', () => {
      setLang(getLang() === 'vi' ? 'en' : 'vi');
      rerenderAll();
    });
  }
  $('logout').addEventListener('click', () => {
    api.clearSession();
    location.hash = '';
    showLogin();
  });
  $('mute').addEventListener('click', () => {
    state.muted = !state.muted;
    localStorage.setItem('giamsat.muted', state.muted ? '1' : '0');
    if (!state.muted) unlockAudio();
    renderMute();
  });
  $('filters').addEventListener('change', onFilterChange);
  $('f-q').addEventListener('input', () => { state.filters.q = $('f-q').value; renderList(); });
  $('report-form').addEventListener('submit', showReport);
  $('r-csv').addEventListener('click', downloadCsv);
  window.addEventListener('hashchange', route);
  document.addEventListener('keydown', (ev) => {
    const typing = ['TEXTAREA', 'INPUT', 'SELECT'].includes(ev.target.tagName);
    if (ev.key === 'Escape' && !typing && state.view === 'alerts' && state.selectedId && !$('app-view').hidden) {
      location.hash = '#/alerts';
    }
  });
  api.setExpiredHandler(() => showLogin(t('login.expired')));
  if (api.getSession()) startApp();
  else showLogin();
}

init();
