// Placeholder: the dlq page is being built.
import { empty, h, mount } from '../dom.js';

export function render(root) {
  mount(root, h('h1', null, 'dlq'), empty('This page is coming soon.'));
}
