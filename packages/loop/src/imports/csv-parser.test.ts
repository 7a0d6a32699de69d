import { describe, expect, it } from 'vitest';
import { parseCsv } from './csv-parser.js';

const cells = (text: string) => parseCsv(text, 'f.csv').map((r) => r.cells);

describe('RFC 4180 CSV parsing', () => {
  it('splits plain fields and records, LF or CRLF, with or without a final newline', () => {
    expect(cells('a,b\n1,2\n')).toEqual([
      ['a', 'b'],
      ['1', '2'],
    ]);
    expect(cells('a,b\r\n1,2')).toEqual([
      ['a', 'b'],
      ['1', '2'],
    ]);
  });

  it('reads quoted fields with delimiters, doubled quotes and line breaks', () => {
    const text = 'prompt,response\n"Hi, there","He said ""no""\nthen left"\n"",x\n';
    expect(cells(text)).toEqual([
      ['prompt', 'response'],
      ['Hi, there', 'He said "no"\nthen left'],
      ['', 'x'],
    ]);
  });

  it('keeps empty fields, drops a byte-order mark and blank lines', () => {
    expect(cells('\uFEFFa,b,c\n,,\n\n1,,3\n')).toEqual([
      ['a', 'b', 'c'],
      ['', '', ''],
      ['1', '', '3'],
    ]);
  });

  it('gives each record the line it starts on, counting line breaks inside quotes', () => {
    const records = parseCsv('h\n"one\ntwo\nthree"\nnext\n', 'f.csv');
    expect(records.map((r) => r.line)).toEqual([1, 2, 5]);
  });

  it('takes another delimiter', () => {
    expect(parseCsv('a;b\n"x;y";2\n', 'f.csv', ';').map((r) => r.cells)).toEqual([
      ['a', 'b'],
      ['x;y', '2'],
    ]);
  });

  it('names the line of malformed quoting', () => {
    expect(() => parseCsv('a,b\n1,"open\n2,3\n', 'f.csv')).toThrow('f.csv:2: a quoted field is never closed');
    expect(() => parseCsv('a,b\n1,x"y\n', 'f.csv')).toThrow('f.csv:2: a quote inside unquoted field 2');
    expect(() => parseCsv('a,b\n"x"y,2\n', 'f.csv')).toThrow(
      'f.csv:2: unexpected text after a closing quote in field 1',
    );
  });
});
