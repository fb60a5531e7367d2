// Admins' view of failed sign-ins (GET /api/v1/auth/failures): who is refused right now, and
// the recent failures, newest first.

import { t } from './i18n.js';
import { fill, formatDateTime, h } from './util.js';

function refusedLine(key, items) {
  return h('p', {}, `${t(key)}: `, items.length ? items.join(', ') : t('signins.nobody'));
}

export function renderSignins(el, data) {
  const rows = data.failures.map((f) => h('tr', {},
    h('td', {}, formatDateTime(f.at)),
    h('td', {}, f.username, f.known_username ? '' : ` (${t('signins.unknown_user')})`),
    h('td', {}, f.address || ''),
    h('td', {}, t(`signins.reason.${f.reason}`))));
  fill(el,
    h('p', { class: 'muted' }, t('signins.limits', {
      n: data.max_failures, a: data.max_failures_per_address, m: Math.round(data.window_s / 60) })),
    refusedLine('signins.throttled_users', data.throttled_usernames),
    refusedLine('signins.throttled_addresses', data.throttled_addresses),
    rows.length === 0 ? h('p', {}, t('signins.none')) : h('table', { class: 'data' },
      h('caption', {}, t('signins.recent')),
      h('thead', {}, h('tr', {}, ...['signins.at', 'signins.username', 'signins.address',
        'signins.reason'].map((k) => h('th', { scope: 'col' }, t(k))))),
      h('tbody', {}, ...rows)));
}
