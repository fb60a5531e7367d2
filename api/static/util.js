// Small helpers: DOM building, local-time formatting, the critical-alert chime.

import { getLang, t } from './i18n.js';

export const TZ = 'Asia/Ho_Chi_Minh';

/** h('div', {class: 'x', onclick: fn}, child, 'text', ...) -> element. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replace el's children, skipping null/false/undefined (replaceChildren would print "null"). */
export function fill(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

function locale() {
  return getLang() === 'en' ? 'en-GB' : 'vi-VN';
}

const formatters = {};
function fmt(kind) {
  const key = `${locale()}:${kind}`;
  if (!formatters[key]) {
    const opts = {
      datetime: { day: '2-digit', month: '2-digit', year: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false },
      date: { day: '2-digit', month: '2-digit', year: 'numeric' },
      time: { timeStyle: 'short' },
    }[kind];
    formatters[key] = new Intl.DateTimeFormat(locale(), { ...opts, timeZone: TZ });
  }
  return formatters[key];
}

/** Epoch ms (or an ISO string) as local date and time in Asia/Ho_Chi_Minh. */
export function formatDateTime(ms) {
  if (ms === null || ms === undefined || ms === '') return t('unknown');
  const d = new Date(typeof ms === 'number' ? ms : Date.parse(ms));
  return Number.isNaN(d.getTime()) ? String(ms) : fmt('datetime').format(d);
}

export function formatDate(value) {
  if (!value) return t('unknown');
  // ISO dates (YYYY-MM-DD) are calendar dates: show them as such.
  if (typeof value === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(value)) {
    const [y, m, d] = value.split('-');
    return `${d}/${m}/${y}`;
  }
  return fmt('date').format(new Date(value));
}

/** "5 phút trước" / "5 minutes ago". */
export function relativeTime(ms, now = Date.now()) {
  const diff = (ms - now) / 1000;
  const abs = Math.abs(diff);
  if (abs < 30) return t('time.now');
  const rtf = new Intl.RelativeTimeFormat(locale(), { numeric: 'auto' });
  if (abs < 3600) return rtf.format(Math.round(diff / 60), 'minute');
  if (abs < 86400) return rtf.format(Math.round(diff / 3600), 'hour');
  return rtf.format(Math.round(diff / 86400), 'day');
}

/** Seconds as "42 giây" / "7 phút" / "1,5 giờ". */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(Number(seconds))) return t('unknown');
  const s = Number(seconds);
  const nf = new Intl.NumberFormat(locale(), { maximumFractionDigits: 1 });
  if (s < 120) return t('duration.s', { n: nf.format(s) });
  if (s < 7200) return t('duration.m', { n: nf.format(s / 60) });
  return t('duration.h', { n: nf.format(s / 3600) });
}

export function formatNumber(n, digits = 2) {
  if (n === null || n === undefined) return t('unknown');
  return new Intl.NumberFormat(locale(), { maximumFractionDigits: digits }).format(n);
}

/** A label from the i18n table, falling back to the raw value for unknown codes. */
export function label(prefix, value) {
  if (value === null || value === undefined) return t('unknown');
  const s = t(`${prefix}.${value}`);
  return s === `${prefix}.${value}` ? String(value) : s;
}

/** "YYYY-MM" of the current month in local time. */
export function currentMonth() {
  const parts = new Intl.DateTimeFormat('en-CA', { timeZone: TZ, year: 'numeric', month: '2-digit' })
    .formatToParts(new Date());
  const y = parts.find((p) => p.type === 'year').value;
  const m = parts.find((p) => p.type === 'month').value;
  return `${y}-${m}`;
}

// --- the chime: two short tones from the Web Audio API, no audio file ----------------------

let audio = null;

/** Create or resume the audio context; call from a user gesture (browsers require it). */
export function unlockAudio() {
  try {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    if (!audio) audio = new Ctx();
    if (audio.state === 'suspended') audio.resume();
  } catch {
    audio = null;
  }
}

export function beep() {
  // Counted on the page, so a test (or a curious officer) can see that it chimed.
  document.body.dataset.beeps = String(Number(document.body.dataset.beeps || 0) + 1);
  if (!audio) unlockAudio();
  if (!audio) return false;
  const start = audio.currentTime + 0.02;
  for (const [offset, freq] of [[0, 880], [0.22, 660], [0.44, 880]]) {
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.type = 'square';
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0.0001, start + offset);
    gain.gain.exponentialRampToValueAtTime(0.25, start + offset + 0.01);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + offset + 0.18);
    osc.connect(gain).connect(audio.destination);
    osc.start(start + offset);
    osc.stop(start + offset + 0.2);
  }
  return true;
}
