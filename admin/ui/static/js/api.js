// api.js: the admin JSON API, called with the signed-in token as a bearer
// header. The token lives in sessionStorage only (never in a URL or in
// localStorage): closing the tab signs out.

const TOKEN = 'webhookd.token';
const ROLE = 'webhookd.role';

// BASE is the API's prefix; paths given to api() are relative to it.
export const BASE = '/api/admin/webhooks';

export function token() { return sessionStorage.getItem(TOKEN); }
export function role() { return sessionStorage.getItem(ROLE) || 'read'; }
export function signedIn() { return !!token(); }
// canWrite: an admin token; a read token may only GET.
export function canWrite() { return role() === 'admin'; }

export function signOut() {
  sessionStorage.removeItem(TOKEN);
  sessionStorage.removeItem(ROLE);
}

// ApiError is the API's error model: {"success":false,"error":{code,message,details}}.
// details lists {field, message} for validation_failed.
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || [];
  }
  // fieldErrors maps each field path ("steps[0].url") to its message.
  fieldErrors() {
    const m = {};
    for (const d of this.details) m[d.field] = m[d.field] ? m[d.field] + '; ' + d.message : d.message;
    return m;
  }
}

// onUnauthorized is called on a 401 (set by app.js: back to sign-in).
let onUnauthorized = () => {};
export function setUnauthorizedHandler(f) { onUnauthorized = f; }

// qs builds "?a=1&b=2" from an object, leaving out empty values.
export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v === undefined || v === null || v === '') continue;
    if (Array.isArray(v)) v.forEach((x) => u.append(k, x));
    else u.append(k, String(v));
  }
  const s = u.toString();
  return s ? '?' + s : '';
}

async function request(method, path, body, opts = {}) {
  const tok = opts.token || token();
  const headers = { Accept: 'application/json' };
  if (tok) headers.Authorization = 'Bearer ' + tok;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  Object.assign(headers, opts.headers || {});
  let resp;
  try {
    resp = await fetch(BASE + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: opts.signal,
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'The API did not answer: ' + e.message);
  }
  let json = null;
  const text = await resp.text();
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (resp.ok && json && json.success) return { data: json.data, headers: resp.headers, status: resp.status };
  const err = json && json.error
    ? new ApiError(resp.status, json.error.code, json.error.message, json.error.details)
    : new ApiError(resp.status, 'http_' + resp.status, `HTTP ${resp.status} ${resp.statusText}`);
  if (resp.status === 401 && !opts.token) {
    signOut();
    onUnauthorized(err);
  }
  throw err;
}

// api calls the API and returns its data (throws ApiError). opts: signal
// (AbortSignal), headers, token (sign-in checks a token before keeping it),
// full (return {data, headers, status}).
export async function api(method, path, body, opts = {}) {
  const r = await request(method, path, body, opts);
  return opts.full ? r : r.data;
}
export const get = (path, params, opts) => api('GET', path + qs(params), undefined, opts);
export const post = (path, body, opts) => api('POST', path, body, opts);
export const put = (path, body, opts) => api('PUT', path, body, opts);
export const del = (path, body, opts) => api('DELETE', path, body, opts);

// signIn checks tok against GET /whoami and keeps it with its role.
export async function signIn(tok) {
  const data = await api('GET', '/whoami', undefined, { token: tok });
  sessionStorage.setItem(TOKEN, tok);
  sessionStorage.setItem(ROLE, data.role);
  return data.role;
}
