// Administration (issue 15): units and officers (admins), webhooks per unit (province officers
// and admins: register with the secret shown once, disable, test, delivery log), and the audit
// log of the province's units.

import * as api from './api.js';
import { t } from './i18n.js';
import { fill, formatDateTime, h, label } from './util.js';

function option(value, text, selected) {
  return h('option', { value, selected: value === selected }, text);
}

function errorLine(e) {
  return h('p', { class: 'form-error', role: 'alert' }, t('action.failed', { msg: e.message }));
}

// --- units and officers (admins) -------------------------------------------------------------

function unitsSection(units, isAdmin, reload) {
  const rows = units.filter((u) => !u.outside).map((u) => h('tr', {},
    h('td', {}, u.code), h('td', {}, u.name), h('td', {}, u.parent || '—'), h('td', {}, String(u.ack_within_s ?? ''))));
  const table = h('table', { class: 'data', id: 'admin-units' },
    h('thead', {}, h('tr', {}, ...['admin.code', 'admin.name', 'admin.parent'].map((k) => h('th', { scope: 'col' }, t(k))), h('th', { scope: 'col' }, 'ack_within_s'))),
    h('tbody', {}, ...rows));
  if (!isAdmin) return h('section', {}, h('h3', {}, t('admin.units')), table);
  const err = h('div', {});
  const form = h('form', { class: 'action-form', id: 'unit-form' },
    h('h4', {}, t('admin.unit.add')),
    h('label', { for: 'unit-code' }, t('admin.code')), h('input', { id: 'unit-code', required: true, pattern: '[A-Za-z0-9_.\\-]{1,64}' }),
    h('label', { for: 'unit-name' }, t('admin.name')), h('input', { id: 'unit-name', required: true }),
    h('label', { for: 'unit-parent' }, t('admin.parent')),
    h('select', { id: 'unit-parent' }, option('', '—', ''), ...units.filter((u) => !u.parent).map((u) => option(u.code, `${u.name} (${u.code})`, ''))),
    err, h('button', { type: 'submit', class: 'primary' }, t('admin.unit.add')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      await api.post('/units', { code: form.querySelector('#unit-code').value.trim(), name: form.querySelector('#unit-name').value.trim(), parent: form.querySelector('#unit-parent').value || null });
      await reload();
    } catch (e) { fill(err, errorLine(e)); }
  });
  return h('section', {}, h('h3', {}, t('admin.units')), table, form);
}

async function officersSection(units, reload) {
  let officers = [];
  try { officers = await api.get('/officers'); } catch (e) { return h('section', {}, h('h3', {}, t('admin.officers')), errorLine(e)); }
  const toggle = async (o) => {
    try { await api.put(`/officers/${encodeURIComponent(o.username)}`, { active: !o.active }); await reload(); } catch (e) { alert(e.message); }
  };
  const table = h('table', { class: 'data', id: 'admin-officers' },
    h('thead', {}, h('tr', {}, ...['admin.username', 'admin.display_name', 'admin.role', 'admin.unit', 'admin.active'].map((k) => h('th', { scope: 'col' }, t(k))))),
    h('tbody', {}, ...officers.map((o) => h('tr', {},
      h('td', {}, o.username), h('td', {}, o.display_name || ''), h('td', {}, t(`role.${o.role}`)), h('td', {}, o.unit || '—'),
      h('td', {}, h('button', { type: 'button', class: 'link-button', onclick: () => toggle(o) }, o.active ? t('yes') : t('no')))))));
  const err = h('div', {});
  const form = h('form', { class: 'action-form', id: 'officer-form' },
    h('h4', {}, t('admin.officer.add')),
    h('label', { for: 'officer-username' }, t('admin.username')), h('input', { id: 'officer-username', required: true, pattern: '[A-Za-z0-9_.\\-]{3,64}' }),
    h('label', { for: 'officer-name' }, t('admin.display_name')), h('input', { id: 'officer-name' }),
    h('label', { for: 'officer-password' }, t('admin.password')), h('input', { id: 'officer-password', type: 'password', required: true, minlength: '8', autocomplete: 'new-password' }),
    h('label', { for: 'officer-role' }, t('admin.role')),
    h('select', { id: 'officer-role' }, ...['commune', 'province', 'admin'].map((r) => option(r, t(`role.${r}`), 'commune'))),
    h('label', { for: 'officer-unit' }, t('admin.unit')),
    h('select', { id: 'officer-unit' }, option('', '—', ''), ...units.filter((u) => !u.outside).map((u) => option(u.code, `${u.name} (${u.code})`, ''))),
    err, h('button', { type: 'submit', class: 'primary' }, t('admin.officer.add')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const v = (id) => form.querySelector(id).value.trim();
    try {
      await api.post('/officers', { username: v('#officer-username'), display_name: v('#officer-name') || null, password: form.querySelector('#officer-password').value, role: v('#officer-role'), unit: v('#officer-unit') || null });
      await reload();
    } catch (e) { fill(err, errorLine(e)); }
  });
  return h('section', {}, h('h3', {}, t('admin.officers')), table, form);
}

// --- webhooks per unit -----------------------------------------------------------------------

async function webhookLog(el, hook) {
  try {
    const log = await api.get(`/webhooks/${hook.id}/deliveries`, { limit: 20 });
    const rows = [
      ...log.tests.map((x) => h('li', {}, `${formatDateTime(x.at)} · ${t('admin.webhook.test')} · ${x.ok ? 'OK' : 'FAIL'} ${x.status_code ?? ''} ${x.error || ''} · ${x.by}`)),
      ...log.deliveries.map((d) => h('li', {}, `${formatDateTime(d.created_at)} · #${d.alert_id} · ${d.delivered_at ? `OK ${d.last_status ?? ''}` : `${d.attempts}× ${d.last_error || ''}`}`)),
    ];
    fill(el, h('h5', {}, t('admin.webhook.log')), h('ul', { class: 'webhook-log' }, ...(rows.length ? rows : [h('li', { class: 'muted' }, t('admin.none'))])));
  } catch (e) { fill(el, errorLine(e)); }
}

async function webhooksSection(units) {
  const scoped = units.filter((u) => !u.outside);
  const select = h('select', { id: 'webhook-unit' }, ...scoped.map((u) => option(u.code, `${u.name} (${u.code})`, '')));
  const list = h('div', { id: 'webhook-list' });
  const secret = h('output', { id: 'webhook-secret', class: 'secret-once' });
  const err = h('div', {});
  const form = h('form', { class: 'action-form', id: 'webhook-form' },
    h('label', { for: 'webhook-url' }, t('admin.webhook.url')),
    h('input', { id: 'webhook-url', type: 'url', required: true, placeholder: 'https://' }),
    err, h('button', { type: 'submit', class: 'primary' }, t('admin.webhook.add')));
  async function show() {
    try {
      const hooks = await api.get(`/units/${encodeURIComponent(select.value)}/webhooks`);
      fill(list, h('ul', { class: 'webhooks' }, ...(hooks.length ? hooks.map((w) => {
        const logEl = h('div', { class: 'webhook-log-wrap' });
        const result = h('span', { class: 'muted', role: 'status' });
        return h('li', { dataset: { id: w.id } },
          h('strong', {}, w.url), ` · ${w.enabled ? t('admin.webhook.enabled') : t('admin.webhook.disabled')} `,
          h('button', { type: 'button', class: 'webhook-test', onclick: async () => {
            try {
              const r = await api.post(`/webhooks/${w.id}/test`);
              result.textContent = t('admin.webhook.tested', { result: r.ok ? `OK ${r.status_code}` : `${r.status_code ?? ''} ${r.error || ''}` });
              webhookLog(logEl, w);
            } catch (e) { result.textContent = e.message; }
          } }, t('admin.webhook.test')), ' ',
          h('button', { type: 'button', class: 'webhook-switch', onclick: async () => {
            try { await api.post(`/webhooks/${w.id}/${w.enabled ? 'disable' : 'enable'}`); show(); } catch (e) { result.textContent = e.message; }
          } }, w.enabled ? t('admin.webhook.disable') : t('admin.webhook.enable')), ' ',
          h('button', { type: 'button', class: 'link-button', onclick: () => webhookLog(logEl, w) }, t('admin.webhook.log')),
          ' ', result, logEl);
      }) : [h('li', { class: 'muted' }, t('admin.none'))])));
    } catch (e) { fill(list, errorLine(e)); }
  }
  select.addEventListener('change', () => { secret.textContent = ''; show(); });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const w = await api.post(`/units/${encodeURIComponent(select.value)}/webhooks`, { url: form.querySelector('#webhook-url').value.trim() });
      fill(secret, t('admin.webhook.secret', { secret: '' }), h('code', {}, w.secret));
      fill(err);
      form.reset();
      show();
    } catch (e) { fill(err, errorLine(e)); }
  });
  if (scoped.length) show();
  return h('section', {}, h('h3', {}, t('admin.webhooks')), h('label', { for: 'webhook-unit' }, t('admin.unit')), select, list, form, secret);
}

// --- the audit log ---------------------------------------------------------------------------

async function auditSection(units) {
  const scoped = units.filter((u) => !u.outside);
  const select = h('select', { id: 'audit-unit' }, option('', t('filter.all'), ''), ...scoped.map((u) => option(u.code, `${u.name} (${u.code})`, '')));
  const body = h('div', { id: 'audit-body' });
  async function show() {
    try {
      const data = await api.get('/audit', { unit: select.value, limit: 200 });
      fill(body, h('table', { class: 'data', id: 'audit-table' },
        h('thead', {}, h('tr', {}, ...['admin.audit.at', 'admin.audit.actor', 'admin.audit.action', 'admin.audit.subject'].map((k) => h('th', { scope: 'col' }, t(k))))),
        h('tbody', {}, ...data.entries.map((e) => h('tr', {},
          h('td', {}, formatDateTime(e.at)), h('td', {}, e.actor), h('td', {}, label('audit', e.action)), h('td', {}, e.subject || '—'))))));
    } catch (e) { fill(body, errorLine(e)); }
  }
  select.addEventListener('change', show);
  show();
  return h('section', {}, h('h3', {}, t('admin.audit')), h('label', { for: 'audit-unit' }, t('admin.unit')), select, body);
}

/** The administration view for a province officer or an admin. */
export async function renderAdmin(el, ctx) {
  const { user } = ctx;
  const isAdmin = user && user.role === 'admin';
  const again = () => renderAdmin(el, ctx);
  fill(el, h('h2', { id: 'admin-heading' }, t('admin.heading')), h('p', { class: 'muted' }, t('queue.loading')));
  const units = await ctx.loadUnits();
  const parts = [unitsSection(units, isAdmin, again)];
  if (isAdmin) parts.push(await officersSection(units, again));
  parts.push(await webhooksSection(units));
  parts.push(await auditSection(units));
  fill(el, h('h2', { id: 'admin-heading' }, t('admin.heading')), ...parts);
}
