// One execution (GET /logs/executions/:id): its delivery, pipeline and
// trigger, each step's outcome, and every attempt in the order made — step,
// attempt number, tier or failover, status, HTTP status, latency, error,
// request URL and body, and the (truncated) response body, shown as text.
import { ApiError, get } from '../api.js';
import { badge, card, empty, fmtMs, fmtTime, h, kv, link, mount, table } from '../dom.js';
import { apiErrorBox } from '../ops.js';

// replayOf: the replay an execution belongs to (its id is
// exec_<replay id>_…), or ''.
function replayOf(id) {
  const m = /^exec_(rpl_[0-9a-z]+)_/.exec(id);
  return m ? m[1] : '';
}

// bodyBlock shows a logged body as text in a <pre> (never as HTML).
function bodyBlock(title, text, id) {
  return [
    h('h3', null, title),
    text ? h('pre', { class: 'code response-body', id }, text) : h('p', { class: 'muted', id }, 'empty'),
  ];
}

// route: where an attempt went.
function route(a) {
  if (a.failover) return badge('failover', 'warn');
  return a.tier ? badge('retry tier ' + a.tier, 'info') : badge('first attempt', 'muted');
}

function attemptCard(a, i) {
  const key = 'attempt-' + (i + 1);
  return h('section', { class: ['card', 'attempt', 'attempt-' + a.status], id: key, dataset: { step: String(a.step_order), attempt: String(a.attempt) } },
    h('div', { class: 'attempt-head' },
      h('h2', null, `Step ${a.step_order}`, a.step_name ? ': ' + a.step_name : '', h('span', { class: 'muted' }, ` · attempt ${a.attempt + 1}`)),
      h('div', { class: 'actions' }, h('span', { id: key + '-route' }, route(a)), badge(a.status, a.status === 'success' ? 'ok' : 'bad'))),
    kv([
      ['Started', fmtTime(a.started_at) + ' UTC'],
      ['Request', h('span', { class: 'mono attempt-url', id: key + '-url' }, a.request_url || '—')],
      ['HTTP status', h('span', { id: key + '-http' }, a.http_status ? String(a.http_status) : 'no answer')],
      ['Latency', fmtMs(a.latency_ms)],
      a.error ? ['Error', h('span', { class: 'attempt-error', id: key + '-error' }, a.error)] : null,
    ]),
    bodyBlock('Request body', a.request_body, key + '-request'),
    bodyBlock('Response body', a.response_body, key + '-body'));
}

export async function render(root, params) {
  const id = params.id;
  const pipelineID = params.query.get('pipeline_id') || '';
  const back = h('div', { class: 'crumbs' }, link('/ui/logs' + (pipelineID ? '?pipeline_id=' + encodeURIComponent(pipelineID) : ''), '‹ Logs'));
  let ex;
  try {
    ex = await get('/logs/executions/' + encodeURIComponent(id), null, { signal: params.signal });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    mount(root, back, h('h1', null, 'Execution ', h('span', { class: 'mono' }, id)),
      e instanceof ApiError && e.status === 404
        ? h('div', { class: 'state state-empty', id: 'execution-missing' }, `Execution ${id} is not in the logs: it may have expired, or it is not logged yet.`)
        : apiErrorBox(e, 'execution-error'));
    return;
  }
  const replay = replayOf(ex.id);
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
      replay ? ['Replay', link('/ui/replay/' + encodeURIComponent(replay), h('span', { class: 'mono' }, replay))] : null,
    ]),
    ex.status === 'failed' || ex.status === 'partial'
      ? h('p', { class: 'hint' }, 'A step that failed for good leaves an item in the ',
        link('/ui/dlq?pipeline_id=' + encodeURIComponent(ex.pipeline_id), 'DLQ'), ', where it can be retried.')
      : null);
  const steps = h('div', { class: 'table-wrap', id: 'execution-steps' }, table([
    { title: 'Step', cell: (s) => h('span', null, `${s.step_order}`, s.step_name ? ': ' + s.step_name : '') },
    { title: 'Outcome', cell: (s) => badge(s.status, s.status === 'success' ? 'ok' : 'bad') },
    { title: 'Attempts', class: 'num', cell: (s) => String(s.attempts) },
    { title: 'Last HTTP status', class: 'num', cell: (s) => (s.http_status ? String(s.http_status) : 'no answer') },
    { title: 'Last latency', class: 'num', cell: (s) => fmtMs(s.latency_ms) },
    { title: 'Via', cell: (s) => (s.failover ? badge('failover', 'warn') : 'its URL') },
  ], ex.steps, { emptyText: 'No attempt logged yet for this execution.', rowAttrs: (s) => ({ id: 'step-' + s.step_order }) }));
  const attempts = ex.attempts.length
    ? h('div', { id: 'execution-attempts' }, ex.attempts.map(attemptCard))
    : empty('No attempt logged yet for this execution.');
  mount(root, back, summary,
    h('h2', null, 'Steps'), steps,
    h('h2', { class: 'section-title' }, `Attempts (${ex.attempts.length}) `, h('span', { class: 'hint' }, 'oldest first; URLs and bodies as logged, secrets redacted, bodies truncated to the log limit, shown as text')),
    attempts);
}
