import { importError } from './batch.js';

/** One CSV record with the (1-based) line it starts on, for error messages. */
export interface CsvRecord {
  line: number;
  cells: string[];
}

/**
 * An RFC 4180 parser: fields separated by a delimiter, records by CRLF or LF, fields quoted with
 * `"` may hold delimiters, quotes (doubled) and line breaks. A byte-order mark is dropped and blank
 * lines are skipped. Malformed quoting is an error naming the line rather than a silent guess,
 * because a misread quote shifts every later column.
 */
export function parseCsv(text: string, file: string, delimiter = ','): CsvRecord[] {
  const records: CsvRecord[] = [];
  let cells: string[] = [];
  let cell = '';
  let line = 1;
  let recordLine = 1;
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let quotedCell = false;

  const endCell = () => {
    cells.push(cell);
    cell = '';
    quotedCell = false;
  };
  const endRecord = () => {
    endCell();
    if (cells.length > 1 || cells[0] !== '') records.push({ line: recordLine, cells });
    cells = [];
  };

  while (i < text.length) {
    const ch = text[i]!;
    if (ch === '"' && cell === '' && !quotedCell) {
      const start = line;
      i++;
      for (;;) {
        if (i >= text.length) throw importError(`${file}:${start}`, 'a quoted field is never closed');
        const q = text[i]!;
        if (q === '"' && text[i + 1] === '"') {
          cell += '"';
          i += 2;
        } else if (q === '"') {
          i++;
          break;
        } else {
          if (q === '\n') line++;
          cell += q;
          i++;
        }
      }
      quotedCell = true;
      const next = text[i];
      if (next !== undefined && next !== delimiter && next !== '\n' && next !== '\r')
        throw importError(
          `${file}:${line}`,
          `unexpected text after a closing quote in field ${cells.length + 1}`,
        );
    } else if (ch === delimiter) {
      endCell();
      i++;
    } else if (ch === '\n' || ch === '\r') {
      endRecord();
      i += ch === '\r' && text[i + 1] === '\n' ? 2 : 1;
      line++;
      recordLine = line;
    } else if (ch === '"' || quotedCell) {
      throw importError(
        `${file}:${line}`,
        `a quote inside unquoted field ${cells.length + 1}; quote the field and double the quote`,
      );
    } else {
      cell += ch;
      i++;
    }
  }
  if (cell !== '' || cells.length > 0 || quotedCell) endRecord();
  return records;
}
