// Placeholder: the execution page is being built.
import { empty, h, mount } from '../dom.js';

export function render(root) {
  mount(root, h('h1', null, 'execution'), empty('This page is coming soon.'));
}
