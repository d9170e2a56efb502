// Test a pipeline on sample data: each step is called once, for real (no
// retries, nothing logged), and its request and response are shown.
import { get, post } from '../api.js';
import { badge, button, card, empty, errorBox, field, fmtMs, h, kv, link, loading, mount, pre, table } from '../dom.js';
import { SAMPLE_DATA } from './common.js';

function headersTable(hs) {
  const rows = Object.entries(hs || {});
  if (!rows.length) return h('span', { class: 'muted' }, 'no headers');
  return table([{ title: 'Header', cell: (r) => h('span', { class: 'mono' }, r[0]) }, { title: 'Value', class: 'wrap', cell: (r) => h('span', { class: 'mono' }, r[1]) }], rows);
}

function stepResult(s) {
  return h('section', { class: 'card step-result', dataset: { order: String(s.step_order) } },
    h('div', { class: 'step-card-head' },
      h('h2', null, `${s.step_order}. ${s.step_name}`),
      h('div', { class: 'actions' }, badge(s.status), h('span', { class: 'mono' }, `HTTP ${s.http_status || '—'}`), h('span', null, fmtMs(s.latency_ms)))),
    s.error ? h('div', { class: 'state state-error step-error' }, s.error) : null,
    h('div', { class: 'two-col' },
      h('div', null,
        h('h3', null, 'Request'),
        s.request.url ? h('div', { class: 'mono request-line' }, `${s.request.method} ${s.request.url}`) : h('div', { class: 'muted' }, 'not built'),
        headersTable(s.request.headers),
        s.request.body === null || s.request.body === undefined ? h('div', { class: 'muted' }, 'no body') : pre(s.request.body, 'request-body')),
      h('div', null,
        h('h3', null, 'Response'),
        kv([['Status', String(s.response.status || '—')]]),
        s.response.body ? pre(s.response.body, 'response-body') : h('div', { class: 'muted' }, 'empty body'))));
}

export async function render(root, params) {
  const id = params.id;
  const p = await get('/pipelines/' + encodeURIComponent(id), undefined, { signal: params.signal });
  const sample = SAMPLE_DATA[p.trigger_type] || {};
  const ta = h('textarea', { id: 'test-data', rows: 8, spellcheck: 'false', value: JSON.stringify(sample, null, 2) });
  const out = h('div', { id: 'test-result' });
  let dataErr = null;
  const form = h('form', {
    id: 'test-form', novalidate: true,
    onsubmit: async (e) => {
      e.preventDefault();
      let data;
      try {
        data = ta.value.trim() ? JSON.parse(ta.value) : null;
        if (data !== null && (typeof data !== 'object' || Array.isArray(data))) throw new Error('test data is a JSON object');
      } catch (ex) {
        dataErr = 'Not valid: ' + ex.message;
        drawForm();
        return;
      }
      dataErr = null;
      drawForm();
      mount(out, loading('Calling the steps…'));
      try {
        const r = await post('/test/pipeline/' + encodeURIComponent(id), { test_data: data }, { signal: params.signal });
        mount(out,
          h('div', { class: 'page-head' }, h('h2', null, 'Result ', h('span', { id: 'test-status' }, badge(r.status))), h('span', { class: 'hint mono' }, r.execution_id)),
          r.filtered ? empty('The pipeline’s filter rejects this event: no call was made (a real event like it would spawn no delivery).') : null,
          r.steps.map(stepResult));
      } catch (ex) {
        if (ex.name !== 'AbortError') mount(out, errorBox(ex));
      }
    },
  });
  function drawForm() {
    mount(form,
      field('Test data (the event’s data)', ta, { error: dataErr || undefined, hint: 'Each step is called once, for real: no retries, nothing logged or written to Kafka.' }),
      h('div', { class: 'form-actions' }, button('Run test', null, { type: 'submit', kind: 'primary', write: true, id: 'run-test' })));
  }
  drawForm();
  mount(root,
    h('div', { class: 'page-head' }, h('h1', null, `Test ${p.name}`), link('/ui/pipelines/' + encodeURIComponent(id), '← back to the pipeline')),
    card(null, form),
    out);
}
