// Checkpoint I/O and tokenizers, browser-safe part (works on bytes and parsed JSON). File-system helpers
// (readSafetensorsFile, loadHFDir, readLlama2cFile, ...) are in ./node.js, which Node code imports directly.
export * from './safetensors.js';
export * from './hf.js';
export * from './llama2c.js';
export * from './tokenizer.js';
