// The causal LM (browser-safe part): configs, the Llama / Qwen2 model, LoRA and decoding. File loading
// and saving (fromHF, saveHF, fromLlama2c) are in ./node.js, which Node code imports directly.
export * from './config.js';
export * from './llama.js';
export * from './lora.js';
export * from './generate.js';
