// DLQ: dead items filtered by pipeline, trigger type and state, each with
// its details (error, attempts, payload as text), retry and delete; bulk
// redrive by filter, run by a durable job whose progress is polled
// (?redrive=<job id> keeps watching it across reloads).
import { ApiError, canWrite, del, get, post } from '../api.js';
import { setQuery } from '../app.js';
import { ago, badge, button, card, confirmDialog, field, fmtNum, fmtTime, h, kv, link, loading, mount, pagination, pre, select, toast, truncate } from '../dom.js';
import { apiErrorBox, fromInput, JOB_FINAL, pipelinesDatalist, poll, progressBar, setFieldErrors, TRIGGER_TYPES } from '../ops.js';

const STATES = ['dead', 'retried', 'deleted'];
const LIMITS = ['20', '50', '100', '200'];

// REASONS explains each reason an item is dead (as the API documents them).
const REASONS = {
  retries_exhausted: 'every attempt, and the failover\'s, failed',
  permanent: 'not retried: a render error, a blocked address or an invalid URL',
  pipeline_disabled: 'the pipeline was disabled',
  circuit_open: 'the receiver\'s circuit stayed open for longer than the step\'s retry window',
  host_saturated: 'the receiver\'s host stayed saturated for longer than the step\'s retry window',
  pipeline_paused: 'the pipeline stayed paused for longer than the step\'s retry window',
  too_large: 'the retry task was too large for Kafka',
  produce_failed: 'Kafka refused the retry task',
  invalid_event: 'the source record is not an event',
  invalid_task: 'a retry record could not be decoded',
};

function filtersOf(query) {
  return {
    pipeline_id: query.get('pipeline_id') || '',
    trigger_type: query.get('trigger_type') || '',
    state: STATES.includes(query.get('state')) ? query.get('state') : '',
    page: query.get('page') || '',
    limit: query.get('limit') || '',
    redrive: query.get('redrive') || '',
  };
}

// ---- one item ----

function detail(it) {
  return h('div', { class: 'dlq-detail' },
    kv([
      ['Item', h('span', { class: 'mono' }, it.id)],
      ['Reason', h('span', null, h('code', null, it.reason), ' — ', REASONS[it.reason] || '')],
      ['Attempts', String(it.attempts)],
      ['Failed at', fmtTime(it.failed_at) + ' UTC'],
      it.step_order ? ['Dead step', String(it.step_order)] : null,
      ['Trigger', h('span', null, it.trigger_type || '—', ' ', h('span', { class: 'mono' }, it.trigger_id))],
      it.delivery_id ? ['Delivery id', h('span', { class: 'mono' }, it.delivery_id)] : null,
      it.execution_id ? ['Execution', link('/ui/logs/' + encodeURIComponent(it.execution_id) + '?pipeline_id=' + encodeURIComponent(it.pipeline_id), h('span', { class: 'mono' }, it.execution_id))] : null,
      it.source ? ['Source', h('span', { class: 'mono' }, `${it.source.topic} [${it.source.partition}] @ ${it.source.offset}`)] : null,
    ]),
    h('h3', null, 'Last error'),
    h('pre', { class: 'code', id: 'dlq-error-' + it.id }, it.last_error || '—'),
    h('h3', null, 'Payload ', it.payload_truncated ? h('span', { class: 'hint' }, '(reduced: the item was too large for the broker; a retry reads the event again from its source)') : null),
    it.payload === null ? h('p', { class: 'muted' }, 'none kept') : pre(it.payload, 'dlq-payload'),
    it.source && it.source.value ? [h('h3', null, 'Source record'), pre(it.source.value)] : null);
}

function itemActions(it, row) {
  const stateCell = row.querySelector('.dlq-state');
  const retry = button('Retry', null, { write: true, kind: 'small', id: 'retry-' + it.id, title: 'Deliver again from the dead step' });
  const remove = button('Delete', null, { write: true, kind: 'small', id: 'delete-' + it.id, title: 'Remove from the DLQ' });
  remove.classList.add('btn-danger');
  const settle = (state, extra) => {
    retry.disabled = true;
    remove.disabled = true;
    stateCell.replaceChildren(badge(state), extra || '');
    row.dataset.state = state;
  };
  if (it.state !== 'dead') {
    retry.disabled = true;
    remove.disabled = true;
  }
  retry.addEventListener('click', async () => {
    retry.disabled = true;
    remove.disabled = true;
    try {
      const r = await post('/dlq/' + encodeURIComponent(it.id) + '/retry');
      settle('retried', r.execution_id
        ? h('div', { class: 'hint' }, 'new execution ', link('/ui/logs/' + encodeURIComponent(r.execution_id) + '?pipeline_id=' + encodeURIComponent(it.pipeline_id), h('span', { class: 'mono' }, r.execution_id)))
        : null);
      toast(`Retry of ${it.id} queued`);
    } catch (e) {
      toast(e.message, 'bad');
      if (e instanceof ApiError && e.code === 'already_handled') settle('handled');
      else { retry.disabled = !canWrite(); remove.disabled = !canWrite(); }
    }
  });
  remove.addEventListener('click', async () => {
    if (!await confirmDialog(`Delete DLQ item ${it.id}? Its event is not delivered again.`)) return;
    retry.disabled = true;
    remove.disabled = true;
    try {
      await del('/dlq/' + encodeURIComponent(it.id));
      settle('deleted');
      toast(`DLQ item ${it.id} deleted`);
    } catch (e) {
      toast(e.message, 'bad');
      if (e instanceof ApiError && e.code === 'already_handled') settle('handled');
      else { retry.disabled = !canWrite(); remove.disabled = !canWrite(); }
    }
  });
  return [retry, remove];
}

function itemsTable(items) {
  const cols = ['Failed', 'Pipeline', 'Trigger', 'Reason', 'Attempts', 'Last error', 'State', ''];
  const tbody = h('tbody');
  for (const it of items) {
    const toggle = h('button', { type: 'button', class: 'btn btn-small', id: 'details-' + it.id, 'aria-expanded': 'false' }, 'Details');
    const row = h('tr', { id: 'dlq-row-' + it.id, 'data-state': it.state },
      h('td', { title: fmtTime(it.failed_at) + ' UTC' }, ago(it.failed_at)),
      h('td', null, it.pipeline_id ? link('/ui/pipelines/' + encodeURIComponent(it.pipeline_id), h('span', { class: 'mono' }, it.pipeline_id)) : h('span', { class: 'muted' }, 'unreadable record')),
      h('td', null, it.trigger_type || '—', h('div', { class: 'muted mono' }, it.trigger_id)),
      h('td', null, h('code', { title: REASONS[it.reason] || '' }, it.reason)),
      h('td', { class: 'num' }, String(it.attempts)),
      h('td', { class: 'wrap', title: it.last_error }, truncate(it.last_error, 90)),
      h('td', { class: 'dlq-state' }, badge(it.state)),
      h('td', { class: 'dlq-actions' }));
    row.lastChild.append(toggle, ...itemActions(it, row));
    const detailRow = h('tr', { class: 'dlq-detail-row', id: 'dlq-detail-' + it.id, hidden: true }, h('td', { colspan: cols.length }, detail(it)));
    toggle.addEventListener('click', () => {
      detailRow.hidden = !detailRow.hidden;
      toggle.setAttribute('aria-expanded', String(!detailRow.hidden));
      toggle.textContent = detailRow.hidden ? 'Details' : 'Hide';
    });
    tbody.append(row, detailRow);
  }
  return h('table', { class: 'grid' }, h('thead', null, h('tr', null, cols.map((c) => h('th', null, c)))), tbody);
}

// ---- bulk redrive ----

function redriveForm(f) {
  const inputs = {
    pipeline_id: h('input', { type: 'text', id: 'redrive-pipeline', value: f.pipeline_id, list: 'dlq-pipelines', placeholder: 'any pipeline', autocomplete: 'off' }),
    trigger_type: select({ id: 'redrive-trigger' }, [['', 'any'], ...TRIGGER_TYPES], f.trigger_type),
    error: h('input', { type: 'text', id: 'redrive-error', placeholder: 'e.g. timeout', autocomplete: 'off' }),
    failed_from: h('input', { type: 'datetime-local', id: 'redrive-from', step: 1 }),
    failed_to: h('input', { type: 'datetime-local', id: 'redrive-to', step: 1 }),
    rate_per_second: h('input', { type: 'number', id: 'redrive-rate', value: '50', min: '0.01', max: '1000', step: 'any' }),
    limit: h('input', { type: 'number', id: 'redrive-limit', value: '1000', min: '1', max: '10000', step: '1' }),
  };
  const submit = button('Redrive matching items', null, { write: true, kind: 'primary', type: 'submit', id: 'redrive-submit' });
  const formError = h('div', { id: 'redrive-form-error' });
  const form = h('form', { id: 'redrive-form', novalidate: true },
    h('p', { class: 'hint' }, 'Retries the dead items that match, at a bounded rate, by a durable job (it survives a restart). Times are UTC.'),
    h('div', { class: 'row' },
      field('Pipeline id', inputs.pipeline_id, { name: 'pipeline_id' }),
      field('Trigger type', inputs.trigger_type, { name: 'trigger_type' }),
      field('Error contains', inputs.error, { name: 'error', hint: 'case-insensitive part of the last error' })),
    h('div', { class: 'row' },
      field('Failed from (UTC)', inputs.failed_from, { name: 'failed_from' }),
      field('Failed to (UTC)', inputs.failed_to, { name: 'failed_to' }),
      field('Rate per second', inputs.rate_per_second, { name: 'rate_per_second', hint: '0.01–1000' }),
      field('At most', inputs.limit, { name: 'limit', hint: 'items, 1–10,000' })),
    formError,
    h('div', { class: 'form-actions' }, submit));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    formError.replaceChildren();
    const errs = {};
    const body = {};
    for (const k of ['pipeline_id', 'trigger_type', 'error']) if (inputs[k].value.trim()) body[k] = inputs[k].value.trim();
    for (const k of ['failed_from', 'failed_to']) {
      const v = fromInput(inputs[k].value);
      if (v === null) errs[k] = 'enter a date and time';
      else if (v) body[k] = v;
    }
    const rate = Number(inputs.rate_per_second.value);
    if (inputs.rate_per_second.value.trim() === '' || !Number.isFinite(rate)) errs.rate_per_second = 'enter a number';
    else body.rate_per_second = rate;
    const limit = Number(inputs.limit.value);
    if (!Number.isInteger(limit)) errs.limit = 'enter a whole number';
    else body.limit = limit;
    setFieldErrors(form, errs);
    if (Object.keys(errs).length) return;
    const what = [body.pipeline_id && 'of pipeline ' + body.pipeline_id, body.trigger_type && body.trigger_type + ' events', body.error && `with "${body.error}" in the error`].filter(Boolean).join(', ');
    if (!await confirmDialog(`Retry up to ${fmtNum(body.limit)} dead items${what ? ' ' + what : ''}, ${body.rate_per_second} per second?`, { confirm: 'Redrive', kind: 'primary' })) return;
    submit.disabled = true;
    try {
      const r = await post('/dlq/retry', body);
      toast(`Redrive started: ${r.queued} of ${r.matched} matching items queued`);
      setQuery({ ...f, page: '', redrive: r.job_id }, { replace: false });
    } catch (ex) {
      submit.disabled = false;
      if (ex instanceof ApiError && ex.code === 'validation_failed') setFieldErrors(form, ex.fieldErrors());
      formError.replaceChildren(apiErrorBox(ex));
    }
  });
  return form;
}

// redriveProgress polls the job until it is final; it returns the card.
function redriveProgress(id, f, signal) {
  const body = h('div', { id: 'redrive-body' }, h('p', { class: 'muted' }, 'Reading the job…'));
  const box = card('Bulk redrive', h('p', { class: 'muted' }, 'Job ', h('span', { class: 'mono', id: 'redrive-id' }, id)), body);
  box.id = 'redrive-progress';
  const cancel = button('Cancel', async () => {
    if (!await confirmDialog(`Cancel redrive ${id}? Items already retried stay retried; the rest stay in the DLQ.`, { confirm: 'Cancel redrive' })) return;
    try {
      await del('/dlq/redrive/' + encodeURIComponent(id));
      toast('Redrive cancelled');
    } catch (e) {
      toast(e.message, 'bad');
    }
  }, { write: true, kind: 'danger', id: 'redrive-cancel' });
  const dismiss = h('button', { type: 'button', class: 'btn', id: 'redrive-dismiss', onclick: () => setQuery({ ...f, redrive: '' }) }, 'Dismiss');
  const reload = h('button', { type: 'button', class: 'btn', id: 'redrive-reload', onclick: () => setQuery({ ...f }) }, 'Reload the list');
  poll(async () => {
    let j;
    try {
      j = await get('/dlq/redrive/' + encodeURIComponent(id), null, { signal });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      mount(body, apiErrorBox(e, 'redrive-error'), e.status === 404 ? dismiss : h('p', { class: 'hint' }, 'Trying again…'));
      return e.status === 404;
    }
    const final = JOB_FINAL.includes(j.state);
    cancel.hidden = final;
    mount(body,
      h('div', { class: 'job-head' }, h('span', { id: 'redrive-state', 'data-state': j.state }, badge(j.state)),
        h('span', { class: 'muted' }, `started ${ago(j.created_at)}, updated ${ago(j.updated_at)}`)),
      progressBar(j.processed, j.queued, 'redrive-bar'),
      h('dl', { class: 'kv job-counts', id: 'redrive-counts' },
        h('dt', null, 'Matched'), h('dd', null, fmtNum(j.matched)),
        h('dt', null, 'Queued'), h('dd', null, fmtNum(j.queued), h('span', { class: 'hint' }, ' (items holding something to retry)')),
        h('dt', null, 'Retried'), h('dd', { id: 'redrive-retried' }, fmtNum(j.retried)),
        h('dt', null, 'Skipped'), h('dd', { id: 'redrive-skipped' }, fmtNum(j.skipped), h('span', { class: 'hint' }, ' (retried or deleted before the job reached them)')),
        h('dt', null, 'Failed'), h('dd', { id: 'redrive-failed' }, fmtNum(j.failed)),
        h('dt', null, 'Rate'), h('dd', null, `${j.rate_per_second} per second`)),
      j.error ? apiErrorBox({ message: j.error }) : null,
      h('div', { class: 'form-actions' }, final ? [reload, dismiss] : cancel));
    return final;
  }, { signal, interval: 1000 });
  return box;
}

export async function render(root, params) {
  const f = filtersOf(params.query);
  const pipelineInput = h('input', { type: 'text', id: 'filter-pipeline', value: f.pipeline_id, list: 'dlq-pipelines', placeholder: 'any pipeline', autocomplete: 'off' });
  const triggerSelect = select({ id: 'filter-trigger' }, [['', 'any'], ...TRIGGER_TYPES], f.trigger_type);
  const stateSelect = select({ id: 'filter-state' }, STATES, f.state || 'dead');
  const limitSelect = select({ id: 'filter-limit' }, LIMITS, f.limit || '20');
  const filters = h('form', {
    class: 'filters', id: 'dlq-filters',
    onsubmit: (e) => {
      e.preventDefault();
      setQuery({ ...f, page: '', pipeline_id: pipelineInput.value.trim(), trigger_type: triggerSelect.value, state: stateSelect.value === 'dead' ? '' : stateSelect.value, limit: limitSelect.value === '20' ? '' : limitSelect.value });
    },
  },
  h('label', null, 'Pipeline', pipelineInput),
  pipelinesDatalist('dlq-pipelines', params.signal),
  h('label', null, 'Trigger type', triggerSelect),
  h('label', null, 'State', stateSelect),
  h('label', null, 'Per page', limitSelect),
  h('button', { type: 'submit', class: 'btn btn-primary', id: 'filter-apply' }, 'Apply'),
  h('button', { type: 'button', class: 'btn', id: 'filter-clear', onclick: () => setQuery({ redrive: f.redrive }) }, 'Clear'));

  const list = h('div', { id: 'dlq-list' }, loading('Reading the DLQ…'));
  mount(root,
    h('div', { class: 'page-head' }, h('h1', null, 'Dead-letter queue'),
      h('div', { class: 'actions' }, h('button', { type: 'button', class: 'btn', id: 'dlq-refresh', onclick: () => setQuery({ ...f }) }, 'Refresh'))),
    f.redrive ? redriveProgress(f.redrive, f, params.signal) : null,
    filters, list,
    card('Bulk redrive by filter', redriveForm(f)));

  let data;
  try {
    data = await get('/dlq', { pipeline_id: f.pipeline_id, trigger_type: f.trigger_type, state: f.state, page: f.page, limit: f.limit }, { signal: params.signal });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    mount(list, apiErrorBox(e, 'dlq-error'));
    return;
  }
  const state = f.state || 'dead';
  mount(list,
    data.items.length
      ? h('div', { class: 'table-wrap', id: 'dlq-table' }, itemsTable(data.items))
      : h('div', { class: 'state state-empty', id: 'dlq-table' }, state === 'dead'
        ? (f.pipeline_id || f.trigger_type ? 'No dead item matches these filters.' : 'The DLQ is empty: nothing has failed for good.')
        : `No ${state} item matches these filters.`),
    pagination(data.pagination, (p) => setQuery({ ...f, page: p > 1 ? p : '' }, { replace: false })));
}
