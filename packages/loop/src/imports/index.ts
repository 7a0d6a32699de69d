export { type ImportBatch, ImportBatchBuilder, importError } from './batch.js';
export { type CsvField, CsvImportOptions, csvFields, parseFeedbackCsv } from './csv.js';
export { type CsvRecord, parseCsv } from './csv-parser.js';
export {
  type ImportFileOptions,
  type ImportFormat,
  importFile,
  importFormats,
  parseImportFile,
} from './files.js';
export { type LabelStudioImportOptions, parseLabelStudioExport } from './labelstudio.js';
export { parseTrlJsonl, type TrlImportOptions } from './trl.js';
export { type ImportSummary, type WriteImportOptions, writeImportBatch } from './write.js';
