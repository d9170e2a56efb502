// One pipeline: its settings, steps with per-step stats, stats over a
// window with charts; pause/resume/disable, edit, test, delete.
import { canWrite, del, get, put } from '../api.js';
import { navigate, setQuery } from '../app.js';
import { lineChart } from '../chart.js';
import { ago, badge, button, card, confirmDialog, empty, errorBox, fmtMs, fmtNum, fmtPct, fmtTime, h, kv, link, mount, pre, select, table, toast } from '../dom.js';
import { STATS_RANGES, statsWindow } from './common.js';

function stat(label, value, sub, id) {
  return h('div', { class: 'stat', id }, h('div', { class: 'stat-label' }, label), h('div', { class: 'stat-value' }, value), sub ? h('div', { class: 'stat-sub' }, sub) : null);
}

function retrySummary(rp) {
  if (!rp || Object.keys(rp).length === 0) return 'default';
  const parts = [];
  if (rp.max_attempts) parts.push(`${rp.max_attempts} attempts`);
  if (rp.backoff_type) parts.push(rp.backoff_type);
  if (rp.initial_delay_seconds) parts.push(`from ${rp.initial_delay_seconds} s`);
  if (rp.max_delay_seconds) parts.push(`max ${rp.max_delay_seconds} s`);
  return parts.join(', ') || 'default';
}

// setStatus PUTs {status} to the revision shown (412 when it changed meanwhile).
async function setStatus(p, status, params) {
  try {
    await put('/pipelines/' + encodeURIComponent(p.id), { status, revision: p.revision });
    toast(`${p.name}: ${status}`);
  } catch (e) {
    toast(e.message, 'bad');
  }
  if (!params.signal.aborted) navigate(location.pathname + location.search, { replace: true });
}

export async function render(root, params) {
  const id = params.id;
  const win = statsWindow(params.query.get('range'));
  const path = '/pipelines/' + encodeURIComponent(id);
  const interval = win.hours <= 1 ? '1m' : win.hours <= 24 ? '5m' : '1h';
  const [p, series, recent] = await Promise.all([
    get(path, { from: win.from, to: win.to }, { signal: params.signal }),
    get('/stats/timeseries', { from: win.from, to: win.to, interval, pipeline_id: id }, { signal: params.signal }).catch((e) => e),
    get('/logs/recent', { pipeline_id: id, limit: 10 }, { signal: params.signal }).catch((e) => e),
  ]);

  const actions = h('div', { class: 'actions', id: 'pipeline-actions' },
    button('Edit', () => navigate(`/ui/pipelines/${encodeURIComponent(id)}/edit`), { write: true, id: 'edit-pipeline' }),
    button('Test', () => navigate(`/ui/pipelines/${encodeURIComponent(id)}/test`), { write: true, id: 'test-pipeline' }),
    p.status === 'active' ? button('Pause', () => setStatus(p, 'paused', params), { write: true, id: 'pause-pipeline' }) : null,
    p.status !== 'active' ? button(p.status === 'paused' ? 'Resume' : 'Enable', () => setStatus(p, 'active', params), { write: true, kind: 'primary', id: 'resume-pipeline' }) : null,
    p.status !== 'disabled' ? button('Disable', () => setStatus(p, 'disabled', params), { write: true, id: 'disable-pipeline' }) : null,
    button('Delete', async () => {
      if (!(await confirmDialog(`Delete pipeline “${p.name}”? This cannot be undone: its deliveries stop, a later edit answers 404.`))) return;
      try {
        await del(path, { revision: p.revision });
        toast(`Deleted ${p.name}`);
        navigate('/ui/pipelines');
      } catch (e) {
        toast(e.message, 'bad');
      }
    }, { write: true, kind: 'danger', id: 'delete-pipeline' }));

  const s = p.stats;
  const statsBlock = s
    ? h('div', { class: 'cards', id: 'pipeline-stats' },
      stat('Executions', fmtNum(s.total_executions), win.label.toLowerCase()),
      stat('Success rate', s.successful + s.failed ? fmtPct(s.success_rate) : '—', `${fmtNum(s.successful)} ok · ${fmtNum(s.failed)} failed`),
      stat('Retrying now', fmtNum(s.in_retry)),
      stat('Dead letters', fmtNum(s.in_dlq), link('/ui/dlq?pipeline_id=' + encodeURIComponent(id), 'open DLQ')),
      stat('Latency p50', fmtMs(s.latency_ms.p50), `p95 ${fmtMs(s.latency_ms.p95)} · p99 ${fmtMs(s.latency_ms.p99)}`),
      stat('Time to success p95', fmtMs(s.time_to_success_ms.p95), `p50 ${fmtMs(s.time_to_success_ms.p50)}`))
    : h('div', { class: 'notice' }, 'Stats are unavailable right now (the analytics store does not answer).');

  let charts = null;
  if (series instanceof Error) charts = errorBox(series);
  else {
    const b = series.buckets;
    const xs = b.map((x) => new Date(x.start));
    charts = h('div', { class: 'two-col' },
      card('Success rate', lineChart(xs, [{ name: 'success rate %', values: b.map((x) => (x.successful + x.failed ? (100 * x.successful) / (x.successful + x.failed) : null)) }], { yMax: 100, yFormat: (v) => v + '%', title: 'success rate' })),
      card('Attempt latency', lineChart(xs, ['p50', 'p95', 'p99'].map((k) => ({ name: k, values: b.map((x) => (x.executions || x.retried ? x['latency_ms_' + k] : null)) })), { yFormat: fmtMs, minTop: 100, title: 'latency' })));
  }

  const steps = table([
    { title: '#', class: 'num', cell: (st) => st.order },
    { title: 'Step', cell: (st) => [h('div', null, st.name), h('div', { class: 'hint mono' }, st.id)] },
    { title: 'Request', class: 'wrap', cell: (st) => h('span', { class: 'mono' }, `${st.method} ${st.url}`) },
    { title: 'Timeout', class: 'num', cell: (st) => `${st.timeout_seconds} s` },
    { title: 'Retries', cell: (st) => retrySummary(st.retry_policy) },
    { title: 'Signing', cell: (st) => [st.signature_mode, st.has_signing_key ? ' 🔑' : '', st.has_previous_signing_key ? h('div', { class: 'hint' }, 'previous key until ' + fmtTime(st.previous_signing_key_expires_at)) : null] },
    { title: 'Stop on failure', cell: (st) => (st.stop_on_failure ? 'yes' : 'no') },
    { title: 'Executions', class: 'num', cell: (st) => (st.stats ? fmtNum(st.stats.executions) : '—') },
    { title: 'Success', class: 'num', cell: (st) => (st.stats && st.stats.executions ? fmtPct((100 * st.stats.successful) / st.stats.executions) : '—') },
    { title: 'Avg', class: 'num', cell: (st) => (st.stats && st.stats.executions ? fmtMs(st.stats.avg_latency_ms) : '—') },
    { title: 'p50 / p95 / p99', class: 'num', cell: (st) => (st.stats && st.stats.executions ? `${fmtMs(st.stats.latency_ms.p50)} / ${fmtMs(st.stats.latency_ms.p95)} / ${fmtMs(st.stats.latency_ms.p99)}` : '—') },
  ], p.steps, { rowAttrs: (st) => ({ dataset: { step: st.id } }) });

  mount(root,
    h('div', { class: 'page-head' },
      h('h1', null, h('span', { id: 'pipeline-name' }, p.name), ' ', h('span', { id: 'pipeline-status' }, badge(p.status))),
      actions),
    p.disabled_reason ? h('div', { class: 'notice', id: 'disabled-reason' }, `Auto-disabled ${ago(p.disabled_at)}: ${p.disabled_reason}`) : null,
    !canWrite() ? h('p', { class: 'hint' }, 'Read-only token: actions are disabled.') : null,
    h('div', { class: 'filters' },
      h('label', null, 'Stats over', select({ id: 'pipeline-range', onchange: (e) => setQuery({ range: e.target.value }) }, STATS_RANGES.map(([k, l]) => [k, l]), win.key)),
      link('/ui/logs?pipeline_id=' + encodeURIComponent(id), 'Execution logs →'),
      link('/ui/dlq?pipeline_id=' + encodeURIComponent(id), 'Dead letters →')),
    statsBlock,
    charts,
    card('Steps', h('div', { class: 'table-wrap', id: 'pipeline-steps' }, steps)),
    card('Recent executions', h('div', { id: 'pipeline-recent' }, recent instanceof Error ? errorBox(recent) : table([
      { title: 'Started', cell: (e) => h('span', { title: e.started_at }, fmtTime(e.started_at)) },
      { title: 'Execution', cell: (e) => link('/ui/logs/' + encodeURIComponent(e.id), e.id) },
      { title: 'Trigger id', cell: (e) => h('span', { class: 'mono' }, e.trigger_id) },
      { title: 'Status', cell: (e) => badge(e.status) },
      { title: 'Steps', cell: (e) => e.steps.map((st) => badge(`${st.step_order}: ${st.http_status || st.status}`, st.status === 'success' ? 'ok' : 'bad')) },
      { title: 'Duration', class: 'num', cell: (e) => (e.completed_at ? fmtMs(e.duration_ms) : '—') },
    ], recent.logs, { emptyText: 'No executions yet.' })),
    link('/ui/logs?pipeline_id=' + encodeURIComponent(id), 'All of its executions →')),
    h('div', { class: 'two-col' },
      card('Settings', kv([
        ['Id', h('span', { class: 'mono' }, p.id)],
        ['Trigger', p.trigger_type],
        ['Description', p.description || '—'],
        ['Revision', String(p.revision)],
        ['Created', fmtTime(p.created_at)],
        ['Updated', fmtTime(p.updated_at)],
        ['Last triggered', p.last_triggered ? `${fmtTime(p.last_triggered)} (${ago(p.last_triggered)})` : 'never'],
        ['Ordering', p.ordering || 'none'],
        ['Rate limit', p.rate_limit_per_second ? `${p.rate_limit_per_second}/s` : 'none'],
        ['Failover URL', p.failover_url ? h('span', { class: 'mono' }, p.failover_url) : 'none'],
        p.failover_retry_policy ? ['Failover retries', retrySummary(p.failover_retry_policy)] : null,
        ['Auto-disable after', p.auto_disable_after_seconds === undefined ? 'default' : p.auto_disable_after_seconds === 0 ? 'never' : `${p.auto_disable_after_seconds} s`],
        p.disabled_at ? ['Disabled at', fmtTime(p.disabled_at)] : null,
        p.reenabled_at ? ['Re-enabled at', fmtTime(p.reenabled_at)] : null,
      ])),
      card('Filter', p.filter ? pre(p.filter) : empty('No filter: every event of the trigger type.'))));
}
