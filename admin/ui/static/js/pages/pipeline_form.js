// Create or edit a pipeline: a form (the API's validation errors shown at
// their fields) or the JSON document itself.
import { ApiError, get, post, put } from '../api.js';
import { navigate } from '../app.js';
import { button, card, errorBox, field, h, link, mount, pre, select, toast } from '../dom.js';
import { STATUSES, TRIGGER_TYPES } from './common.js';

const METHODS = ['POST', 'PUT', 'PATCH', 'GET', 'DELETE'];
const SIGNATURE_MODES = [['', 'default (hmac with a key, else none)'], 'none', 'hmac', 'jwt', 'standard'];
const BACKOFF = [['', 'default (exponential)'], 'fixed', 'exponential', 'exponential_jitter'];

// READ_ONLY: fields of a GET answer the form does not send.
const READ_ONLY = ['id', 'stats', 'steps_count', 'last_triggered', 'created_at', 'updated_at', 'disabled_reason', 'disabled_at', 'reenabled_at', 'revision'];
const STEP_READ_ONLY = ['stats', 'has_signing_key', 'has_previous_signing_key', 'previous_signing_key_expires_at', 'signing_key'];

function blankStep(order) {
  return { name: '', order, url: '', method: 'POST', timeout_seconds: 30 };
}

// toModel: a GET answer as the body of a PUT.
function toModel(p) {
  const m = structuredClone(p);
  READ_ONLY.forEach((k) => delete m[k]);
  m.steps = (m.steps || []).map((s) => { const c = { ...s }; STEP_READ_ONLY.forEach((k) => delete c[k]); return c; });
  return m;
}

// errorsUnder: the messages for path itself and the fields inside it.
function errorsUnder(errors, path, placed) {
  const msgs = [];
  for (const [k, v] of Object.entries(errors)) {
    if (placed.has(k)) continue;
    if (k === path || k.startsWith(path + '.') || k.startsWith(path + '[')) {
      msgs.push(k === path ? v : `${k.slice(path.length + 1) || k}: ${v}`);
      placed.add(k);
    }
  }
  return msgs.length ? msgs.join('; ') : undefined;
}

const idOf = (path) => 'f-' + path.replace(/[^a-z0-9_]+/gi, '-').replace(/-$/, '');

function headersText(hs) {
  return Object.entries(hs || {}).map(([k, v]) => `${k}: ${v}`).join('\n');
}

export async function render(root, params) {
  const editing = !!params.id;
  let original = null;
  let model;
  if (editing) {
    original = await get('/pipelines/' + encodeURIComponent(params.id), undefined, { signal: params.signal });
    model = toModel(original);
  } else {
    model = { name: '', description: '', trigger_type: 'conversion', status: 'active', steps: [blankStep(1)] };
  }
  let errors = {}; // API path → message
  let problem = null; // the ApiError of the last save
  let mode = 'form';
  let jsonText = '';
  let jsonError = null;

  const title = editing ? `Edit ${original.name}` : 'New pipeline';
  const body = h('div');
  mount(root,
    h('div', { class: 'page-head' }, h('h1', null, title),
      editing ? link('/ui/pipelines/' + encodeURIComponent(params.id), '← back to the pipeline') : link('/ui/pipelines', '← pipelines')),
    h('div', { class: 'tabs', role: 'tablist' },
      h('button', { type: 'button', class: 'tab active', id: 'tab-form', onclick: () => switchMode('form') }, 'Form'),
      h('button', { type: 'button', class: 'tab', id: 'tab-json', onclick: () => switchMode('json') }, 'JSON')),
    body);

  function switchMode(to) {
    if (to === mode) return;
    if (to === 'json') {
      const { value } = collect();
      model = value;
      jsonText = JSON.stringify(model, null, 2);
      jsonError = null;
    } else {
      const ta = document.getElementById('pipeline-json');
      try {
        const v = JSON.parse(ta.value);
        if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('the pipeline is a JSON object');
        model = v;
        if (!Array.isArray(model.steps) || model.steps.length === 0) model.steps = [blankStep(1)];
      } catch (e) {
        jsonText = ta.value;
        jsonError = 'Not valid JSON: ' + e.message;
        draw();
        return;
      }
    }
    mode = to;
    document.getElementById('tab-form').classList.toggle('active', mode === 'form');
    document.getElementById('tab-json').classList.toggle('active', mode === 'json');
    draw();
  }

  // controls: API path → {el, kind}; collect reads them back.
  let controls = [];
  function ctl(path, el, kind = 'text') {
    el.id = idOf(path);
    el.dataset.path = path;
    controls.push({ path, el, kind });
    return el;
  }

  function input(path, value, attrs = {}) {
    return ctl(path, h('input', { type: 'text', value: value ?? '', ...attrs }), attrs.type === 'number' ? 'number' : 'text');
  }

  function draw() {
    controls = [];
    const placed = new Set();
    const err = (path) => errorsUnder(errors, path, placed);
    if (mode === 'json') {
      const unplaced = Object.entries(errors);
      mount(body, h('form', { id: 'pipeline-form', novalidate: true, onsubmit: (e) => { e.preventDefault(); save(); } },
        problem ? errorBox(problem) : null,
        field('Pipeline JSON', h('textarea', { class: 'tall', id: 'pipeline-json', spellcheck: 'false', value: jsonText }), {
          error: jsonError || undefined,
          hint: editing ? 'The fields given change; steps given replace all steps (a step keeps its signing key by id). Read-only fields are ignored.' : 'As POST /api/admin/webhooks/pipelines takes it.',
        }),
        unplaced.length ? h('ul', { class: 'field-error', id: 'json-errors' }, unplaced.map(([k, v]) => h('li', null, h('code', null, k), ': ', v))) : null,
        h('div', { class: 'form-actions' }, button(editing ? 'Save changes' : 'Create pipeline', null, { type: 'submit', kind: 'primary', write: true, id: 'save-pipeline' }))));
      return;
    }
    const m = model;
    const steps = m.steps.map((s, i) => {
      const p = `steps[${i}]`;
      const rp = s.retry_policy || {};
      const stepErr = errors[p] || errors[`${p}.order`] || errors[`${p}.id`];
      [p, `${p}.order`, `${p}.id`].forEach((k) => errors[k] && placed.add(k));
      return h('div', { class: 'step-card', dataset: { index: String(i) } },
        h('div', { class: 'step-card-head' }, h('strong', null, `Step ${i + 1}`),
          m.steps.length > 1 ? button('Remove', () => { model = collect().value; model.steps.splice(i, 1); draw(); }, { kind: 'danger btn-small', id: `remove-step-${i}` }) : null),
        stepErr ? h('div', { class: 'field-error' }, stepErr) : null,
        h('div', { class: 'row' },
          field('Name', input(`${p}.name`, s.name, { placeholder: `Step ${i + 1}` }), { name: `${p}.name`, error: err(`${p}.name`) }),
          field('Method', ctl(`${p}.method`, select({}, METHODS, (s.method || 'POST').toUpperCase())), { name: `${p}.method`, error: err(`${p}.method`) }),
          field('Timeout (s)', input(`${p}.timeout_seconds`, s.timeout_seconds, { type: 'number', min: 1, max: 300 }), { name: `${p}.timeout_seconds`, error: err(`${p}.timeout_seconds`) })),
        field('URL', input(`${p}.url`, s.url, { type: 'url', placeholder: 'https://crm.example.com/hooks/{{conversion.id}}' }), { name: `${p}.url`, error: err(`${p}.url`), hint: 'http(s) URL template: {{conversion.id}}, {{env.NAME}} …' }),
        field('Headers', ctl(`${p}.headers`, h('textarea', { rows: 3, placeholder: 'Authorization: Bearer {{env.CRM_API_KEY}}', value: headersText(s.headers) }), 'headers'),
          { name: `${p}.headers`, error: err(`${p}.headers`), hint: 'One “Name: value” a line.' }),
        field('Body template', ctl(`${p}.body_template`, h('textarea', { rows: 4, placeholder: '{"id": "{{conversion.id}}", "amount": "{{conversion.amount}}"}', value: s.body_template === undefined || s.body_template === null ? '' : typeof s.body_template === 'string' ? s.body_template : JSON.stringify(s.body_template, null, 2) }), 'body'),
          { name: `${p}.body_template`, error: err(`${p}.body_template`), hint: 'A JSON object template, or JSON text with placeholders; empty: the event as is.' }),
        h('div', { class: 'row' },
          field('Signature', ctl(`${p}.signature_mode`, select({}, SIGNATURE_MODES, s.signature_mode || '')), { name: `${p}.signature_mode`, error: err(`${p}.signature_mode`) }),
          field('Signing key', input(`${p}.signing_key`, '', { type: 'password', autocomplete: 'off', placeholder: s.id && original ? 'unchanged (never shown)' : 'literal or {{env.NAME}}' }),
            { name: `${p}.signing_key`, error: err(`${p}.signing_key`), hint: 'Standard mode without a key: one is generated and shown once.' }),
          field('Key grace (s)', input(`${p}.signing_key_grace_seconds`, s.signing_key_grace_seconds, { type: 'number', min: 0, placeholder: '86400' }), { name: `${p}.signing_key_grace_seconds`, error: err(`${p}.signing_key_grace_seconds`) })),
        h('details', { open: Object.keys(errors).some((k) => k.startsWith(`${p}.retry_policy`)) || Object.keys(rp).length > 0 },
          h('summary', null, 'Retry policy'),
          h('div', { class: 'row' },
            field('Max attempts', input(`${p}.retry_policy.max_attempts`, rp.max_attempts, { type: 'number', min: 1, max: 25 }), { name: `${p}.retry_policy.max_attempts`, error: err(`${p}.retry_policy.max_attempts`) }),
            field('Backoff', ctl(`${p}.retry_policy.backoff_type`, select({}, BACKOFF, rp.backoff_type || '')), { name: `${p}.retry_policy.backoff_type`, error: err(`${p}.retry_policy.backoff_type`) }),
            field('Initial delay (s)', input(`${p}.retry_policy.initial_delay_seconds`, rp.initial_delay_seconds, { type: 'number', min: 0, step: 'any' }), { name: `${p}.retry_policy.initial_delay_seconds`, error: err(`${p}.retry_policy.initial_delay_seconds`) })),
          h('div', { class: 'row' },
            field('Multiplier', input(`${p}.retry_policy.backoff_multiplier`, rp.backoff_multiplier, { type: 'number', min: 1, max: 10, step: 'any' }), { name: `${p}.retry_policy.backoff_multiplier`, error: err(`${p}.retry_policy.backoff_multiplier`) }),
            field('Max delay (s)', input(`${p}.retry_policy.max_delay_seconds`, rp.max_delay_seconds, { type: 'number', min: 0, step: 'any' }), { name: `${p}.retry_policy.max_delay_seconds`, error: err(`${p}.retry_policy.max_delay_seconds`) }),
            field('Jitter', input(`${p}.retry_policy.jitter_factor`, rp.jitter_factor, { type: 'number', min: 0, max: 1, step: 'any' }), { name: `${p}.retry_policy.jitter_factor`, error: err(`${p}.retry_policy.jitter_factor`) }))),
        h('label', { class: 'checkbox' }, ctl(`${p}.stop_on_failure`, h('input', { type: 'checkbox', checked: !!s.stop_on_failure }), 'checkbox'), 'Stop the pipeline when this step fails'),
        err(`${p}.retry_policy`) ? h('div', { class: 'field-error' }, err(`${p}.retry_policy`)) : null);
    });

    const filterText = m.filter === undefined || m.filter === null ? '' : JSON.stringify(m.filter, null, 2);
    const form = h('form', { id: 'pipeline-form', novalidate: true, onsubmit: (e) => { e.preventDefault(); save(); } },
      card('Pipeline',
        h('div', { class: 'row' },
          field('Name', input('name', m.name, { placeholder: 'CRM conversions' }), { name: 'name', error: err('name') }),
          field('Trigger', ctl('trigger_type', select({}, TRIGGER_TYPES, m.trigger_type)), { name: 'trigger_type', error: err('trigger_type') }),
          field('Status', ctl('status', select({}, STATUSES, m.status || 'active')), { name: 'status', error: err('status') })),
        field('Description', ctl('description', h('textarea', { rows: 2, value: m.description || '' })), { name: 'description', error: err('description') })),
      card('Steps', err('steps') ? h('div', { class: 'field-error' }, err('steps')) : null, steps,
        button('Add step', () => { model = collect().value; model.steps.push(blankStep(model.steps.length + 1)); draw(); }, { id: 'add-step' })),
      card('Delivery',
        h('div', { class: 'row' },
          field('Failover URL', input('failover_url', m.failover_url, { type: 'url', placeholder: 'https://backup.example.com/hook' }), { name: 'failover_url', error: err('failover_url'), hint: 'Where a step’s task goes after its attempts fail (its retry schedule: JSON mode).' }),
          field('Ordering', ctl('ordering', select({}, [['none', 'none'], ['key', 'key: per Kafka key, in order']], m.ordering || 'none')), { name: 'ordering', error: err('ordering') })),
        h('div', { class: 'row' },
          field('Rate limit (attempts/s)', input('rate_limit_per_second', m.rate_limit_per_second, { type: 'number', min: 0, step: 'any', placeholder: 'none' }), { name: 'rate_limit_per_second', error: err('rate_limit_per_second') }),
          field('Auto-disable after (s)', input('auto_disable_after_seconds', m.auto_disable_after_seconds, { type: 'number', min: 0, placeholder: 'default' }), { name: 'auto_disable_after_seconds', error: err('auto_disable_after_seconds'), hint: '0: never' })),
        field('Filter', ctl('filter', h('textarea', { rows: 3, placeholder: '{"conversion.amount": {"$gte": 10}}', value: filterText }), 'json'),
          { name: 'filter', error: err('filter'), hint: 'Which events the pipeline takes (JSON); empty: all of its trigger type.' }),
        err('failover_retry_policy') ? h('div', { class: 'field-error' }, 'failover_retry_policy: ' + err('failover_retry_policy')) : null),
      h('div', { class: 'form-actions' },
        button(editing ? 'Save changes' : 'Create pipeline', null, { type: 'submit', kind: 'primary', write: true, id: 'save-pipeline' }),
        editing ? link('/ui/pipelines/' + encodeURIComponent(params.id), 'Cancel') : link('/ui/pipelines', 'Cancel')));

    // What no control shows goes on top, with the error's message.
    const rest = Object.entries(errors).filter(([k]) => !placed.has(k));
    mount(body,
      problem ? h('div', { class: 'state state-error', role: 'alert', id: 'form-error' }, problem.message,
        rest.length ? h('ul', null, rest.map(([k, v]) => h('li', null, h('code', null, k), ': ', v))) : null) : null,
      form);
  }

  // collect reads the form into a pipeline body; bad inputs (JSON that is
  // not JSON, numbers that are not numbers) are errors at their fields.
  function collect() {
    if (mode === 'json') {
      const ta = document.getElementById('pipeline-json');
      try { return { value: JSON.parse(ta.value), local: {} }; } catch (e) { return { value: model, local: { _json: 'Not valid JSON: ' + e.message } }; }
    }
    const out = structuredClone(model);
    const local = {};
    out.steps = out.steps.map((s, i) => ({ ...s, order: i + 1 }));
    for (const { path, el, kind } of controls) {
      const m = /^steps\[(\d+)\]\.(.+)$/.exec(path);
      const target = m ? out.steps[Number(m[1])] : out;
      let key = m ? m[2] : path;
      let obj = target;
      if (key.startsWith('retry_policy.')) {
        obj = target.retry_policy = target.retry_policy || {};
        key = key.slice('retry_policy.'.length);
      }
      const raw = el.value;
      switch (kind) {
        case 'checkbox':
          obj[key] = el.checked;
          break;
        case 'number':
          if (raw.trim() === '') {
            if (path === 'rate_limit_per_second' && editing && original.rate_limit_per_second) obj[key] = 0; // removes the limit
            else delete obj[key];
          } else if (Number.isNaN(Number(raw))) local[path] = 'not a number';
          else obj[key] = Number(raw);
          break;
        case 'headers': {
          const hs = {};
          raw.split('\n').map((l) => l.trim()).filter(Boolean).forEach((l) => {
            const at = l.indexOf(':');
            if (at <= 0) local[path] = `“${l}” is not “Name: value”`;
            else hs[l.slice(0, at).trim()] = l.slice(at + 1).trim();
          });
          if (Object.keys(hs).length || obj[key]) obj[key] = hs;
          break;
        }
        case 'body':
          if (raw.trim() === '') obj[key] = null;
          else {
            try {
              const v = JSON.parse(raw);
              obj[key] = v && typeof v === 'object' && !Array.isArray(v) ? v : raw;
            } catch { obj[key] = raw; } // JSON text with placeholders
          }
          break;
        case 'json':
          if (raw.trim() === '') {
            if (editing && original.filter) obj[key] = {}; // removes the filter
            else delete obj[key];
          } else {
            try { obj[key] = JSON.parse(raw); } catch (e) { local[path] = 'not valid JSON: ' + e.message; }
          }
          break;
        default:
          if (key === 'signing_key') {
            if (raw !== '') obj[key] = raw; else delete obj[key];
          } else if (raw === '' && ['failover_url', 'signature_mode', 'backoff_type', 'name'].includes(key) && !(path === 'name')) {
            delete obj[key];
          } else obj[key] = raw;
      }
    }
    for (const s of out.steps) if (s.retry_policy && Object.keys(s.retry_policy).length === 0 && !(model.steps.find((x) => x.id && x.id === s.id) || {}).retry_policy) delete s.retry_policy;
    return { value: out, local };
  }

  async function save() {
    const { value, local } = collect();
    if (mode === 'form') model = value;
    problem = null;
    if (Object.keys(local).length) {
      if (local._json) { jsonError = local._json; jsonText = document.getElementById('pipeline-json').value; } else errors = local;
      problem = new ApiError(0, 'invalid_input', 'Some fields are not valid: see below.');
      draw();
      focusFirstError();
      return;
    }
    const saveBtn = document.getElementById('save-pipeline');
    saveBtn.disabled = true;
    try {
      let saved;
      if (editing) saved = await put('/pipelines/' + encodeURIComponent(params.id), { ...value, revision: original.revision });
      else saved = await post('/pipelines', value);
      const keys = (saved.steps || []).filter((s) => s.signing_key);
      if (keys.length) {
        mount(root, h('h1', null, `Saved ${saved.name}`),
          h('div', { id: 'generated-keys' }, card('Generated signing keys — shown once',
            h('p', null, 'Give each receiver its key now: webhookd never shows them again.'),
            keys.map((s) => h('div', { class: 'generated-key' }, h('strong', null, s.name), pre(s.signing_key))),
            link('/ui/pipelines/' + encodeURIComponent(saved.id), 'Continue to the pipeline →'))));
        return;
      }
      toast(editing ? `Saved ${saved.name}` : `Created ${saved.name}`);
      navigate('/ui/pipelines/' + encodeURIComponent(saved.id));
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      problem = e;
      errors = e.fieldErrors();
      if (mode === 'json') jsonText = document.getElementById('pipeline-json').value;
      jsonError = null;
      draw();
      focusFirstError();
    }
  }

  function focusFirstError() {
    const el = body.querySelector('[aria-invalid="true"]') || body.querySelector('.state-error');
    if (el) { el.scrollIntoView({ block: 'center' }); if (el.focus) el.focus(); }
  }

  draw();
}
