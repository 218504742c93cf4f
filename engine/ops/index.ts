// All ops, one module per family; see each file for the kernels and backward rules.
export * from './elementwise.js';
export * from './reduce.js';
export * from './view.js';
export * from './create.js';
export * from './matmul.js';
export * from './softmax.js';
export * from './losses.js';
export * from './embedding.js';
export * from './topk.js';
export * from './norm.js';
export * from './rope.js';
export * from './attention.js';
export * from './segment.js';
export * from './token_losses.js';
