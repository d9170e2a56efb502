// ops.js: what the logs, execution, DLQ and replay pages share: trigger
// types, UTC times in datetime-local inputs, the pipelines datalist, an
// error box listing the API's details, and polling a durable job.

import { get } from './api.js';
import { h } from './dom.js';

export { TRIGGER_TYPES } from './pages/common.js';
export const JOB_FINAL = ['done', 'failed', 'cancelled'];

// toInput shows a time in a datetime-local input, in UTC ("2026-11-27T18:30:05").
export function toInput(d) {
  return d ? new Date(d).toISOString().slice(0, 19) : '';
}

// fromInput reads a datetime-local value as UTC and returns RFC 3339
// ("2026-11-27T18:30:05Z"), '' for an empty value, null for a bad one.
export function fromInput(v) {
  v = (v || '').trim();
  if (!v) return '';
  if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$/.test(v)) v += ':00';
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?$/.test(v)) return null;
  const iso = v + 'Z';
  return Number.isNaN(new Date(iso).getTime()) ? null : iso;
}

// apiErrorBox is errorBox with the API's details (validation_failed lists
// each bad field).
export function apiErrorBox(err, id) {
  const code = err && err.code ? ` (${err.code})` : '';
  const details = (err && err.details) || [];
  return h('div', { class: 'state state-error', role: 'alert', id },
    (err && err.message ? err.message : String(err)) + code,
    details.length ? h('ul', { class: 'error-details' }, details.map((d) => h('li', null, h('code', null, d.field), ': ', d.message))) : null);
}

// pipelinesDatalist: a <datalist id=id> of the pipelines (id, with the name
// as label), filled when the API answers; empty if it does not.
// The list is read at most once a minute (it is only a suggestion).
let pipelinesCache = null; // {at, promise}
export function pipelinesDatalist(id, signal) {
  const list = h('datalist', { id });
  if (!pipelinesCache || Date.now() - pipelinesCache.at > 60e3) {
    pipelinesCache = { at: Date.now(), promise: get('/pipelines', { limit: 200 }).then((d) => d.pipelines || []) };
    pipelinesCache.promise.catch(() => { pipelinesCache = null; });
  }
  pipelinesCache.promise.then((ps) => {
    if (signal && signal.aborted) return;
    list.replaceChildren(...ps.map((p) => h('option', { value: p.id, label: `${p.name} (${p.trigger_type})` })));
  }).catch(() => {});
  return list;
}

// poll calls fn now (after interval with wait: true) and then every
// interval ms until fn returns true, stop() is called or signal aborts.
// fn's errors (other than an abort) are its own to show; polling goes on
// after them.
export function poll(fn, { interval = 1000, signal, wait = false } = {}) {
  let timer = null;
  let stopped = false;
  const stop = () => { stopped = true; clearTimeout(timer); };
  if (signal) {
    if (signal.aborted) stopped = true;
    signal.addEventListener('abort', stop);
  }
  const tick = async () => {
    if (stopped) return;
    let done = false;
    try {
      done = await fn();
    } catch (e) {
      if (e && e.name === 'AbortError') return;
    }
    if (!done && !stopped) timer = setTimeout(tick, interval);
  };
  if (wait) timer = setTimeout(tick, interval);
  else tick();
  return stop;
}

// progressBar: a <progress> with its text ("3 of 10").
export function progressBar(value, max, id) {
  const m = Math.max(Number(max) || 0, 0);
  const v = Math.min(Math.max(Number(value) || 0, 0), m || 1);
  return h('div', { class: 'job-progress' },
    h('progress', { class: 'progress', id, max: m || 1, value: m ? v : 0 }),
    h('span', { class: 'job-progress-text' }, m ? `${v} of ${m} (${Math.floor((100 * v) / m)}%)` : 'nothing to do'));
}

// setFieldErrors shows errors (field path → message) at the fields of form
// (their .field[data-field]); the first bad field gets the focus.
export function setFieldErrors(form, errs) {
  let first = null;
  for (const f of form.querySelectorAll('.field[data-field]')) {
    const msg = errs[f.dataset.field];
    f.classList.toggle('field-invalid', !!msg);
    f.querySelectorAll('.field-error').forEach((e) => e.remove());
    const control = f.querySelector('input, select, textarea');
    if (msg) {
      f.append(h('div', { class: 'field-error', role: 'alert', id: control.id + '-error' }, msg));
      control.setAttribute('aria-invalid', 'true');
      first = first || control;
    } else {
      control.removeAttribute('aria-invalid');
    }
  }
  if (first) first.focus();
}
