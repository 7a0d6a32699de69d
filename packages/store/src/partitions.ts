import { type Kysely, sql } from 'kysely';
import type { DialectName } from './connection.js';
import type { Database } from './schema.js';

// biome-ignore lint/suspicious/noExplicitAny: used by migration 0037 before the typed schema has the tables.
type AnyDb = Kysely<any>;

/**
 * Time partitioning on PostgreSQL (migration 0037): `interactions` and `feedback` are range
 * partitioned on `created_at` by UTC month (`interactions_p2026_11` holds [2026-11-01,
 * 2026-12-01)), with a default partition for times outside every month made so far. SQLite has
 * no partitions; every method here is a no-op there.
 */
export const PARTITIONED_TABLES = ['interactions', 'feedback'] as const;
export type PartitionedTable = (typeof PARTITIONED_TABLES)[number];

/** Months made ahead of the current one, so a month's first write never waits for DDL. */
export const MONTHS_AHEAD = 3;

/** Two servers must not create the same month at once: one holds this and the other skips. */
const CREATE_LOCK = sql`hashtext('ratchet:partitions')`;

export interface MonthPartition {
  table: PartitionedTable;
  /** e.g. `interactions_p2026_11` */
  name: string;
  /** Epoch ms, inclusive. */
  from: number;
  /** Epoch ms, exclusive. */
  to: number;
}

/** The UTC month containing `t` as its index (year * 12 + month). */
export const monthIndexOf = (t: number): number => {
  const d = new Date(t);
  return d.getUTCFullYear() * 12 + d.getUTCMonth();
};

export function monthPartition(table: PartitionedTable, month: number): MonthPartition {
  const year = Math.floor(month / 12);
  const m = month % 12;
  return {
    table,
    name: `${table}_p${year}_${String(m + 1).padStart(2, '0')}`,
    from: Date.UTC(year, m, 1),
    to: Date.UTC(year, m + 1, 1),
  };
}

const NAME = /^(interactions|feedback)_p(\d{4})_(\d{2})$/;

function parsePartitionName(name: string): MonthPartition | undefined {
  const m = NAME.exec(name);
  if (!m) return undefined;
  return monthPartition(m[1] as PartitionedTable, Number(m[2]) * 12 + Number(m[3]) - 1);
}

/** The month partitions of a table that exist, oldest first. */
export async function listMonthPartitions(db: AnyDb, table: PartitionedTable): Promise<MonthPartition[]> {
  const { rows } = await sql<{ name: string }>`
    select c.relname as name from pg_inherits i join pg_class c on c.oid = i.inhrelid
    where i.inhparent = ${table}::regclass`.execute(db);
  return rows
    .map((r) => parsePartitionName(r.name))
    .filter((p): p is MonthPartition => p !== undefined)
    .sort((a, b) => a.from - b.from);
}

/**
 * Creates the month partition unless it exists. Rows that arrived in the default partition for
 * that month (a client's timestamp ahead of the months made so far) move into it first: PostgreSQL
 * refuses a partition whose range the default still holds rows of. The move sets
 * `ratchet.partition_move` so the id-keeping triggers (migration 0037) leave the ids as they are.
 * Runs in the caller's transaction.
 */
export async function createMonthPartition(
  trx: AnyDb,
  p: MonthPartition,
  /** The partitioned table; migration 0037 builds it under another name before the swap. */
  parent: string = p.table,
): Promise<boolean> {
  const { rows } = await sql<{
    n: number;
  }>`select count(*)::int as n from pg_class where relname = ${p.name}`.execute(trx);
  if (rows[0]!.n > 0) return false;
  const table = sql.table(parent);
  const fallback = sql.table(`${p.table}_default`);
  const partition = sql.table(p.name);
  const inRange = sql`created_at >= ${sql.lit(p.from)} and created_at < ${sql.lit(p.to)}`;
  const { rows: waiting } = await sql<{
    n: number;
  }>`select count(*)::int as n from ${fallback} where ${inRange}`.execute(trx);
  if (waiting[0]!.n > 0) {
    await sql`set local ratchet.partition_move = 'on'`.execute(trx);
    await sql`create temporary table partition_move (like ${table}) on commit drop`.execute(trx);
    await sql`with moved as (delete from ${fallback} where ${inRange} returning *) insert into partition_move select * from moved`.execute(
      trx,
    );
  }
  await sql`create table ${partition} partition of ${table} for values from (${sql.lit(p.from)}) to (${sql.lit(p.to)})`.execute(
    trx,
  );
  if (waiting[0]!.n > 0) {
    await sql`insert into ${partition} select * from partition_move`.execute(trx);
    await sql`drop table partition_move`.execute(trx);
    await sql`set local ratchet.partition_move = 'off'`.execute(trx);
  }
  return true;
}

export class PartitionRepository {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: DialectName,
  ) {}

  /**
   * Makes the current month's and the next `MONTHS_AHEAD` months' partitions of both tables
   * (`ratchet serve` calls this on its retention timer). Idempotent; when another server holds
   * the lock it is doing the same, so this one returns without waiting. Returns the names made.
   */
  async createAhead(now = Date.now(), months = MONTHS_AHEAD): Promise<string[]> {
    if (this.dialect !== 'postgres') return [];
    return this.db.transaction().execute(async (trx) => {
      const { rows } = await sql<{
        locked: boolean;
      }>`select pg_try_advisory_xact_lock(${CREATE_LOCK}) as locked`.execute(trx);
      if (!rows[0]!.locked) return [];
      const made: string[] = [];
      const first = monthIndexOf(now);
      for (const table of PARTITIONED_TABLES)
        for (let month = first; month <= first + months; month++) {
          const p = monthPartition(table, month);
          if (await createMonthPartition(trx, p)) made.push(p.name);
        }
      return made;
    });
  }

  /** The month partitions of a table (empty on SQLite). */
  async list(table: PartitionedTable): Promise<MonthPartition[]> {
    if (this.dialect !== 'postgres') return [];
    return listMonthPartitions(this.db, table);
  }
}
