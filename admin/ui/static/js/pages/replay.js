// Replay: start a replay of the event topics over a time window (UTC), for
// a trigger type and/or chosen pipelines, then watch its progress (the
// durable job, polled at /ui/replay/<id>). The API has no list of replays:
// the ones started in this tab are kept (ids only) in sessionStorage.
import { ApiError, del, get, post } from '../api.js';
import { navigate } from '../app.js';
import { ago, badge, button, card, confirmDialog, field, fmtNum, fmtTime, h, link, mount, select, table, toast } from '../dom.js';
import { apiErrorBox, fromInput, JOB_FINAL, pipelinesDatalist, poll, progressBar, setFieldErrors, toInput, TRIGGER_TYPES } from '../ops.js';

const RECENT = 'webhookd.replays';

function recentIDs() {
  try {
    const v = JSON.parse(sessionStorage.getItem(RECENT) || '[]');
    return Array.isArray(v) ? v.filter((x) => typeof x === 'string').slice(0, 10) : [];
  } catch {
    return [];
  }
}
function remember(id) {
  sessionStorage.setItem(RECENT, JSON.stringify([id, ...recentIDs().filter((x) => x !== id)].slice(0, 10)));
}

// setErrors shows errors (field path → message) at the form's fields;
// pipeline_ids[i] goes to the pipelines field.
function setErrors(form, errs) {
  const byField = {};
  for (const [k, v] of Object.entries(errs)) {
    const m = /^pipeline_ids\[(\d+)\]$/.exec(k);
    const name = m ? 'pipeline_ids' : k;
    const text = m ? `${form.querySelector('#replay-pipelines').value.split(/[\s,]+/).filter(Boolean)[Number(m[1])] || 'pipeline ' + (Number(m[1]) + 1)}: ${v}` : v;
    byField[name] = byField[name] ? byField[name] + '; ' + text : text;
  }
  setFieldErrors(form, byField);
}

function replayForm(params) {
  const now = new Date();
  now.setUTCMilliseconds(0);
  const inputs = {
    from: h('input', { type: 'datetime-local', id: 'replay-from', step: 1, value: toInput(new Date(now.getTime() - 3600e3)) }),
    to: h('input', { type: 'datetime-local', id: 'replay-to', step: 1, value: toInput(now) }),
    trigger_type: select({ id: 'replay-trigger' }, [['', 'every trigger type'], ...TRIGGER_TYPES], params.query.get('trigger_type') || ''),
    pipeline_ids: h('input', { type: 'text', id: 'replay-pipelines', value: params.query.get('pipeline_id') || '', list: 'replay-pipeline-list', placeholder: 'every active pipeline of each event\'s trigger type', autocomplete: 'off' }),
    rate_per_second: h('input', { type: 'number', id: 'replay-rate', min: '0', max: '100000', step: 'any', placeholder: 'not paced' }),
  };
  const quick = (label, minutes) => h('button', {
    type: 'button', class: 'btn btn-small', id: 'replay-last-' + minutes,
    onclick: () => {
      const to = new Date();
      to.setUTCMilliseconds(0);
      inputs.to.value = toInput(to);
      inputs.from.value = toInput(new Date(to.getTime() - minutes * 60e3));
    },
  }, label);
  const submit = button('Start replay', null, { write: true, kind: 'primary', type: 'submit', id: 'replay-submit' });
  const formError = h('div', { id: 'replay-form-error' });
  const form = h('form', { id: 'replay-form', novalidate: true },
    h('p', { class: 'hint' }, 'Reads the event topics again over [from, to) and delivers each event again, with its original delivery id and an X-Afftok-Replay header. Times are UTC; only what the topics still retain can be replayed.'),
    h('div', { class: 'actions replay-quick' }, h('span', { class: 'muted' }, 'Window:'), quick('last 15 min', 15), quick('last hour', 60), quick('last 24 h', 1440)),
    h('div', { class: 'row' },
      field('From (UTC)', inputs.from, { name: 'from', hint: 'inclusive' }),
      field('To (UTC)', inputs.to, { name: 'to', hint: 'exclusive; not in the future' })),
    h('div', { class: 'row' },
      field('Trigger type', inputs.trigger_type, { name: 'trigger_type' }),
      field('Pipelines', inputs.pipeline_ids, { name: 'pipeline_ids', hint: 'pipeline ids, separated by commas; empty: every active pipeline' }),
      field('Rate per second', inputs.rate_per_second, { name: 'rate_per_second', hint: 'deliveries queued per second; empty: not paced' })),
    pipelinesDatalist('replay-pipeline-list', params.signal),
    formError,
    h('div', { class: 'form-actions' }, submit));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    formError.replaceChildren();
    const errs = {};
    const body = {};
    for (const k of ['from', 'to']) {
      const v = fromInput(inputs[k].value);
      if (!v) errs[k] = v === null ? 'enter a date and time' : 'is required';
      else body[k] = v;
    }
    if (inputs.trigger_type.value) body.trigger_type = inputs.trigger_type.value;
    const ids = inputs.pipeline_ids.value.split(/[\s,]+/).filter(Boolean);
    if (ids.length) body.pipeline_ids = ids;
    if (inputs.rate_per_second.value.trim() !== '') {
      const r = Number(inputs.rate_per_second.value);
      if (!Number.isFinite(r)) errs.rate_per_second = 'enter a number';
      else body.rate_per_second = r;
    }
    setErrors(form, errs);
    if (Object.keys(errs).length) return;
    submit.disabled = true;
    try {
      const j = await post('/replay', body);
      remember(j.id);
      toast(`Replay ${j.id} started`);
      navigate('/ui/replay/' + encodeURIComponent(j.id));
    } catch (ex) {
      submit.disabled = false;
      if (ex instanceof ApiError && ex.code === 'validation_failed') setErrors(form, ex.fieldErrors());
      formError.replaceChildren(apiErrorBox(ex));
    }
  });
  return form;
}

// recentList shows the replays started in this tab with their state.
function recentList(signal) {
  const ids = recentIDs();
  const box = h('div', { id: 'replay-recent' });
  if (!ids.length) {
    box.append(h('div', { class: 'state state-empty' }, 'No replay started in this tab yet (the API keeps no list of replays: open one by its id, /ui/replay/<id>).'));
    return box;
  }
  Promise.allSettled(ids.map((id) => get('/replay/' + encodeURIComponent(id), null, { signal }))).then((rs) => {
    if (signal.aborted) return;
    mount(box, table([
      { title: 'Replay', cell: (r) => link('/ui/replay/' + encodeURIComponent(r.id), h('span', { class: 'mono' }, r.id)) },
      { title: 'State', cell: (r) => (r.job ? badge(r.job.state) : h('span', { class: 'muted' }, r.err)) },
      { title: 'Window (UTC)', cell: (r) => (r.job ? `${fmtTime(r.job.from)} → ${fmtTime(r.job.to)}` : '—') },
      { title: 'Queued', class: 'num', cell: (r) => (r.job ? fmtNum(r.job.deliveries_queued) : '—') },
      { title: 'Started', cell: (r) => (r.job ? ago(r.job.created_at) : '—') },
    ], rs.map((r, i) => ({ id: ids[i], job: r.status === 'fulfilled' ? r.value : null, err: r.status === 'rejected' ? r.reason.message : '' }))));
  });
  return box;
}

// watch polls replay id until it is final and its deliveries are done.
function watch(id, signal) {
  const body = h('div', { id: 'replay-body' }, h('p', { class: 'muted' }, 'Reading the replay…'));
  const box = card(null, h('div', { class: 'page-head' }, h('h1', null, 'Replay ', h('span', { class: 'mono' }, id))), body);
  box.id = 'replay-progress';
  const cancel = button('Cancel replay', async () => {
    if (!await confirmDialog(`Cancel replay ${id}? It stops reading; deliveries already queued still run.`, { confirm: 'Cancel replay' })) return;
    try {
      await del('/replay/' + encodeURIComponent(id));
      toast('Replay cancelled');
    } catch (e) {
      toast(e.message, 'bad');
    }
  }, { write: true, kind: 'danger', id: 'replay-cancel' });
  let finalPolls = 0;
  poll(async () => {
    let j;
    try {
      j = await get('/replay/' + encodeURIComponent(id), null, { signal });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      mount(body, apiErrorBox(e, 'replay-error'), e.status === 404 ? null : h('p', { class: 'hint' }, 'Trying again…'));
      return e.status === 404;
    }
    remember(j.id);
    const final = JOB_FINAL.includes(j.state);
    const done = j.deliveries_done;
    // A finished job has queued everything; its deliveries may still be
    // running: keep watching them (a while) until they are all done.
    const settled = final && (j.state !== 'done' || done === null || done >= j.deliveries_queued || ++finalPolls > 600);
    mount(body,
      h('div', { class: 'job-head' }, h('span', { id: 'replay-state', 'data-state': j.state }, badge(j.state)),
        h('span', { class: 'muted' }, `started ${ago(j.created_at)}, updated ${ago(j.updated_at)}`)),
      h('h3', null, 'Deliveries done'),
      done === null
        ? h('p', { class: 'muted', id: 'replay-done' }, 'not readable now (the execution logs do not answer)')
        : progressBar(done, j.deliveries_queued, 'replay-bar'),
      h('dl', { class: 'kv job-counts', id: 'replay-counts' },
        h('dt', null, 'Window (UTC)'), h('dd', null, `${fmtTime(j.from)} → ${fmtTime(j.to)}`),
        j.effective_from ? [h('dt', null, 'Effective from'), h('dd', null, fmtTime(j.effective_from) + ' (the oldest time the topics still hold)')] : null,
        h('dt', null, 'Trigger type'), h('dd', null, j.trigger_type || 'every'),
        h('dt', null, 'Pipelines'), h('dd', null, j.pipeline_ids.length ? j.pipeline_ids.map((p, i) => [i ? ', ' : '', link('/ui/pipelines/' + encodeURIComponent(p), h('span', { class: 'mono' }, p))]) : 'every active pipeline of each event\'s trigger type'),
        h('dt', null, 'Rate'), h('dd', null, j.rate_per_second ? `${j.rate_per_second} per second` : 'not paced'),
        h('dt', null, 'Events scanned'), h('dd', { id: 'replay-scanned' }, fmtNum(j.events_scanned)),
        h('dt', null, 'Deliveries queued'), h('dd', { id: 'replay-queued' }, fmtNum(j.deliveries_queued)),
        h('dt', null, 'Deliveries done'), h('dd', { id: 'replay-delivered' }, done === null ? '—' : fmtNum(done))),
      j.warnings.length ? h('ul', { class: 'notice replay-warnings', id: 'replay-warnings' }, j.warnings.map((w) => h('li', null, w))) : null,
      j.error ? apiErrorBox({ message: j.error }, 'replay-job-error') : null,
      final ? null : h('div', { class: 'form-actions' }, cancel),
      settled ? h('p', { class: 'hint', id: 'replay-settled' }, j.state === 'done' ? 'Finished: every replayed delivery is done.' : 'Finished.') : null);
    return settled;
  }, { signal, interval: 1000 });
  return box;
}

export async function render(root, params) {
  if (params.id) {
    mount(root, h('div', { class: 'crumbs' }, link('/ui/replay', '‹ Replay')), watch(params.id, params.signal),
      card('Replays started in this tab', recentList(params.signal)));
    return;
  }
  mount(root, h('div', { class: 'page-head' }, h('h1', null, 'Replay')),
    card('Start a replay', replayForm(params)),
    card('Replays started in this tab', recentList(params.signal)));
}
