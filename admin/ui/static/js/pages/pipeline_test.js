// Placeholder: the pipeline_test page is being built.
import { empty, h, mount } from '../dom.js';

export function render(root) {
  mount(root, h('h1', null, 'pipeline_test'), empty('This page is coming soon.'));
}
