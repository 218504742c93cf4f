// The engine's public surface (browser-safe): tensors, autograd, ops, memory scopes and the device.
export { init, device, setDevice, config, Device, f32bits } from './device.js';
export type { DispatchSpec } from './device.js';
export { BufferPool, sizeClass, type PoolStats } from './memory.js';
export { Tensor, tidy, keep, numel, shapeStr, type DType, type Shape, type Node } from './tensor.js';
export { backward, noGrad, isGradEnabled, record, zeroGrad } from './autograd.js';
export * from './ops/index.js';
export * from './optim.js';
export * from './nn.js';
