// Logs: recent executions or failures, filtered by pipeline, trigger type
// and status; each row opens the execution with its steps. Filters and
// the page live in the URL's query.
import { get } from '../api.js';
import { setQuery } from '../app.js';
import { ago, badge, fmtMs, fmtTime, h, link, loading, mount, pagination, select, table, truncate } from '../dom.js';
import { apiErrorBox, pipelinesDatalist, poll, TRIGGER_TYPES } from '../ops.js';

const VIEWS = { recent: 'Recent', failures: 'Failures' };
const STATUSES = ['completed', 'failed', 'partial', 'retrying', 'cancelled'];
const LIMITS = ['20', '50', '100', '200'];

// filtersOf reads the page's state from the URL.
export function filtersOf(query) {
  const view = VIEWS[query.get('view')] ? query.get('view') : 'recent';
  return {
    view,
    pipeline_id: query.get('pipeline_id') || '',
    trigger_type: query.get('trigger_type') || '',
    status: view === 'recent' ? query.get('status') || '' : '',
    page: query.get('page') || '',
    limit: query.get('limit') || '',
    live: query.get('live') === '1' ? '1' : '',
  };
}

// LIVE_EVERY: how often a live list is read again (ms).
const LIVE_EVERY = 5000;

// executionHref: the execution page, with the pipeline as a hint where to
// look it up.
export function executionHref(ex) {
  const q = new URLSearchParams();
  if (ex.pipeline_id) q.set('pipeline_id', ex.pipeline_id);
  return '/ui/logs/' + encodeURIComponent(ex.id) + (q.toString() ? '?' + q : '');
}

function stepsSummary(ex) {
  const n = ex.steps.length;
  if (!n) return h('span', { class: 'muted' }, 'no attempt yet');
  const ok = ex.steps.filter((s) => s.status === 'success').length;
  const attempts = ex.steps.reduce((a, s) => a + (s.attempts || 0), 0);
  const last = ex.steps[n - 1];
  return h('span', null, `${ok}/${n} ok`, h('span', { class: 'muted' }, ` · ${attempts} attempt${attempts === 1 ? '' : 's'}`),
    last.http_status ? h('span', { class: 'muted' }, ` · last HTTP ${last.http_status}`) : null);
}

function lastError(ex) {
  const failed = ex.steps.filter((s) => s.error);
  return failed.length ? truncate(failed[failed.length - 1].error, 80) : '';
}

export async function render(root, params) {
  const f = filtersOf(params.query);
  const go = (change) => setQuery({ ...f, page: '', ...change });

  const pipelineInput = h('input', { type: 'text', id: 'filter-pipeline', name: 'pipeline_id', value: f.pipeline_id, list: 'logs-pipelines', placeholder: 'any pipeline', autocomplete: 'off' });
  const triggerSelect = select({ id: 'filter-trigger', name: 'trigger_type' }, [['', 'any'], ...TRIGGER_TYPES], f.trigger_type);
  const statusSelect = f.view === 'recent' ? select({ id: 'filter-status', name: 'status' }, [['', 'any'], ...STATUSES], f.status) : null;
  const limitSelect = select({ id: 'filter-limit', name: 'limit' }, LIMITS, f.limit || '20');
  const filters = h('form', {
    class: 'filters', id: 'logs-filters',
    onsubmit: (e) => {
      e.preventDefault();
      go({ pipeline_id: pipelineInput.value.trim(), trigger_type: triggerSelect.value, status: statusSelect ? statusSelect.value : '', limit: limitSelect.value === '20' ? '' : limitSelect.value });
    },
  },
  h('label', null, 'Pipeline', pipelineInput),
  pipelinesDatalist('logs-pipelines', params.signal),
  h('label', null, 'Trigger type', triggerSelect),
  statusSelect ? h('label', null, 'Status', statusSelect) : null,
  h('label', null, 'Per page', limitSelect),
  h('button', { type: 'submit', class: 'btn btn-primary', id: 'filter-apply' }, 'Apply'),
  h('button', { type: 'button', class: 'btn', id: 'filter-clear', onclick: () => setQuery({ view: f.view === 'recent' ? '' : f.view }) }, 'Clear'));

  const tabs = h('div', { class: 'tabs', role: 'tablist' }, Object.entries(VIEWS).map(([key, label]) =>
    h('button', {
      type: 'button', role: 'tab', id: 'tab-' + key, class: ['tab', key === f.view && 'active'], 'aria-selected': key === f.view ? 'true' : 'false',
      onclick: () => go({ view: key === 'recent' ? '' : key, status: '' }),
    }, label)));

  const live = h('input', { type: 'checkbox', id: 'logs-live', checked: !!f.live, onchange: (e) => setQuery({ ...f, live: e.target.checked ? '1' : '' }) });
  const head = h('div', { class: 'page-head' },
    h('h1', null, 'Execution logs'),
    h('div', { class: 'actions' },
      h('label', { class: 'checkbox', title: `read the list again every ${LIVE_EVERY / 1000} s` }, live, 'Live'),
      h('button', { type: 'button', class: 'btn', id: 'logs-refresh', onclick: () => setQuery({ ...f }) }, 'Refresh')));
  const body = h('div', { id: 'logs-body' }, loading('Reading the execution logs…'));
  mount(root, head, tabs, filters, body);

  await load(f, body, params.signal);
  // Live: the list is read again until the user leaves the page.
  if (f.live) poll(() => load(f, body, params.signal).then(() => false), { interval: LIVE_EVERY, signal: params.signal, wait: true });
}

// load reads the list and shows it in body (or the API's error).
async function load(f, body, signal) {
  let data;
  try {
    data = await get('/logs/' + f.view, { pipeline_id: f.pipeline_id, trigger_type: f.trigger_type, status: f.status, page: f.page, limit: f.limit }, { signal });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    mount(body, apiErrorBox(e, 'logs-error'));
    return;
  }
  const filtered = f.pipeline_id || f.trigger_type || f.status;
  const empty = f.view === 'failures'
    ? (filtered ? 'No failed, partial or retrying execution matches these filters.' : 'No failed, partial or retrying execution.')
    : (filtered ? 'No execution matches these filters.' : 'No execution yet: events delivered by a pipeline show here.');
  mount(body,
    h('div', { class: 'table-wrap', id: 'logs-table' }, table([
      { title: 'Started', cell: (ex) => h('span', { title: fmtTime(ex.started_at) + ' UTC' }, ago(ex.started_at)) },
      { title: 'Pipeline', cell: (ex) => h('span', null, link('/ui/pipelines/' + encodeURIComponent(ex.pipeline_id), ex.pipeline_name || ex.pipeline_id), h('div', { class: 'muted mono' }, ex.pipeline_id)) },
      { title: 'Trigger', cell: (ex) => h('span', null, ex.trigger_type, h('div', { class: 'muted mono' }, ex.trigger_id)) },
      { title: 'Status', cell: (ex) => badge(ex.status) },
      { title: 'Steps', cell: stepsSummary },
      { title: 'Duration', class: 'num', cell: (ex) => (ex.completed_at ? fmtMs(ex.duration_ms) : '—') },
      { title: 'Error', class: 'wrap', cell: lastError },
      { title: 'Execution', cell: (ex) => h('a', { href: executionHref(ex), 'data-route': '', id: 'exec-' + ex.id, class: 'mono' }, ex.id) },
    ], data.logs, { emptyText: empty, rowAttrs: (ex) => ({ id: 'log-' + ex.id, 'data-status': ex.status }) })),
    pagination(data.pagination, (p) => setQuery({ ...f, page: p > 1 ? p : '' }, { replace: false })));
}
