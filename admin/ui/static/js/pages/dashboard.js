// Dashboard: summary, success rate and latency over time, queue depths,
// top errors, auto-disabled pipelines.
import { get } from '../api.js';
import { setQuery } from '../app.js';
import { barChart, lineChart } from '../chart.js';
import { ago, badge, card, empty, errorBox, fmtMs, fmtNum, fmtPct, h, link, loading, mount, select, table } from '../dom.js';

// RANGES: the chart's window and its bucket width.
const RANGES = {
  '1h': { label: 'Last hour', hours: 1, interval: '1m' },
  '6h': { label: 'Last 6 hours', hours: 6, interval: '5m' },
  '24h': { label: 'Last 24 hours', hours: 24, interval: '5m' },
  '7d': { label: 'Last 7 days', hours: 168, interval: '1h' },
};

function stat(label, value, sub, id) {
  return h('div', { class: 'stat', id }, h('div', { class: 'stat-label' }, label), h('div', { class: 'stat-value' }, value), sub ? h('div', { class: 'stat-sub' }, sub) : null);
}

// REFRESH: the dashboard reads its data again this often while shown.
const REFRESH_MS = 30000;

export async function render(root, params) {
  const rangeKey = RANGES[params.query.get('range')] ? params.query.get('range') : '6h';
  const range = RANGES[rangeKey];
  const sig = { signal: params.signal };
  const updated = h('span', { class: 'hint', id: 'dashboard-updated' });
  const head = h('div', { class: 'page-head' }, h('h1', null, 'Dashboard'),
    h('div', { class: 'actions' }, updated,
      select({ id: 'dashboard-range', 'aria-label': 'time range', onchange: (e) => setQuery({ range: e.target.value }) },
        Object.entries(RANGES).map(([k, r]) => [k, r.label]), rangeKey)));
  const shown = { summary: h('div', null, loading()), charts: h('div'), bottom: h('div') };
  mount(root, head, shown.summary, shown.charts, shown.bottom);

  // refresh reads everything, then swaps the sections at once (no flash).
  async function refresh() {
    const to = new Date();
    // Whole minutes: the aggregates are per minute.
    to.setUTCSeconds(0, 0);
    to.setUTCMinutes(to.getUTCMinutes() + 1);
    const from = new Date(to.getTime() - range.hours * 3600e3);
    const win = { from: from.toISOString(), to: to.toISOString() };
    const [stats, series, disabled, events] = await Promise.allSettled([
      get('/stats', win, sig),
      get('/stats/timeseries', { ...win, interval: range.interval }, sig),
      get('/pipelines', { status: 'disabled', limit: 50 }, sig),
      get('/operator-events', { type: 'pipeline_auto_disabled', limit: 10 }, sig),
    ]);
    if (params.signal.aborted) return;
    const summary = h('div'), charts = h('div', { class: 'three-col' }), bottom = h('div', { class: 'two-col' });
    fill({ summary, charts, bottom }, { stats, series, disabled, events }, range);
    for (const [k, el] of Object.entries({ summary, charts, bottom })) { shown[k].replaceWith(el); shown[k] = el; }
    updated.textContent = `Updated ${new Date().toISOString().slice(11, 19)} UTC · every ${REFRESH_MS / 1000} s`;
  }
  await refresh();
  const timer = setInterval(() => { if (!document.hidden) refresh().catch(() => {}); }, REFRESH_MS);
  return () => clearInterval(timer);
}

function fill({ summary, charts, bottom }, { stats, series, disabled, events }, range) {
  if (stats.status === 'fulfilled') {
    const st = stats.value, s = st.summary, q = st.queues;
    mount(summary,
      h('div', { class: 'cards', id: 'summary' },
        stat('Pipelines', fmtNum(s.total_pipelines), `${fmtNum(s.active_pipelines)} active`, 'stat-pipelines'),
        stat('Executions', fmtNum(s.total_executions_today), range.label.toLowerCase(), 'stat-executions'),
        stat('Success rate', fmtPct(s.success_rate), 'of finished executions', 'stat-success'),
        stat('Latency p50 / p95 / p99', `${fmtMs(s.latency_ms.p50)}`, `p95 ${fmtMs(s.latency_ms.p95)} · p99 ${fmtMs(s.latency_ms.p99)}`, 'stat-latency'),
        stat('Time to success p95', fmtMs(s.time_to_success_ms.p95), 'first attempt → success', 'stat-tts')),
      h('div', { class: 'cards', id: 'queues' },
        stat('Primary queue', fmtNum(q.primary), 'consumer lag'),
        stat('Retry queues', fmtNum(q.retry), 'consumer lag, all tiers'),
        stat('Failover queue', fmtNum(q.failover), 'consumer lag'),
        stat('Dead letters', fmtNum(q.dlq), h('a', { href: '/ui/dlq', 'data-route': '' }, 'open the DLQ'), 'stat-dlq')));
  } else {
    mount(summary, errorBox(stats.reason));
  }

  if (series.status === 'fulfilled') {
    const b = series.value.buckets;
    const xs = b.map((x) => new Date(x.start));
    const rate = b.map((x) => (x.successful + x.failed > 0 ? (100 * x.successful) / (x.successful + x.failed) : null));
    mount(charts,
      card('Success rate', lineChart(xs, [{ name: 'success rate %', values: rate }], { yMax: 100, yFormat: (v) => v + '%', title: 'success rate over time' })),
      card('Attempt latency', lineChart(xs, [
        { name: 'p50', values: b.map((x) => (x.executions || x.retried ? x.latency_ms_p50 : null)) },
        { name: 'p95', values: b.map((x) => (x.executions || x.retried ? x.latency_ms_p95 : null)) },
        { name: 'p99', values: b.map((x) => (x.executions || x.retried ? x.latency_ms_p99 : null)) },
      ], { yFormat: (v) => fmtMs(v), minTop: 100, title: 'latency p50, p95, p99 over time' })),
      card('Executions', lineChart(xs, [
        { name: 'successful', values: b.map((x) => x.successful) },
        { name: 'failed', values: b.map((x) => x.failed) },
        { name: 'retried', values: b.map((x) => x.retried) },
        { name: 'to DLQ', values: b.map((x) => x.dlq) },
      ], { title: 'executions over time' })));
    charts.lastChild.id = 'chart-executions';
  } else {
    mount(charts, errorBox(series.reason));
  }

  const topErrors = stats.status === 'fulfilled'
    ? (stats.value.top_errors.length
      ? barChart(stats.value.top_errors.map((e) => ({ label: e.error, value: e.count })), { format: fmtNum, title: 'top errors' })
      : empty('No errors in this window.'))
    : errorBox(stats.reason);

  let auto;
  if (disabled.status === 'fulfilled') {
    auto = table([
      { title: 'Pipeline', cell: (p) => link('/ui/pipelines/' + encodeURIComponent(p.id), p.name) },
      { title: 'Status', cell: (p) => badge(p.status) },
      { title: 'Trigger', cell: (p) => p.trigger_type },
      { title: 'Last triggered', cell: (p) => ago(p.last_triggered) },
    ], disabled.value.pipelines, { emptyText: 'No disabled pipelines.' });
  } else {
    auto = errorBox(disabled.reason);
  }
  let evs = null;
  if (events.status === 'fulfilled' && events.value.events.length) {
    evs = h('div', null, h('h3', null, 'Recent auto-disable events'), table([
      { title: 'When', cell: (e) => ago(e.at) },
      { title: 'Pipeline', cell: (e) => link('/ui/pipelines/' + encodeURIComponent(e.pipeline_id), e.pipeline_name || e.pipeline_id) },
      { title: 'Why', class: 'wrap', cell: (e) => e.message },
    ], events.value.events));
  }
  const byTrigger = stats.status === 'fulfilled'
    ? table([
      { title: 'Trigger', cell: (r) => r[0] },
      { title: 'Executions', class: 'num', cell: (r) => fmtNum(r[1].executions) },
      { title: 'Success', class: 'num', cell: (r) => fmtPct(r[1].success_rate) },
      { title: 'p50 / p95 / p99', class: 'num', cell: (r) => `${fmtMs(r[1].latency_ms.p50)} / ${fmtMs(r[1].latency_ms.p95)} / ${fmtMs(r[1].latency_ms.p99)}` },
    ], Object.entries(stats.value.by_trigger_type).sort((a, b) => b[1].executions - a[1].executions), { emptyText: 'No executions in this window.' })
    : null;
  mount(bottom,
    h('div', { id: 'top-errors' }, card('Top errors', topErrors), byTrigger ? h('div', { id: 'by-trigger' }, card('By trigger type', byTrigger)) : null),
    h('div', { id: 'auto-disabled' }, card('Disabled pipelines', auto, evs)));
}
