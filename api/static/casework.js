// Casework (issue 13): roll-call (an in-person check-in, the month's windows and check-ins),
// the monthly assessment (proposed, confirmed or changed with a reason, signed by the chief,
// exported) and the unit's overdue deadlines. Self-contained: app.js routes #/casework here.

import * as api from './api.js';
import { t } from './i18n.js';
import { currentMonth, fill, formatDate, formatDateTime, h, label } from './util.js';

const CLASSES = ['tot', 'kha', 'trung_binh', 'kem'];

const cw = {
  container: null,
  me: null,
  supervisees: [],
  sid: '',
  month: '',     // the assessment month (YYYY-MM), the previous month by default
  rollcall: null,
  listing: null,
  deadlines: null,
  busy: false,
  message: { text: '', kind: 'ok' },  // the last outcome, kept across re-renders
};

const $ = (id) => document.getElementById(id);

/** "Điều 92 khoản 1, Luật ... (chưa kiểm chứng)": a citation for the officer (an article or
 *  clause not yet known, written "(...)" in the policy data, is left out). */
export function citationText(c) {
  if (!c) return t('unknown');
  const where = [c.article, c.clause].filter((x) => x && !x.startsWith('(')).join(' ');
  const flag = c.verified ? '' : ` (${t('cw.unverified')})`;
  return `${where ? `${where}, ` : ''}${c.law}${flag}`;
}

function previousMonth() {
  const [y, m] = currentMonth().split('-').map(Number);
  const d = new Date(Date.UTC(y, m - 2, 1));
  return `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, '0')}`;
}

function note(text, kind = 'ok') {
  cw.message = { text, kind };
  const el = $('cw-status');
  if (el) {
    el.textContent = text;
    el.className = statusClass();
  }
}

function statusClass() {
  return `cw-status ${cw.message.kind === 'error' ? 'form-error' : 'muted'}`;
}

/** Show the casework view (called by app.js on #/casework). */
export async function showCasework(container) {
  cw.container = container;
  if (!cw.month) cw.month = previousMonth();
  render();
  try {
    cw.me = cw.me || await api.get('/me');
    cw.supervisees = await api.get('/supervisees');
    if (!cw.sid && cw.supervisees.length) cw.sid = cw.supervisees[0].id;
    await Promise.all([loadRollcall(), loadListing(), loadDeadlines()]);
  } catch (e) {
    note(e.message, 'error');
  }
  render();
}

async function loadRollcall() {
  cw.rollcall = cw.sid ? await api.get(`/supervisees/${encodeURIComponent(cw.sid)}/rollcall`,
    { month: currentMonth() }) : null;
}

async function loadListing() {
  cw.listing = cw.me && cw.me.unit ? await api.get('/casework/assessments',
    { month: cw.month, unit: cw.me.unit }) : null;
}

async function loadDeadlines() {
  cw.deadlines = cw.me && cw.me.unit ? await api.get('/casework/deadlines',
    { unit: cw.me.unit, overdue_only: true }) : null;
}

async function act(fn, done) {
  if (cw.busy) return;
  cw.busy = true;
  try {
    await fn();
    note(done);
  } catch (e) {
    note(e.message, 'error');
  } finally {
    cw.busy = false;
    render();
  }
}

function recordCheckin() {
  return act(async () => {
    const sid = cw.sid;
    await api.post(`/supervisees/${encodeURIComponent(sid)}/checkins`,
      { note: $('cw-checkin-note').value || null });
    await Promise.all([loadRollcall(), loadListing()]);
  }, t('cw.checkin.done'));
}

function confirm(sid) {
  const classification = $(`cw-class-${sid}`).value;
  const reason = $(`cw-reason-${sid}`).value.trim() || null;
  return act(async () => {
    await api.put(`/supervisees/${encodeURIComponent(sid)}/assessments/${cw.month}`,
      { classification, reason });
    await loadListing();
  }, t('cw.assess.confirmed'));
}

function sign() {
  return act(async () => {
    cw.listing = await api.post('/casework/assessments/sign', { unit: cw.me.unit, month: cw.month });
  }, t('cw.sign.done'));
}

async function download(format) {
  try {
    const res = await api.fetchRaw('/casework/assessments/export',
      { month: cw.month, unit: cw.me.unit, format });
    const url = URL.createObjectURL(await res.blob());
    if (format === 'html') {
      window.open(url, '_blank');
    } else {
      const a = h('a', { href: url, download: `xep-loai-${cw.me.unit}-${cw.month}.csv` });
      document.body.append(a);
      a.click();
      a.remove();
    }
  } catch (e) {
    note(e.message, 'error');
  }
}

// --- rendering ------------------------------------------------------------------------------

function render() {
  if (!cw.container) return;
  fill(cw.container,
    h('h2', { id: 'casework-heading' }, t('cw.heading')),
    h('p', { id: 'cw-status', class: statusClass(), role: 'status', 'aria-live': 'polite' }, cw.message.text),
    rollcallSection(),
    assessmentSection(),
    deadlineSection());
}

function rollcallSection() {
  const r = cw.rollcall;
  const choose = h('select', {
    id: 'cw-sup',
    onchange: async (ev) => { cw.sid = ev.target.value; await loadRollcall(); render(); },
  }, ...cw.supervisees.map((s) => h('option', { value: s.id, selected: s.id === cw.sid },
    `${s.id} · ${s.name || ''}`)));
  const windows = r ? r.windows.map((w) => h('tr', {},
    h('td', {}, label('cw.window', w.kind)),
    h('td', {}, `${formatDate(w.first_day)} – ${formatDate(w.last_day)}`),
    h('td', { class: `cw-state-${w.state}` }, label('cw.state', w.state)))) : [];
  const checkins = r ? r.checkins.map((c) => h('tr', { class: 'cw-checkin' },
    h('td', {}, formatDateTime(c.at)),
    h('td', {}, label('cw.method', c.method)),
    h('td', {}, c.at_station ? t('yes') : t('no')),
    h('td', {}, c.recorded_by || c.device_id || ''))) : [];
  return h('section', { class: 'cw-block', 'aria-labelledby': 'cw-rollcall-heading' },
    h('h3', { id: 'cw-rollcall-heading' }, t('cw.rollcall.heading')),
    h('form', { class: 'filters', onsubmit: (ev) => { ev.preventDefault(); recordCheckin(); } },
      h('label', {}, h('span', {}, t('cw.supervisee')), choose),
      h('label', {}, h('span', {}, t('cw.checkin.note')), h('input', { id: 'cw-checkin-note', maxlength: 2000 })),
      h('button', { type: 'submit', class: 'primary', id: 'cw-checkin', disabled: !cw.sid }, t('cw.checkin.record'))),
    r && r.citation ? h('p', { class: 'muted small' }, `${t('cw.law')}: ${citationText(r.citation)}`) : null,
    h('table', { class: 'data', id: 'cw-windows' },
      h('caption', {}, t('cw.windows', { month: currentMonth() })),
      h('thead', {}, h('tr', {}, ...['cw.col.kind', 'cw.col.days', 'cw.col.state'].map((k) => h('th', { scope: 'col' }, t(k))))),
      h('tbody', {}, ...windows)),
    h('table', { class: 'data', id: 'cw-checkins' },
      h('caption', {}, t('cw.checkins')),
      h('thead', {}, h('tr', {}, ...['cw.col.at', 'cw.col.method', 'cw.col.station', 'cw.col.by'].map((k) => h('th', { scope: 'col' }, t(k))))),
      h('tbody', {}, ...checkins)));
}

function assessmentRow(p, locked) {
  const value = p.classification || p.proposed;
  return h('tr', { 'data-sid': p.supervisee_id },
    h('td', {}, p.supervisee_id),
    h('td', {}, p.name || ''),
    h('td', { title: t('cw.basis', p.basis) }, label('cw.class', p.proposed)),
    h('td', {}, h('select', { id: `cw-class-${p.supervisee_id}`, disabled: locked, 'aria-label': t('cw.col.class') },
      ...CLASSES.map((c) => h('option', { value: c, selected: c === value }, label('cw.class', c))))),
    h('td', {}, h('input', { id: `cw-reason-${p.supervisee_id}`, value: p.reason || '', disabled: locked, maxlength: 2000, 'aria-label': t('cw.col.reason') })),
    h('td', { class: 'cw-confirmed' }, p.classification ? `${label('cw.class', p.classification)} · ${p.confirmed_by}` : t('cw.assess.pending')),
    h('td', {}, locked ? null : h('button', { type: 'button', class: 'cw-confirm', onclick: () => confirm(p.supervisee_id) }, t('cw.assess.confirm'))));
}

function assessmentSection() {
  const l = cw.listing;
  const locked = Boolean(l && l.signed);
  const chief = Boolean(cw.me && cw.me.chief);
  const ready = l && l.people.length && l.people.every((p) => p.classification);
  return h('section', { class: 'cw-block', 'aria-labelledby': 'cw-assess-heading' },
    h('h3', { id: 'cw-assess-heading' }, t('cw.assess.heading')),
    h('form', { class: 'filters', onsubmit: (ev) => ev.preventDefault() },
      h('label', {}, h('span', {}, t('report.month')),
        h('input', { id: 'cw-month', type: 'month', value: cw.month,
          onchange: async (ev) => { cw.month = ev.target.value; await loadListing(); render(); } })),
      h('button', { type: 'button', id: 'cw-csv', onclick: () => download('csv') }, t('report.csv')),
      h('button', { type: 'button', id: 'cw-print', onclick: () => download('html') }, t('cw.print'))),
    l ? h('p', { class: 'muted small' }, t('cw.due', { day: l.due_on ? formatDate(l.due_on) : t('unknown') }),
      l.overdue ? h('strong', { class: 'form-error' }, ` ${t('cw.overdue')}`) : null) : null,
    h('table', { class: 'data', id: 'cw-assess' },
      h('thead', {}, h('tr', {}, ...['cw.col.id', 'cw.col.name', 'cw.col.proposed', 'cw.col.class', 'cw.col.reason', 'cw.col.confirmed', ''].map((k) => h('th', { scope: 'col' }, k ? t(k) : '')))),
      h('tbody', {}, ...(l ? l.people.map((p) => assessmentRow(p, locked)) : []))),
    locked
      ? h('p', { id: 'cw-signed', class: 'cw-signed' }, t('cw.signed', { who: l.signed.signed_by, at: formatDateTime(l.signed.signed_at) }))
      : h('p', {}, chief
        ? h('button', { type: 'button', class: 'primary', id: 'cw-sign', disabled: !ready, onclick: sign }, t('cw.sign'))
        : h('span', { class: 'muted small' }, t('cw.sign.chief_only'))));
}

function deadlineSection() {
  const d = cw.deadlines;
  const items = d ? d.items : [];
  return h('section', { class: 'cw-block', 'aria-labelledby': 'cw-deadlines-heading' },
    h('h3', { id: 'cw-deadlines-heading' }, t('cw.deadlines.heading')),
    items.length ? h('ul', { id: 'cw-deadlines' }, ...items.map((i) => h('li', {},
      `${label('cw.step', i.step)} · ${i.supervisee_id || i.unit}${i.month ? ` · ${i.month}` : ''} · ${t('cw.due.short')} ${formatDate(i.due_on)}`)))
      : h('p', { class: 'muted' }, t('cw.deadlines.none')));
}

// the language switch re-renders the page in place
new MutationObserver(() => render()).observe(document.documentElement,
  { attributes: true, attributeFilter: ['lang'] });
