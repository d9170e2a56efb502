// The sign-in form: the token is checked with GET /whoami, then kept in
// sessionStorage with its role.
import { signIn } from '../api.js';
import { h, mount } from '../dom.js';
import { navigate } from '../app.js';

export function render(root, params) {
  const input = h('input', { type: 'password', id: 'token', name: 'token', autocomplete: 'current-password', required: true, placeholder: 'admin or read token', autofocus: true });
  const err = h('div', { class: 'field-error', id: 'signin-error', role: 'alert', hidden: true });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', id: 'signin-submit' }, 'Sign in');
  const form = h('form', {
    class: 'signin card', id: 'signin-form', novalidate: true,
    onsubmit: async (e) => {
      e.preventDefault();
      err.hidden = true;
      const tok = input.value.trim();
      if (!tok) { err.textContent = 'Enter a token.'; err.hidden = false; return; }
      submit.disabled = true;
      try {
        await signIn(tok);
        const next = params.query.get('next');
        navigate(next && next.startsWith('/ui/') && !next.startsWith('/ui/signin') ? next : '/ui/');
      } catch (ex) {
        err.textContent = ex.status === 401 ? 'That token is not valid: ' + ex.message : ex.message;
        err.hidden = false;
        submit.disabled = false;
        input.select();
      }
    },
  },
  h('h1', null, 'webhookd'),
  h('p', { class: 'muted' }, 'Sign in with an admin API token. A read token shows everything and changes nothing.'),
  params.query.get('expired') ? h('p', { class: 'notice' }, 'Your session ended: sign in again.') : null,
  h('div', { class: 'field' }, h('label', { for: 'token' }, 'Token'), input),
  err,
  h('div', { class: 'form-actions' }, submit),
  h('p', { class: 'hint' }, 'The token stays in this tab (sessionStorage) and is sent as a bearer header; closing the tab signs out.'));
  mount(root, form);
  input.focus();
}
