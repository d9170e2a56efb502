// chart.js: small SVG charts, drawn with SVG elements and attributes (no
// inline styles): colours come from app.css classes (.series-0 … .series-3).

import { h, s } from './dom.js';

const W = 440, H = 190, PAD = { l: 48, r: 12, t: 12, b: 26 };

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function timeLabel(d) {
  return d.toISOString().slice(11, 16);
}

// lineChart draws series [{name, values: [number|null]}] over the shared x
// labels xs (Dates). opts: yMax (fixed top, e.g. 100 for percentages),
// minTop (the lowest top: ticks stay whole numbers), yFormat (tick text),
// title (accessible name).
export function lineChart(xs, series, { yMax, minTop = 4, yFormat = (v) => String(v), title = 'chart' } = {}) {
  const all = series.flatMap((se) => se.values.filter((v) => v !== null && v !== undefined));
  const top = yMax ?? niceMax(Math.max(minTop, ...all));
  const iw = W - PAD.l - PAD.r, ih = H - PAD.t - PAD.b;
  const x = (i) => PAD.l + (xs.length <= 1 ? iw / 2 : (i * iw) / (xs.length - 1));
  const y = (v) => PAD.t + ih - (Math.min(v, top) / top) * ih;
  const grid = [];
  for (let k = 0; k <= 4; k++) {
    const v = (top * k) / 4;
    grid.push(s('line', { class: 'grid-line', x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v) }));
    grid.push(s('text', { class: 'axis-label', x: PAD.l - 6, y: y(v) + 4, 'text-anchor': 'end' }, yFormat(v)));
  }
  const ticks = [];
  const step = Math.max(1, Math.ceil(xs.length / 6));
  for (let i = 0; i < xs.length; i += step) {
    ticks.push(s('text', { class: 'axis-label', x: x(i), y: H - 8, 'text-anchor': 'middle' }, timeLabel(xs[i])));
  }
  const paths = series.map((se, n) => {
    let d = '', pen = false;
    se.values.forEach((v, i) => {
      if (v === null || v === undefined) { pen = false; return; }
      d += `${pen ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    // A point with no neighbour draws no line: a dot shows it.
    const dots = se.values.map((v, i) => {
      if (v === null || v === undefined) return null;
      const prev = se.values[i - 1], next = se.values[i + 1];
      if ((prev !== null && prev !== undefined) || (next !== null && next !== undefined)) return null;
      return s('circle', { class: `dot series-fill-${n}`, cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 3 });
    });
    return [s('path', { class: `series series-${n}`, d: d || 'M0,0' }), ...dots.filter(Boolean)];
  });
  return h('figure', { class: 'chart' },
    s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title, class: 'chart-svg' },
      s('title', null, title), ...grid, ...ticks, ...paths.flat()),
    legend(series));
}

// barChart draws one series of values over labels (horizontal bars).
export function barChart(items, { format = (v) => String(v), title = 'chart' } = {}) {
  const top = niceMax(Math.max(0, ...items.map((i) => i.value)));
  const rowH = 22, lw = 170, bw = W - lw - 50;
  const height = Math.max(rowH, items.length * rowH) + 4;
  const rows = items.map((it, i) => [
    s('text', { class: 'axis-label', x: lw - 8, y: i * rowH + 15, 'text-anchor': 'end' }, it.label.length > 26 ? it.label.slice(0, 25) + '…' : it.label),
    s('rect', { class: 'bar series-fill-0', x: lw, y: i * rowH + 4, height: rowH - 8, width: Math.max(1, (it.value / top) * bw) }),
    s('text', { class: 'axis-label', x: lw + Math.max(1, (it.value / top) * bw) + 6, y: i * rowH + 15 }, format(it.value)),
  ]);
  return h('figure', { class: 'chart' },
    s('svg', { viewBox: `0 0 ${W} ${height}`, role: 'img', 'aria-label': title, class: 'chart-svg' }, s('title', null, title), ...rows.flat()));
}

function legend(series) {
  return h('figcaption', { class: 'legend' }, series.map((se, n) =>
    h('span', { class: 'legend-item' }, s('svg', { class: 'legend-swatch', viewBox: '0 0 10 10', width: 10, height: 10 },
      s('rect', { class: `series-fill-${n}`, width: 10, height: 10, rx: 2 })), se.name)));
}
