// Talking to the giamsat API (/api/v1): bearer token, JSON, and the live alert stream.

const BASE = '/api/v1';
const TOKEN_KEY = 'giamsat.session';

export class ApiError extends Error {
  constructor(status, message, rule = null) {
    super(message);
    this.status = status;
    this.rule = rule; // the policy rule a refusal names (permits), when the API gives one
  }
}

let session = null; // {token, user, issued_at, expires_at, session_ends_at} (times: epoch ms)
let onExpired = () => {};

try {
  const saved = JSON.parse(sessionStorage.getItem(TOKEN_KEY) || 'null');
  if (saved && saved.expires_at > Date.now()) session = saved;
} catch {
  session = null;
}

export function getSession() {
  return session;
}

/** Called once when the API answers 401: the token expired or was revoked. */
export function setExpiredHandler(fn) {
  onExpired = fn;
}

export function clearSession() {
  session = null;
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    /* ignore */
  }
}

export async function login(username, password) {
  const body = new URLSearchParams({ username, password, grant_type: 'password' });
  const res = await fetch(`${BASE}/auth/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body,
  });
  if (!res.ok) {
    const err = new ApiError(res.status, await errorText(res));
    err.retryAfter = Number(res.headers.get('Retry-After')) || null; // 429: too many failures
    throw err;
  }
  const data = await res.json();
  keep(data, null);
  if (!session.user) session.user = await get('/me');
  save();
  return session;
}

/**
 * Exchange the current token for a fresh one (the sign-in itself lasts at most
 * session_ends_at). Returns the new session; throws ApiError when the API refuses.
 */
export async function refresh() {
  const before = session;
  if (!before) throw new ApiError(401, 'not signed in');
  const res = await fetch(`${BASE}/auth/refresh`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${before.token}`, Accept: 'application/json' },
  });
  if (!res.ok) throw new ApiError(res.status, await errorText(res));
  const data = await res.json();
  // Signed out (or in as someone else) meanwhile: this answer belongs to a session that ended.
  if (session !== before) throw new ApiError(409, 'the session changed during the refresh');
  keep(data, before.user);
  save();
  return session;
}

function keep(data, user) {
  const now = Date.now();
  const expiresIn = (data.expires_in || 900) * 1000;
  session = {
    token: data.access_token,
    user: data.user || user,
    issued_at: now,
    expires_at: now + expiresIn,
    session_ends_at: now + (data.session_expires_in ?? data.expires_in ?? 900) * 1000,
  };
}

function save() {
  try {
    sessionStorage.setItem(TOKEN_KEY, JSON.stringify(session));
  } catch {
    /* ignore */
  }
}

async function errorText(res) {
  try {
    const data = await res.json();
    if (typeof data.message === 'string') return data.message;
    if (typeof data.detail === 'string') return data.detail;
    if (Array.isArray(data.detail)) return data.detail.map((d) => d.msg || JSON.stringify(d)).join('; ');
    return JSON.stringify(data);
  } catch {
    return `HTTP ${res.status}`;
  }
}

async function request(method, path, { params, json, raw } = {}) {
  const url = new URL(BASE + path, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, v);
  }
  const headers = { Accept: raw ? '*/*' : 'application/json' };
  if (session) headers.Authorization = `Bearer ${session.token}`;
  let body;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  }
  const res = await fetch(url, { method, headers, body });
  if (res.status === 401 && session) {
    clearSession();
    onExpired();
  }
  if (!res.ok) {
    const rule = res.headers.get('content-type')?.includes('json') ? await res.clone().json().then((d) => d.rule || null, () => null) : null;
    throw new ApiError(res.status, await errorText(res), rule);
  }
  if (raw) return res;
  if (res.status === 204) return null;
  return res.json();
}

export const get = (path, params) => request('GET', path, { params });
export const post = (path, json) => request('POST', path, { json: json ?? {} });
export const put = (path, json) => request('PUT', path, { json: json ?? {} });
export const del = (path) => request('DELETE', path);
/** The raw response (for CSV and printable HTML), still authorised. */
export const fetchRaw = (path, params) => request('GET', path, { params, raw: true });

/**
 * The live alert stream (server-sent events) with reconnection and exponential backoff.
 * onAlert(alert) for each event; onState('connecting' | 'live' | 'retry', secondsUntilRetry);
 * onReconnect() after a reconnection, so the caller can refetch what it may have missed.
 */
export function openAlertStream({ onAlert, onState, onReconnect }) {
  let es = null;
  let timer = null;
  let delay = 1;
  let stopped = false;
  let everOpened = false;
  let countdown = null;

  const handle = (ev) => {
    if (!ev.data) return;
    try {
      const alert = JSON.parse(ev.data);
      if (alert && alert.id !== undefined) onAlert(alert);
    } catch {
      /* a keep-alive or a non-JSON line */
    }
  };

  function connect() {
    if (stopped || !session) return;
    onState('connecting');
    const url = `${BASE}/alerts/stream?access_token=${encodeURIComponent(session.token)}`;
    es = new EventSource(url);
    es.onopen = () => {
      delay = 1;
      onState('live');
      if (everOpened) onReconnect();
      everOpened = true;
    };
    es.onmessage = handle;
    es.addEventListener('alert', handle);
    es.onerror = () => {
      es.close();
      es = null;
      if (stopped) return;
      // An expired token also ends the stream: ask the API, whose 401 ends the session.
      get('/me').catch(() => {});
      scheduleRetry();
    };
  }

  function scheduleRetry() {
    let left = delay;
    onState('retry', left);
    clearInterval(countdown);
    countdown = setInterval(() => {
      left -= 1;
      if (left > 0) onState('retry', left);
    }, 1000);
    timer = setTimeout(() => {
      clearInterval(countdown);
      connect();
    }, delay * 1000);
    delay = Math.min(delay * 2, 30);
  }

  connect();
  return {
    /** Reconnect now (with the current token), e.g. after a token refresh. */
    renew() {
      if (stopped) return;
      clearTimeout(timer);
      clearInterval(countdown);
      if (es) es.close();
      es = null;
      connect();
    },
    close() {
      stopped = true;
      clearTimeout(timer);
      clearInterval(countdown);
      if (es) es.close();
    },
  };
}
