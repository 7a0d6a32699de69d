import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidArgumentError } from 'commander';
import { describe, expect, it } from 'vitest';
import {
  finiteNumber,
  jsonObject,
  nonNegativeInteger,
  portNumber,
  positiveInteger,
  positiveNumber,
  positiveShare,
  share,
} from './arguments.js';

describe('command-line value parsers', () => {
  it.each([
    [positiveInteger, '3', 3, ['0', '-1', '1.5', 'x', '']],
    [nonNegativeInteger, '0', 0, ['-1', '2.5', 'x']],
    [positiveNumber, '0.5', 0.5, ['0', '-2', 'x', 'Infinity']],
    [finiteNumber, '-2.5', -2.5, ['x', 'Infinity', 'NaN']],
    [portNumber, '4400', 4400, ['0', '65536', '80.5']],
    [share, '0', 0, ['-0.1', '1.01', 'x']],
    [positiveShare, '1', 1, ['0', '1.5', 'x']],
  ] as const)(
    '%o accepts its values and rejects the rest with InvalidArgumentError',
    (parse, ok, value, bad) => {
      expect(parse(ok)).toBe(value);
      for (const b of bad) expect(() => parse(b), b).toThrow(InvalidArgumentError);
    },
  );

  it('jsonObject takes only a JSON object', () => {
    expect(jsonObject('{"beta":0.1}')).toEqual({ beta: 0.1 });
    for (const b of ['[1]', '1', 'null', '{'])
      expect(() => jsonObject(b), b).toThrow('must be a JSON object');
  });

  it('every command is defined in commands/ and no command file writes its own number parser', () => {
    const src = import.meta.dirname;
    expect(readFileSync(join(src, 'main.ts'), 'utf8')).not.toMatch(/\.command\(/);
    for (const file of readdirSync(join(src, 'commands')).filter((f) => f.endsWith('.ts'))) {
      const text = readFileSync(join(src, 'commands', file), 'utf8');
      expect(text, file).not.toMatch(/\(value: string\): number/);
    }
  });
});
