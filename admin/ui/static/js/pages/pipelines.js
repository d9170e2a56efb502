// Pipelines: the list, with filters, pagination and per-pipeline stats.
import { get } from '../api.js';
import { setQuery } from '../app.js';
import { ago, badge, button, fmtMs, fmtNum, fmtPct, h, link, mount, pagination, select, table } from '../dom.js';
import { navigate } from '../app.js';
import { STATS_RANGES, STATUSES, TRIGGER_TYPES, statsWindow } from './common.js';

export async function render(root, params) {
  const q = params.query;
  const filters = {
    status: q.get('status') || '',
    trigger_type: q.get('trigger_type') || '',
    pipeline_id: q.get('pipeline_id') || '',
    range: q.get('range') || '24h',
    page: q.get('page') || '1',
    limit: q.get('limit') || '20',
  };
  const win = statsWindow(filters.range);
  const data = await get('/pipelines', {
    status: filters.status, trigger_type: filters.trigger_type, pipeline_id: filters.pipeline_id,
    page: filters.page, limit: filters.limit, from: win.from, to: win.to,
  }, { signal: params.signal });

  const change = (k) => (e) => setQuery({ ...filters, [k]: e.target.value, page: '' });
  const idInput = h('input', { type: 'search', id: 'filter-pipeline-id', placeholder: 'pipe_…', value: filters.pipeline_id, onchange: change('pipeline_id') });
  mount(root,
    h('div', { class: 'page-head' },
      h('h1', null, 'Pipelines'),
      h('div', { class: 'actions' }, button('New pipeline', () => navigate('/ui/pipelines/new'), { kind: 'primary', write: true, id: 'new-pipeline' }))),
    h('form', { class: 'filters', id: 'pipeline-filters', onsubmit: (e) => { e.preventDefault(); setQuery({ ...filters, pipeline_id: idInput.value, page: '' }); } },
      h('label', null, 'Status', select({ id: 'filter-status', onchange: change('status') }, [['', 'any'], ...STATUSES], filters.status)),
      h('label', null, 'Trigger', select({ id: 'filter-trigger', onchange: change('trigger_type') }, [['', 'any'], ...TRIGGER_TYPES], filters.trigger_type)),
      h('label', null, 'Pipeline id', idInput),
      h('label', null, 'Stats over', select({ id: 'filter-range', onchange: change('range') }, STATS_RANGES.map(([k, l]) => [k, l]), win.key))),
    h('div', { class: 'table-wrap', id: 'pipeline-list' }, table([
      { title: 'Name', cell: (p) => [link('/ui/pipelines/' + encodeURIComponent(p.id), p.name), h('div', { class: 'hint mono' }, p.id)] },
      { title: 'Trigger', cell: (p) => p.trigger_type },
      { title: 'Status', cell: (p) => badge(p.status) },
      { title: 'Steps', class: 'num', cell: (p) => fmtNum(p.steps_count) },
      { title: 'Executions', class: 'num', cell: (p) => fmtNum(p.stats.total_executions) },
      { title: 'Success', class: 'num', cell: (p) => (p.stats.successful + p.stats.failed > 0 ? fmtPct(p.stats.success_rate) : '—') },
      { title: 'Failed', class: 'num', cell: (p) => fmtNum(p.stats.failed) },
      { title: 'p50 / p95 / p99', class: 'num', cell: (p) => (p.stats.total_executions ? `${fmtMs(p.stats.latency_ms.p50)} / ${fmtMs(p.stats.latency_ms.p95)} / ${fmtMs(p.stats.latency_ms.p99)}` : '—') },
      { title: 'Last triggered', cell: (p) => h('span', { title: p.last_triggered || '' }, ago(p.last_triggered)) },
    ], data.pipelines, {
      emptyText: filters.status || filters.trigger_type || filters.pipeline_id ? 'No pipeline matches these filters.' : 'No pipelines yet: create one.',
      rowAttrs: (p) => ({ dataset: { id: p.id } }),
    })),
    pagination(data.pagination, (p) => setQuery({ ...filters, page: String(p) }, { replace: false })),
    h('p', { class: 'hint' }, `Stats: ${win.label.toLowerCase()} (${win.from.slice(0, 16).replace('T', ' ')} – ${win.to.slice(0, 16).replace('T', ' ')} UTC).`));
}
