export * from './dataset.js';
export * from './eda.js';
export * from './lexicon.js';
export * from './paraphrase.js';
