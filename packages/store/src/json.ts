import type { DialectName } from './connection.js';

export function encodeJson(value: unknown): string {
  return JSON.stringify(value ?? null);
}

/** PostgreSQL hands jsonb back parsed; SQLite hands back the text we stored. */
export function decodeJson<T>(dialect: DialectName, value: unknown): T {
  if (dialect === 'sqlite' && typeof value === 'string') return JSON.parse(value) as T;
  return value as T;
}

/** Splits rows so one statement stays under both databases' bound-parameter limits. */
export function chunk<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** Rows per multi-row INSERT: SQLite allows 32,766 bound parameters, PostgreSQL 65,535. */
export function rowsPerStatement(columns: number): number {
  return Math.max(1, Math.floor(30_000 / columns));
}
