// All ops, one module per family; see each file for the kernels and backward rules.
export * from './elementwise.js';
export * from './reduce.js';
export * from './view.js';
export * from './create.js';
