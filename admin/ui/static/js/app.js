// app.js: the router and the page frame (header, navigation, sign-out).
// Routes are paths under /ui/ (history API); the server answers index.html
// for any of them. Each page is a module in pages/ exporting
// render(root, params), loaded when first visited.

import { role, setUnauthorizedHandler, signedIn, signOut } from './api.js';
import { errorBox, h, loading, mount } from './dom.js';

// ROUTES: [pattern, page module, nav section]. :name captures one segment
// into params.name. The first match wins.
const ROUTES = [
  ['/ui/signin', 'signin', null],
  ['/ui/', 'dashboard', 'dashboard'],
  ['/ui/pipelines', 'pipelines', 'pipelines'],
  ['/ui/pipelines/new', 'pipeline_form', 'pipelines'],
  ['/ui/pipelines/:id', 'pipeline', 'pipelines'],
  ['/ui/pipelines/:id/edit', 'pipeline_form', 'pipelines'],
  ['/ui/pipelines/:id/test', 'pipeline_test', 'pipelines'],
  ['/ui/logs', 'logs', 'logs'],
  ['/ui/logs/:id', 'execution', 'logs'],
  ['/ui/dlq', 'dlq', 'dlq'],
  ['/ui/replay', 'replay', 'replay'],
  ['/ui/replay/:id', 'replay', 'replay'],
];

const NAV = [
  ['dashboard', 'Dashboard', '/ui/'],
  ['pipelines', 'Pipelines', '/ui/pipelines'],
  ['logs', 'Logs', '/ui/logs'],
  ['dlq', 'DLQ', '/ui/dlq'],
  ['replay', 'Replay', '/ui/replay'],
];

function match(path) {
  const segs = path.replace(/\/+$/, '').split('/');
  for (const [pattern, page, section] of ROUTES) {
    const ps = pattern.replace(/\/+$/, '').split('/');
    if (ps.length !== segs.length) continue;
    const params = {};
    let ok = true;
    for (let i = 0; i < ps.length && ok; i++) {
      if (ps[i].startsWith(':')) params[ps[i].slice(1)] = decodeURIComponent(segs[i]);
      else ok = ps[i] === segs[i];
    }
    if (ok) return { page, section, params };
  }
  return null;
}

// navigate goes to an in-app URL ("/ui/pipelines?page=2"); replace keeps
// the history entry (for filters).
export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  route();
}

// setQuery rewrites the current URL's query (filters, page) and renders again.
export function setQuery(params, { replace = true } = {}) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') u.set(k, v);
  const q = u.toString();
  navigate(location.pathname + (q ? '?' + q : ''), { replace });
}

let current = null; // {controller, cleanup}

function frame(section) {
  const ro = role() !== 'admin';
  return h('div', { class: 'layout' },
    h('header', { class: 'topbar' },
      h('a', { class: 'brand', href: '/ui/', 'data-route': '' }, h('img', { src: '/ui/favicon.svg', alt: '', width: 20, height: 20 }), 'webhookd'),
      h('nav', { class: 'nav', 'aria-label': 'main' }, NAV.map(([key, label, href]) =>
        h('a', { href, 'data-route': '', class: key === section ? 'active' : null, 'aria-current': key === section ? 'page' : null, id: 'nav-' + key }, label))),
      h('div', { class: 'session' },
        h('span', { class: ['badge', ro ? 'badge-muted' : 'badge-info'], id: 'session-role', title: ro ? 'read-only: actions that change something are disabled' : 'admin' }, ro ? 'read-only' : 'admin'),
        h('button', { type: 'button', class: 'btn btn-ghost', id: 'sign-out', onclick: () => { signOut(); navigate('/ui/signin'); } }, 'Sign out'))),
    h('main', { class: 'content', id: 'content' }));
}

async function route() {
  if (current) {
    current.controller.abort();
    if (typeof current.cleanup === 'function') current.cleanup();
    current = null;
  }
  document.querySelectorAll('.modal-overlay').forEach((m) => m.remove());
  const app = document.getElementById('app');
  let m = match(location.pathname);
  if (!signedIn() && (!m || m.page !== 'signin')) {
    const next = location.pathname + location.search;
    history.replaceState(null, '', '/ui/signin' + (next !== '/ui/' ? '?next=' + encodeURIComponent(next) : ''));
    m = match('/ui/signin');
  }
  const controller = new AbortController();
  current = { controller, cleanup: null };
  let root;
  if (m && m.page === 'signin') {
    root = h('main', { class: 'signin-page' });
    mount(app, root);
  } else {
    const f = frame(m ? m.section : null);
    mount(app, f);
    root = f.querySelector('#content');
  }
  if (!m) {
    mount(root, h('h1', null, 'Not found'), errorBox({ message: 'No page at ' + location.pathname }));
    return;
  }
  document.body.dataset.page = m.page;
  delete document.body.dataset.ready;
  mount(root, loading());
  const params = { ...m.params, query: new URLSearchParams(location.search), signal: controller.signal };
  try {
    const mod = await import(`./pages/${m.page}.js`);
    if (controller.signal.aborted) return;
    const cleanup = await mod.render(root, params);
    if (current && current.controller === controller) {
      current.cleanup = cleanup;
      // Browser tests wait for this: the page has its data.
      document.body.dataset.ready = m.page;
    } else if (typeof cleanup === 'function') cleanup();
  } catch (e) {
    if (e && e.name === 'AbortError') return;
    if (!controller.signal.aborted) mount(root, errorBox(e));
  }
}

// In-app links (data-route) change the URL without a reload.
document.addEventListener('click', (e) => {
  const a = e.target.closest && e.target.closest('a[data-route]');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  navigate(a.getAttribute('href'));
});
window.addEventListener('popstate', route);
setUnauthorizedHandler(() => {
  const next = location.pathname + location.search;
  history.replaceState(null, '', '/ui/signin?expired=1&next=' + encodeURIComponent(next));
  route();
});

route();
