// Casework on a supervisee and an alert (issue 15): people named, locate now and the device's
// answers, permits (list and grant, with the policy's reason when refused), zones drawn and
// edited on the map with a schedule, the track's decisions, the device history, and the
// evidence pack. app.js calls these; they talk to the API and draw into the given elements.

import * as api from './api.js';
import { has, t } from './i18n.js';
import { fill, formatDateTime, h, label } from './util.js';

const L = window.L;
const DAY_MS = 86_400_000;

// --- people, not ids ------------------------------------------------------------------------

const names = new Map(); // supervisee id -> name (from the supervisee list and the alerts)

export function rememberNames(list) {
  for (const s of list || []) {
    if (s && s.id && s.name) names.set(s.id, s.name);
    if (s && s.supervisee_id && s.supervisee_name) names.set(s.supervisee_id, s.supervisee_name);
  }
}

export async function loadNames() {
  try {
    rememberNames(await api.get('/supervisees', {}));
  } catch {
    /* the queue shows ids then */
  }
}

export function nameOf(id) {
  return names.get(id) || null;
}

/** "Nguyễn Văn A (SV-1)", or the id alone when the name is not known. */
export function personLabel(id) {
  const n = names.get(id);
  return n ? `${n} (${id})` : id || t('unknown');
}

/** The alert's message with the person named where the message names the id. */
export function withName(message, a) {
  const n = a && (a.supervisee_name || names.get(a.supervisee_id));
  if (!n || !message || !a.supervisee_id) return message;
  return message.split(a.supervisee_id).join(`${n} (${a.supervisee_id})`);
}

/** True when the alert's person matches the search text (name or id, any case). */
export function matchesSearch(a, q) {
  if (!q) return true;
  const needle = q.trim().toLocaleLowerCase('vi');
  if (!needle) return true;
  const n = (a.supervisee_name || names.get(a.supervisee_id) || '').toLocaleLowerCase('vi');
  return n.includes(needle) || String(a.supervisee_id || '').toLocaleLowerCase('vi').includes(needle);
}

/** A zone named for a person to read: its purpose (or kind) and its id. */
export function zoneLabel(zoneId, purpose) {
  if (!zoneId) return null;
  return purpose ? `${label('purpose', purpose)} (${zoneId})` : zoneId;
}

// --- commands: locate now and the device's answers -----------------------------------------

function commandRow(c) {
  const answer = c.ok === true ? t('cmd.ok') : c.ok === false ? t('cmd.refused') : t('cmd.waiting');
  const what = c.type === 'set_interval' ? t('cmd.set_interval', { s: c.payload && c.payload.fix_s }) : t(`cmd.${c.type}`);
  return h('li', { class: `cmd cmd-${c.ok === true ? 'ok' : c.ok === false ? 'refused' : 'waiting'}`, dataset: { id: c.id } },
    h('strong', {}, what), ' · ', formatDateTime(c.sent_at), ' · ', c.sent_by === 'system' ? t('actor.system') : c.sent_by,
    h('div', { class: 'cmd-answer' }, `${t('cmd.answer')}: ${answer}`, c.answered_at ? ` (${formatDateTime(c.answered_at)})` : ''),
    c.fix ? h('div', { class: 'cmd-fix' }, t('cmd.fix', { when: formatDateTime(c.fix.ts), lat: c.fix.lat.toFixed(5), lon: c.fix.lon.toFixed(5), acc: Math.round(c.fix.acc) })) : null);
}

/**
 * The "locate now" button and the device's recent commands with their answers, in `el`.
 * `since` (ms) limits the list (an alert shows the commands since it opened); polls (faster
 * while a command waits for its answer) until closed. Returns a function that stops it.
 */
export function commandsPanel(el, deviceId, { since = 0, alertId = null, onFix = null } = {}) {
  let stopped = false;
  let timer = null;
  const list = h('ul', { class: 'cmd-list', id: 'cmd-list' });
  const status = h('p', { class: 'muted small', role: 'status' });
  const button = h('button', { type: 'button', class: 'primary', id: 'locate-now' }, t('cmd.locate.button'));
  async function refresh() {
    if (stopped || !el.isConnected) return; // the panel was closed or redrawn
    try {
      const all = await api.get(`/devices/${encodeURIComponent(deviceId)}/commands`, { limit: 20 });
      const cmds = all.filter((c) => (c.sent_at || 0) >= since);
      fill(list, ...(cmds.length ? cmds.map(commandRow) : [h('li', { class: 'muted' }, t('cmd.none'))]));
      const fixed = cmds.find((c) => c.fix);
      if (fixed && onFix) onFix(fixed.fix);
      clearTimeout(timer);
      // quick while an answer is awaited; slower otherwise (the service sends commands too:
      // a faster fix rate while a zone alert is open)
      const waiting = cmds.some((c) => c.ok === null || (c.type === 'locate' && c.ok && !c.fix));
      timer = setTimeout(refresh, waiting ? 1500 : 5000);
    } catch (e) {
      fill(list, h('li', { class: 'form-error' }, e.message));
    }
  }
  button.addEventListener('click', async () => {
    button.disabled = true;
    status.textContent = t('cmd.sending');
    try {
      await api.post(`/devices/${encodeURIComponent(deviceId)}/commands`, { type: 'locate', alert_id: alertId || undefined });
      status.textContent = t('cmd.sent');
      await refresh();
    } catch (e) {
      status.textContent = t('action.failed', { msg: e.message });
      status.className = 'form-error';
    } finally {
      button.disabled = false;
    }
  });
  fill(el, h('h3', {}, t('cmd.heading')), button, status, list);
  refresh();
  return () => { stopped = true; clearTimeout(timer); };
}

// --- the supervisee's case panel ------------------------------------------------------------

const WEEKDAYS = [1, 2, 3, 4, 5, 6, 7];

/** Local "YYYY-MM-DDTHH:MM" (Asia/Ho_Chi_Minh, fixed +07:00: no daylight saving) -> ISO. */
function localToIso(value) {
  return value ? `${value}:00+07:00` : null;
}

function isoLocal(ms) {
  return new Date(ms + 7 * 3_600_000).toISOString().slice(0, 16);
}

/** The grant form; the permits themselves are listed (with revoke and shorten) in the
 *  supervisee panel, which `reload` refreshes after a grant. */
function permitsSection(sid, reload) {
  const err = h('p', { class: 'form-error', id: 'permit-error', role: 'alert', hidden: true });
  const now = Date.now();
  const form = h('form', { class: 'action-form', id: 'permit-form' },
    h('h4', {}, t('permit.grant')),
    h('label', { for: 'permit-from' }, t('permit.from')),
    h('input', { id: 'permit-from', type: 'datetime-local', required: true, value: isoLocal(now + DAY_MS) }),
    h('label', { for: 'permit-to' }, t('permit.to')),
    h('input', { id: 'permit-to', type: 'datetime-local', required: true, value: isoLocal(now + 2 * DAY_MS) }),
    h('label', { for: 'permit-category' }, t('permit.category')),
    h('select', { id: 'permit-category' }, ...['medical', 'visit', 'work', 'family', 'other'].map((c) => h('option', { value: c }, label('category', c)))),
    h('label', { for: 'permit-reason' }, t('permit.grant.reason')),
    h('input', { id: 'permit-reason', required: true, maxlength: '1000' }),
    h('p', { class: 'muted small' }, t('permit.anywhere.note')),
    err,
    h('button', { type: 'submit', class: 'primary', id: 'permit-submit' }, t('permit.submit')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.hidden = true;
    const body = {
      valid_from: localToIso(form.querySelector('#permit-from').value),
      valid_to: localToIso(form.querySelector('#permit-to').value),
      category: form.querySelector('#permit-category').value,
      reason: form.querySelector('#permit-reason').value.trim(),
      destination: 'anywhere',
    };
    try {
      await api.post(`/supervisees/${encodeURIComponent(sid)}/permits`, body);
      await reload();
    } catch (e) {
      // the policy's reason in the officer's language when the rule is known, the API's own
      // words (with the figures) beside it
      const why = e.rule && has(`rule.${e.rule}`) ? `${t(`rule.${e.rule}`)} (${e.message})` : e.message;
      err.textContent = e.status === 422 ? t('permit.refused', { msg: why }) : t('action.failed', { msg: e.message });
      err.hidden = false;
    }
  });
  return h('section', { id: 'permits' },
    h('h3', {}, t('permit.heading')),
    form);
}

/** Drawing a zone on the Leaflet map: clicks add polygon vertices, or place a circle's centre. */
class ZoneDrawing {
  constructor(map) {
    this.map = map;
    this.points = [];
    this.center = null;
    this.layer = L.featureGroup().addTo(map);
    this.shape = 'polygon';
    this.radius = 200;
    this.onClick = (ev) => this.add(ev.latlng);
    map.on('click', this.onClick);
    map.getContainer().classList.add('drawing');
  }

  add(latlng) {
    if (this.shape === 'circle') this.center = latlng;
    else this.points.push(latlng);
    this.draw();
  }

  draw() {
    this.layer.clearLayers();
    const style = { color: '#9333ea', weight: 3, dashArray: '6 4', fillOpacity: 0.08 };
    if (this.shape === 'circle' && this.center) {
      this.layer.addLayer(L.circle(this.center, { radius: this.radius, ...style }));
    } else if (this.points.length) {
      this.points.forEach((p) => this.layer.addLayer(L.circleMarker(p, { radius: 4, color: style.color })));
      if (this.points.length >= 2) this.layer.addLayer(L.polygon(this.points, style));
    }
  }

  /** The drawn shape as the zone API's Feature, or null when not enough was drawn. */
  feature(props) {
    if (this.shape === 'circle') {
      if (!this.center) return null;
      return { type: 'Feature', geometry: { type: 'Point', coordinates: [this.center.lng, this.center.lat] }, properties: { ...props, radius_m: this.radius } };
    }
    if (this.points.length < 3) return null;
    const ring = this.points.map((p) => [p.lng, p.lat]);
    ring.push(ring[0]);
    return { type: 'Feature', geometry: { type: 'Polygon', coordinates: [ring] }, properties: props };
  }

  close() {
    this.map.off('click', this.onClick);
    this.map.getContainer().classList.remove('drawing');
    this.layer.remove();
  }
}

function scheduleOf(form) {
  const days = WEEKDAYS.filter((d) => form.querySelector(`#zone-day-${d}`).checked);
  const start = form.querySelector('#zone-start').value;
  const end = form.querySelector('#zone-end').value;
  if (!days.length || !start || !end) return null;
  return [{ days, start, end }];
}

function zoneForm(sid, map, existing, done) {
  const p = (existing && existing.properties) || {};
  const drawing = new ZoneDrawing(map);
  const err = h('p', { class: 'form-error', id: 'zone-error', role: 'alert', hidden: true });
  const win = Array.isArray(p.schedule) && p.schedule[0] ? p.schedule[0] : null;
  const shapeRadio = (value) => h('label', { class: 'radio' },
    h('input', { type: 'radio', name: 'zone-shape', value, id: `zone-shape-${value}`, checked: (p.radius_m ? 'circle' : 'polygon') === value }), ` ${t(`zone.shape.${value}`)}`);
  const form = h('form', { class: 'action-form zone-form', id: 'zone-form' },
    h('h4', {}, existing ? t('zone.edit.heading', { id: p.id || existing.id }) : t('zone.new.heading')),
    h('label', { for: 'zone-id' }, t('zone.id')),
    h('input', { id: 'zone-id', required: true, maxlength: '64', pattern: '[^/]+', value: p.id || existing?.id || '', readonly: !!existing }),
    h('label', { for: 'zone-kind' }, t('zone.kind')),
    h('select', { id: 'zone-kind' }, ...['inclusion', 'exclusion'].map((k) => h('option', { value: k, selected: p.kind === k }, label('zone', k)))),
    h('label', { for: 'zone-purpose' }, t('zone.purpose')),
    h('select', { id: 'zone-purpose' }, ...['residence', 'ban', 'curfew', 'protection', 'other'].map((k) => h('option', { value: k, selected: (p.purpose || 'other') === k }, label('purpose', k)))),
    h('fieldset', {}, h('legend', {}, t('zone.shape')), shapeRadio('polygon'), shapeRadio('circle')),
    h('label', { for: 'zone-radius' }, t('zone.radius')),
    h('input', { id: 'zone-radius', type: 'number', min: '10', max: '100000', step: '10', value: String(Math.round(p.radius_m || 200)) }),
    h('p', { class: 'muted small', id: 'zone-hint' }, existing ? t('zone.hint.edit') : t('zone.hint')),
    h('fieldset', { class: 'zone-schedule' }, h('legend', {}, t('zone.schedule.heading')),
      ...WEEKDAYS.map((d) => h('label', { class: 'radio' }, h('input', { type: 'checkbox', id: `zone-day-${d}`, checked: !!(win && win.days.includes(d)) }), ` ${t(`weekday.${d}`)}`)),
      h('label', { for: 'zone-start' }, t('zone.start')), h('input', { id: 'zone-start', type: 'time', value: win ? win.start : '' }),
      h('label', { for: 'zone-end' }, t('zone.end')), h('input', { id: 'zone-end', type: 'time', value: win ? win.end : '' })),
    err,
    h('button', { type: 'button', id: 'zone-undo' }, t('zone.undo')),
    h('button', { type: 'submit', class: 'primary', id: 'zone-save' }, t('zone.save')),
    h('button', { type: 'button', id: 'zone-cancel' }, t('zone.cancel')));
  const sync = () => {
    drawing.shape = form.querySelector('#zone-shape-circle').checked ? 'circle' : 'polygon';
    drawing.radius = Number(form.querySelector('#zone-radius').value) || 200;
    drawing.draw();
  };
  form.addEventListener('change', sync);
  form.querySelector('#zone-radius').addEventListener('input', sync);
  sync();
  form.querySelector('#zone-undo').addEventListener('click', () => { drawing.points.pop(); drawing.center = null; drawing.draw(); });
  form.querySelector('#zone-cancel').addEventListener('click', () => { drawing.close(); done(false); });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.hidden = true;
    const id = form.querySelector('#zone-id').value.trim();
    const props = { kind: form.querySelector('#zone-kind').value, purpose: form.querySelector('#zone-purpose').value, schedule: scheduleOf(form) };
    let feature = drawing.feature(props);
    if (!feature && existing) { // properties changed, shape kept
      feature = { type: 'Feature', geometry: existing.geometry, properties: { ...props, ...(drawing.shape === 'circle' ? { radius_m: drawing.radius } : {}) } };
    }
    if (!id || !feature) {
      err.textContent = t('zone.incomplete');
      err.hidden = false;
      return;
    }
    try {
      await api.put(`/supervisees/${encodeURIComponent(sid)}/zones/${encodeURIComponent(id)}`, feature);
      drawing.close();
      done(true);
    } catch (e) {
      err.textContent = t('action.failed', { msg: e.message });
      err.hidden = false;
    }
  });
  return form;
}

function decisionsTable(track) {
  const feats = ((track && track.features) || []).slice(-30).reverse();
  if (!feats.length) return h('p', { class: 'muted' }, t('sup.track.none'));
  return h('table', { class: 'data decisions', id: 'decisions' },
    h('caption', {}, t('track.decisions', { n: feats.length })),
    h('thead', {}, h('tr', {}, ...['track.time', 'track.acc', 'track.decision', 'track.zones'].map((k) => h('th', { scope: 'col' }, t(k))))),
    h('tbody', {}, ...feats.map((f) => {
      const p = f.properties || {};
      const zones = (p.zones || []).filter((z) => z.in_force && z.class !== 'no_zone')
        .map((z) => `${z.zone_id}: ${label('decision', z.class)}${z.distance_m != null ? ` (${Math.round(z.distance_m)} m)` : ''}`).join('; ');
      return h('tr', { class: `dec-${p.decision}` }, h('td', {}, formatDateTime(p.ts)), h('td', {}, `± ${Math.round(p.acc ?? 0)} m`),
        h('td', {}, label('decision', p.decision ?? 'none')), h('td', {}, zones));
    })));
}

async function deviceHistory(el, deviceId) {
  if (!deviceId) return;
  try {
    const rows = await api.get(`/devices/${encodeURIComponent(deviceId)}/assignments`);
    fill(el, h('h4', {}, t('device.history')), h('ul', {}, ...asArray(rows).map((r) => h('li', {},
      `${r.device_id || deviceId} · ${formatDateTime(r.assigned_at)} – ${r.unassigned_at ? formatDateTime(r.unassigned_at) : t('device.now')}`))));
  } catch {
    /* shown without history */
  }
}

function asArray(x) {
  if (Array.isArray(x)) return x;
  for (const k of ['assignments', 'items']) if (x && Array.isArray(x[k])) return x[k];
  return [];
}

/**
 * The case panel of a supervisee under the map panel: locate now, permits, zones (draw and
 * edit), the track's decisions, the device history, the evidence pack. `ctx`: {sid, detail,
 * zones, track, map (MapView), reloadZones(), reloadPermits(), toast(msg, kind)}.
 */
export async function renderCasePanel(el, ctx) {
  const { sid, detail } = ctx;
  const stop = el.stopCommands;
  if (stop) stop();
  const cmdEl = h('section', { id: 'sup-commands' });
  const permitsEl = h('div', { id: 'permits-wrap' });
  const zonesEl = h('section', { id: 'zone-tools' });
  const devEl = h('section', { id: 'device-history' });
  const alertsEl = h('section', { id: 'sup-all-alerts' });
  fill(el, detail && detail.device_id ? cmdEl : null, permitsEl, zonesEl, alertsEl,
    h('section', {}, h('h3', {}, t('track.heading')), decisionsTable(ctx.track)), devEl,
    h('section', { id: 'evidence' }, h('h3', {}, t('evidence.heading')),
      h('button', { type: 'button', class: 'primary', id: 'evidence-download', onclick: () => downloadEvidence(sid, ctx.toast) }, t('evidence.button'))));
  if (detail && detail.device_id) {
    el.stopCommands = commandsPanel(cmdEl, detail.device_id, {
      since: Date.now() - DAY_MS,
      onFix: (fix) => ctx.map && ctx.map.focusOn(fix.lat, fix.lon, t('cmd.fix.marker')),
    });
  }
  fill(permitsEl, permitsSection(sid, async () => { if (ctx.reloadPermits) await ctx.reloadPermits(); }));
  const zoneTools = () => {
    const feats = (ctx.zones && ctx.zones.features) || [];
    const start = (existing) => {
      if (!ctx.map) return;
      fill(zonesEl, h('h3', {}, t('zone.tools')), zoneForm(sid, ctx.map.map, existing, async (saved) => {
        if (saved) {
          ctx.toast(t('zone.saved'));
          ctx.zones = await ctx.reloadZones();
        }
        zoneTools();
      }));
    };
    fill(zonesEl, h('h3', {}, t('zone.tools')),
      h('ul', { class: 'zone-edit-list' }, ...feats.map((f) => h('li', {},
        zoneLabel((f.properties || {}).id || f.id, (f.properties || {}).purpose), ' ',
        h('button', { type: 'button', class: 'link-button', dataset: { zone: (f.properties || {}).id || f.id }, onclick: () => start(f) }, t('zone.edit'))))),
      h('button', { type: 'button', id: 'zone-new', onclick: () => start(null) }, t('zone.new')));
  };
  zoneTools();
  deviceHistory(devEl, detail && detail.device_id);
  allAlerts(alertsEl, sid);
}

/** Every alert of the person, resolved ones included, newest first, each a link. */
async function allAlerts(el, sid) {
  try {
    const data = await api.get('/alerts', { supervisee_id: sid, limit: 50 });
    const list = (data && data.alerts) || [];
    const items = list.map((a) => h('li', {},
      h('a', { href: `#/alerts/${a.id}` }, `#${a.id} ${label('type', a.type)} · ${label('status', a.status)} · ${formatDateTime(a.opened_at)}`),
      a.outcome ? ` · ${label('outcome', a.outcome)}` : ''));
    fill(el, h('h3', {}, t('case.alerts')),
      h('ul', { class: 'sup-alerts' }, ...(items.length ? items : [h('li', { class: 'muted' }, t('queue.empty'))])));
  } catch (e) {
    fill(el, h('p', { class: 'form-error' }, e.message));
  }
}

// --- the evidence pack ----------------------------------------------------------------------

export async function downloadEvidence(sid, toast, days = 30) {
  const now = Date.now();
  try {
    const res = await api.fetchRaw(`/supervisees/${encodeURIComponent(sid)}/evidence`, { from: now - days * DAY_MS, to: now });
    const blob = await res.blob();
    const a = h('a', { href: URL.createObjectURL(blob), download: `ho-so-chung-cu-${sid}.zip` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
    if (toast) toast(t('evidence.done'));
  } catch (e) {
    if (toast) toast(t('action.failed', { msg: e.message }), 'error');
  }
}

// --- the month picker: month names in the interface's language -----------------------------

/** Fill a <select> with the last 36 months ("tháng 12 năm 2026" / "December 2026"), keeping
 *  its choice (default `current`, "YYYY-MM"). The browser's own month input follows the
 *  browser's language, not the page's. */
export function fillMonthPicker(select, current) {
  const keep = select.value || current;
  const [y0, m0] = current.split('-').map(Number);
  const fmt = new Intl.DateTimeFormat(document.documentElement.lang === 'en' ? 'en-GB' : 'vi-VN', { month: 'long', year: 'numeric', timeZone: 'UTC' });
  const options = [];
  for (let k = 0; k < 36; k += 1) {
    const d = new Date(Date.UTC(y0, m0 - 1 - k, 1));
    const value = `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, '0')}`;
    options.push(h('option', { value, selected: value === keep }, fmt.format(d)));
  }
  fill(select, ...options);
}
