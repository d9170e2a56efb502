// One execution: its delivery, pipeline and trigger, and each step's
// latest attempt — status, attempt count, primary or failover URL, HTTP
// status, latency, error and the (truncated) response body, shown as text.
//
// The API lists executions (GET /logs/recent) but has no route for one, so
// the page looks it up in the newest executions of its pipeline
// (?pipeline_id=, which the logs page's links carry), up to MAX_SCAN.
import { get } from '../api.js';
import { badge, card, empty, fmtMs, fmtTime, h, kv, link, loading, mount, table } from '../dom.js';
import { apiErrorBox } from '../ops.js';

const PAGE = 200;
const MAX_SCAN = 5000;

// find looks the execution up; it also returns the other executions of
// the same delivery it saw (a DLQ retry is a new execution of a delivery).
async function find(id, pipelineID, signal, onProgress) {
  let found = null;
  const seen = [];
  for (let page = 1; page * PAGE <= MAX_SCAN; page++) {
    const data = await get('/logs/recent', { pipeline_id: pipelineID, limit: PAGE, page }, { signal });
    seen.push(...data.logs);
    found = found || data.logs.find((l) => l.id === id);
    onProgress(seen.length, data.pagination.total);
    if (found || page * PAGE >= data.pagination.total) break;
  }
  const siblings = found ? seen.filter((l) => l.delivery_id === found.delivery_id && l.id !== found.id) : [];
  return { found, siblings, scanned: seen.length };
}

// replayOf: the replay an execution belongs to (its id is
// exec_<replay id>_…), or ''.
function replayOf(id) {
  const m = /^exec_(rpl_[0-9a-z]+)_/.exec(id);
  return m ? m[1] : '';
}

function stepCard(s) {
  const key = 'step-' + s.step_order;
  return h('section', { class: ['card', 'attempt', 'attempt-' + s.status], id: key },
    h('div', { class: 'attempt-head' },
      h('h2', null, `Step ${s.step_order}`, s.step_name ? ': ' + s.step_name : ''),
      h('div', { class: 'actions' },
        badge(s.status, s.status === 'success' ? 'ok' : 'bad'),
        s.failover ? badge('failover', 'warn') : badge('primary', 'muted'))),
    kv([
      ['Step id', h('span', { class: 'mono' }, s.step_id)],
      ['Attempt', h('span', { id: key + '-attempt' }, `${s.attempts} (the latest; ${s.attempts} attempt${s.attempts === 1 ? '' : 's'} in this execution)`)],
      ['Sent to', s.failover ? "the pipeline's failover URL" : "the step's URL"],
      ['HTTP status', h('span', { id: key + '-http' }, s.http_status ? String(s.http_status) : 'no answer')],
      ['Latency', fmtMs(s.latency_ms)],
      s.error ? ['Error', h('span', { class: 'attempt-error', id: key + '-error' }, s.error)] : null,
    ]),
    h('h3', null, 'Response body ', h('span', { class: 'hint' }, '(as received, truncated to the log limit; shown as text)')),
    s.response_body
      ? h('pre', { class: 'code response-body', id: key + '-body' }, s.response_body)
      : h('p', { class: 'muted', id: key + '-body' }, 'empty'));
}

export async function render(root, params) {
  const id = params.id;
  const pipelineID = params.query.get('pipeline_id') || '';
  const back = link('/ui/logs' + (pipelineID ? '?pipeline_id=' + encodeURIComponent(pipelineID) : ''), '‹ Logs');
  const status = loading('Looking up the execution…');
  mount(root, h('div', { class: 'crumbs' }, back), h('h1', null, 'Execution ', h('span', { class: 'mono' }, id)), status);

  let r;
  try {
    r = await find(id, pipelineID, params.signal, (n, total) => { status.lastChild.textContent = `Looking up the execution… (${n} of ${total} read)`; });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    mount(root, h('div', { class: 'crumbs' }, back), h('h1', null, 'Execution'), apiErrorBox(e, 'execution-error'));
    return;
  }
  if (!r.found) {
    mount(root, h('div', { class: 'crumbs' }, back), h('h1', null, 'Execution ', h('span', { class: 'mono' }, id)),
      h('div', { class: 'state state-empty', id: 'execution-missing' },
        `Execution ${id} is not among the newest ${r.scanned} executions${pipelineID ? ' of pipeline ' + pipelineID : ''}: it may have expired, or it is not logged yet.`));
    return;
  }
  const ex = r.found;
  const summary = card(null,
    h('div', { class: 'page-head' }, h('h1', null, 'Execution ', h('span', { class: 'mono' }, ex.id)), h('span', { id: 'execution-status' }, badge(ex.status))),
    kv([
      ['Pipeline', h('span', null, link('/ui/pipelines/' + encodeURIComponent(ex.pipeline_id), ex.pipeline_name || ex.pipeline_id), ' ', h('span', { class: 'muted mono' }, ex.pipeline_id))],
      ['Trigger', h('span', null, ex.trigger_type, ' ', h('span', { class: 'mono' }, ex.trigger_id))],
      ['Event id', h('span', { class: 'mono' }, ex.event_id || '—')],
      ['Delivery id', h('span', { class: 'mono', id: 'execution-delivery' }, ex.delivery_id)],
      ['Started', fmtTime(ex.started_at) + ' UTC'],
      ['Completed', ex.completed_at ? fmtTime(ex.completed_at) + ' UTC' : 'not yet (retrying)'],
      ['Duration', ex.completed_at ? fmtMs(ex.duration_ms) : '—'],
      ['Replay', replayOf(ex.id) ? link('/ui/replay/' + encodeURIComponent(replayOf(ex.id)), h('span', { class: 'mono' }, replayOf(ex.id))) : null],
    ].filter((p) => p[1] !== null)));
  const steps = ex.steps.length
    ? h('div', { id: 'execution-steps' }, ex.steps.map(stepCard))
    : empty('No attempt logged yet for this execution.');
  const others = r.siblings.length
    ? card('Other executions of this delivery', h('div', { id: 'execution-siblings' }, table([
      { title: 'Execution', cell: (l) => link('/ui/logs/' + encodeURIComponent(l.id) + '?pipeline_id=' + encodeURIComponent(l.pipeline_id), h('span', { class: 'mono' }, l.id)) },
      { title: 'Status', cell: (l) => badge(l.status) },
      { title: 'Started', cell: (l) => fmtTime(l.started_at) },
    ], r.siblings)))
    : null;
  const dlq = ex.status === 'failed' || ex.status === 'partial'
    ? h('p', { class: 'hint' }, 'A step that failed for good leaves an item in the ',
      link('/ui/dlq?pipeline_id=' + encodeURIComponent(ex.pipeline_id), 'DLQ'), ', where it can be retried.')
    : null;
  mount(root, h('div', { class: 'crumbs' }, back), summary, dlq,
    h('h2', null, 'Steps ', h('span', { class: 'hint' }, 'each step\'s latest attempt; failover marks an attempt sent to the failover URL')),
    steps, others);
}
