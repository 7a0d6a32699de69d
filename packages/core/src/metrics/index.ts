export {
  type BleuOptions,
  type BleuScore,
  type BleuSmoothing,
  corpusBleu,
  sentenceBleu,
  tokenize13a,
} from './bleu.js';
export { type ChrfOptions, type ChrfScore, corpusChrf, sentenceChrf } from './chrf.js';
export { type BinaryClassificationMetrics, binaryClassificationMetrics } from './classification.js';
export { corpusPerplexity, perplexity } from './perplexity.js';
export { porterStem } from './porter-stemmer.js';
export {
  type RougeOptions,
  type RougeScore,
  type RougeType,
  rouge,
  rougeMulti,
  rougeTokenize,
} from './rouge.js';
export { exactMatch, normalizeAnswer, tokenF1 } from './squad.js';
