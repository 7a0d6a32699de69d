import type SqliteDatabase from 'better-sqlite3';

/**
 * Inserts `count` rows on SQLite through one prepared multi-row statement run per chunk, on the
 * connection's current transaction. Per-row `run` calls spend most of their time crossing into
 * SQLite; query builders spend it building objects. `fill(params, k)` appends row k's values in
 * column order. `suffix` is appended to the statement (e.g. `on conflict do nothing`).
 */
export function insertManySqlite(
  sqlite: SqliteDatabase.Database,
  into: string,
  columns: number,
  count: number,
  fill: (params: unknown[], k: number) => void,
  suffix = '',
): void {
  const perStatement = Math.max(1, Math.floor(BOUND_PARAMETERS / columns));
  const tuple = `(${Array(columns).fill('?').join(', ')})`;
  const statement = (rows: number) =>
    sqlite.prepare(`insert into ${into} values ${Array(rows).fill(tuple).join(', ')} ${suffix}`);
  const full = count >= perStatement ? statement(perStatement) : null;
  const params: unknown[] = [];
  for (let start = 0; start < count; start += perStatement) {
    const end = Math.min(count, start + perStatement);
    params.length = 0;
    for (let k = start; k < end; k++) fill(params, k);
    (end - start === perStatement && full ? full : statement(end - start)).run(params);
  }
}

/** Parameters per statement: large enough that the per-call cost vanishes, far below the limit. */
const BOUND_PARAMETERS = 1000;
