// dom.js: building the page. Text goes in through textContent (text nodes)
// only: nothing here parses HTML, so data from the API (a receiver's
// response body with <script> in it) is always shown as text.

import { canWrite } from './api.js';

const SVG_NS = 'http://www.w3.org/2000/svg';

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2).toLowerCase(), v);
    } else if (k === 'class') {
      el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
    } else if (k === 'dataset') {
      Object.assign(el.dataset, v);
    } else if (k === 'value' || k === 'checked' || k === 'selected' || k === 'disabled') {
      el[k] = v;
    } else if (k === 'innerHTML' || k === 'outerHTML') {
      throw new Error('dom.h: ' + k + ' is not allowed');
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false || c === true) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// h('a', {href: '/ui/x', class: 'btn', onclick: f}, 'text', child, [more])
// creates an element. Strings and numbers become text nodes; null, undefined
// and false children are skipped; arrays are flattened. Attributes: class
// (string or array), on<event> (function), dataset (object), value, checked,
// selected, disabled (properties), anything else as an attribute.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

// s is h for SVG elements.
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

// mount replaces root's children.
export function mount(root, ...children) {
  root.replaceChildren();
  append(root, children);
  return root;
}

// ---- formatting ----

export function fmtNum(n) {
  return n === undefined || n === null ? '—' : Number(n).toLocaleString('en-US');
}
export function fmtPct(n) {
  return n === undefined || n === null ? '—' : `${Number(n).toFixed(1)}%`;
}
export function fmtMs(n) {
  if (n === undefined || n === null) return '—';
  if (n >= 10000) return `${(n / 1000).toFixed(1)} s`;
  return `${Math.round(n)} ms`;
}
// fmtTime shows an RFC 3339 time as "2026-11-27 18:10:34" (UTC).
export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, '').replace('Z', '');
}
// ago: "3 min ago".
export function ago(iso) {
  if (!iso) return 'never';
  const sec = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  if (sec < 60) return `${Math.max(sec, 0)} s ago`;
  if (sec < 3600) return `${Math.round(sec / 60)} min ago`;
  if (sec < 86400) return `${Math.round(sec / 3600)} h ago`;
  return `${Math.round(sec / 86400)} d ago`;
}
// truncate long text for a cell (the full text goes in the title).
export function truncate(text, n = 120) {
  const t = String(text ?? '');
  return t.length > n ? t.slice(0, n - 1) + '…' : t;
}

// ---- components ----

const BADGE = {
  active: 'ok', completed: 'ok', success: 'ok', done: 'ok', admin: 'info',
  paused: 'warn', retrying: 'warn', partial: 'warn', queued: 'info', running: 'info', read: 'muted',
  disabled: 'bad', failed: 'bad', dead: 'bad', cancelled: 'muted', retried: 'info', deleted: 'muted', filtered: 'muted',
};
// badge: a status as a coloured pill.
export function badge(status, kind) {
  return h('span', { class: ['badge', 'badge-' + (kind || BADGE[status] || 'muted')] }, status || '—');
}

export function loading(text = 'Loading…') {
  return h('div', { class: 'state state-loading', role: 'status' }, h('span', { class: 'spinner' }), text);
}
// errorBox shows an error (the API's message, and its code).
export function errorBox(err) {
  const code = err && err.code ? ` (${err.code})` : '';
  return h('div', { class: 'state state-error', role: 'alert' }, (err && err.message ? err.message : String(err)) + code);
}
export function empty(text) {
  return h('div', { class: 'state state-empty' }, text);
}

// table: columns [{title, cell: row => node|string, class}], rows; an
// empty list shows emptyText.
export function table(columns, rows, { emptyText = 'Nothing here yet.', rowClass, rowAttrs } = {}) {
  if (!rows || rows.length === 0) return empty(emptyText);
  return h('table', { class: 'grid' },
    h('thead', null, h('tr', null, columns.map((c) => h('th', { class: c.class }, c.title)))),
    h('tbody', null, rows.map((r) => h('tr', { class: rowClass ? rowClass(r) : null, ...(rowAttrs ? rowAttrs(r) : {}) },
      columns.map((c) => h('td', { class: c.class }, c.cell(r)))))));
}

// pagination: "‹ Prev  Page 2 of 5 (93)  Next ›"; onPage(n) is called.
export function pagination(p, onPage) {
  if (!p) return null;
  const pages = Math.max(1, Math.ceil(p.total / p.limit));
  return h('nav', { class: 'pager', 'aria-label': 'pagination' },
    h('button', { type: 'button', class: 'btn', disabled: p.page <= 1, onclick: () => onPage(p.page - 1) }, '‹ Prev'),
    h('span', { class: 'pager-info' }, `Page ${p.page} of ${pages} · ${fmtNum(p.total)} total`),
    h('button', { type: 'button', class: 'btn', disabled: p.page >= pages, onclick: () => onPage(p.page + 1) }, 'Next ›'));
}

// link: an in-app link (the router takes the click, no reload).
export function link(href, ...children) {
  return h('a', { href, 'data-route': '' }, ...children);
}

// button; with write: true it is disabled for a read token.
export function button(label, onclick, { kind = '', write = false, type = 'button', id, title } = {}) {
  const ro = write && !canWrite();
  return h('button', {
    type, id, class: ['btn', kind && 'btn-' + kind], onclick,
    disabled: ro, title: ro ? 'Your token has the read role: it may not change anything' : title,
  }, label);
}

// field: a labelled form control with its hint and its error (shown at
// the field: the API's details name it). name is the API's field path.
export function field(label, control, { hint, error, name } = {}) {
  const id = control.id || 'f-' + (name || label).replace(/[^a-z0-9]+/gi, '-');
  control.id = id;
  if (error) control.setAttribute('aria-invalid', 'true');
  return h('div', { class: ['field', error && 'field-invalid'], dataset: name ? { field: name } : undefined },
    h('label', { for: id }, label),
    control,
    hint ? h('div', { class: 'hint' }, hint) : null,
    error ? h('div', { class: 'field-error', role: 'alert' }, error) : null);
}

// select: options [[value, label]] or [value].
export function select(attrs, options, selected) {
  return h('select', attrs, options.map((o) => {
    const [v, l] = Array.isArray(o) ? o : [o, o];
    return h('option', { value: v, selected: String(v) === String(selected ?? '') }, l);
  }));
}

// confirmDialog shows a modal and resolves true when confirmed.
export function confirmDialog(message, { confirm = 'Delete', kind = 'danger' } = {}) {
  return new Promise((resolve) => {
    const done = (v) => { overlay.remove(); resolve(v); };
    const overlay = h('div', { class: 'modal-overlay' },
      h('div', { class: 'modal', role: 'dialog', 'aria-modal': 'true' },
        h('p', { class: 'modal-text' }, message),
        h('div', { class: 'modal-actions' },
          h('button', { type: 'button', class: 'btn', id: 'modal-cancel', onclick: () => done(false) }, 'Cancel'),
          h('button', { type: 'button', class: ['btn', 'btn-' + kind], id: 'modal-confirm', onclick: () => done(true) }, confirm))));
    document.body.append(overlay);
    overlay.querySelector('#modal-cancel').focus();
  });
}

// toast: a short message at the bottom of the page.
export function toast(message, kind = 'ok') {
  let box = document.getElementById('toasts');
  if (!box) { box = h('div', { id: 'toasts', class: 'toasts', 'aria-live': 'polite' }); document.body.append(box); }
  const t = h('div', { class: ['toast', 'toast-' + kind] }, message);
  box.append(t);
  setTimeout(() => t.remove(), 5000);
}

// pre: preformatted text (JSON is pretty-printed), shown as text.
export function pre(value, cls) {
  const text = typeof value === 'string' ? value : JSON.stringify(value, null, 2);
  return h('pre', { class: ['code', cls] }, text ?? '');
}

// card: a titled panel.
export function card(title, ...children) {
  return h('section', { class: 'card' }, title ? h('h2', { class: 'card-title' }, title) : null, ...children);
}

// kv: a definition list of [label, value] pairs.
export function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.filter(Boolean).map(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
}
