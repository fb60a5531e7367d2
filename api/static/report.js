// The monthly report as tables: the headline measures, then alerts by type and outcomes.
// Known fields get translated labels; any other field the API adds is shown as it comes.

import { t } from './i18n.js';
import { fill, formatDuration, formatNumber, h, label } from './util.js';

// field name -> [label key, kind]
const KNOWN = {
  supervisees_monitored: ['report.supervisees', 'count'],
  alerts_total: ['report.alerts_total', 'count'],
  confirmed_violations: ['report.violations', 'count'],
  supervisees_with_violations: ['report.supervisees_violating', 'count'],
  violation_rate: ['report.violation_rate', 'rate'],
  violation_rate_target: ['report.target', 'rate'],
  meets_target: ['report.meets_target', 'target'],
};
const TABLES = {
  alerts_by_type: ['report.alerts_by_type', 'report.type', 'type'],
  alerts_by_severity: ['report.alerts_by_severity', 'report.severity', 'severity'],
  alerts_by_outcome: ['report.outcomes', 'report.outcome', 'outcome'],
};
const SKIP = new Set(['unit', 'units', 'month', 'timezone', 'from', 'to', 'violation_rate_definition']);

function value(v, kind) {
  if (v === null || v === undefined) return t('unknown');
  if (kind === 'rate') return `${formatNumber(Number(v) * 100, 2)} %`;
  if (kind === 'seconds') return formatDuration(v);
  if (typeof v === 'number') return formatNumber(v);
  if (kind === 'target') return v ? t('report.met') : t('report.notmet');
  if (typeof v === 'boolean') return v ? t('yes') : t('no');
  return String(v);
}

function tableOf(caption, headers, rows) {
  return h('table', { class: 'data' },
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, ...headers.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, ...rows.map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, v)))));
}

export function renderReport(container, report, unitLabel) {
  const headline = [];
  const tables = [];
  for (const [key, v] of Object.entries(report || {})) {
    if (SKIP.has(key)) continue;
    if (TABLES[key]) {
      const [caption, col, prefix] = TABLES[key];
      const rows = Object.entries(v || {}).map(([k, n]) => [label(prefix, k), formatNumber(n)]);
      tables.push(tableOf(t(caption), [t(col), t('report.count')], rows));
    } else if (key === 'ack_time_s' && v && typeof v === 'object') {
      headline.push([t('report.ack_p50'), value(v.p50, 'seconds')]);
      headline.push([t('report.ack_p90'), value(v.p90, 'seconds')]);
      if (v.acknowledged !== undefined) headline.push([t('report.acknowledged'), value(v.acknowledged)]);
    } else if (KNOWN[key]) {
      headline.push([t(KNOWN[key][0]), value(v, KNOWN[key][1])]);
    } else if (v === null || typeof v !== 'object') {
      headline.push([key, value(v)]); // a figure this page does not know yet
    }
  }
  const unit = unitLabel || report.unit || '';
  fill(container,
    h('h3', {}, `${unit} · ${report.month || ''}`),
    tableOf(t('report.heading'), [t('report.metric'), t('report.value')], headline),
    report.violation_rate_definition ? h('p', { class: 'muted small' }, `${t('report.rate_def')}: ${t('report.rate_def.text')}`) : null,
    ...tables);
}
