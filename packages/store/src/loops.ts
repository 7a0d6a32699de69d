import { newId, RatchetError } from '@ratchet/core';
import type { Kysely, Selectable, Transaction } from 'kysely';
import type { AuditLog } from './audit.js';
import type { DialectName } from './connection.js';
import { decodeJson, encodeJson } from './json.js';
import type { Database, LoopRoundStatus, LoopRoundsTable } from './schema.js';

export type { LoopRoundStatus };

/** Statuses of a round that has not ended: at most one per route. */
export const openLoopStatuses = [
  'running',
  'awaiting_approval',
] as const satisfies readonly LoopRoundStatus[];

/** A person's answer to a round awaiting approval. */
export interface LoopApproval {
  approved: boolean;
  actor: string;
  reason: string | null;
  at: number;
}

export interface LoopRound {
  id: string;
  projectId: string;
  route: string;
  round: number;
  stage: string;
  status: LoopRoundStatus;
  state: Record<string, unknown>;
  policy: Record<string, unknown>;
  error: string | null;
  createdAt: number;
  updatedAt: number;
  finishedAt: number | null;
}

function isOpen(status: LoopRoundStatus): boolean {
  return (openLoopStatuses as readonly string[]).includes(status);
}

/**
 * The loop's rounds. A round moves through its stages one at a time; each move is written (with
 * what the stage produced) and audited in one transaction, so a loop restarted after a crash
 * picks the round up at the stage it had reached.
 */
export class LoopRoundRepository {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly dialect: DialectName,
    private readonly audit: AuditLog,
  ) {}

  /** The round not yet ended for a route (running or awaiting approval), if any. */
  async current(projectId: string, route: string): Promise<LoopRound | undefined> {
    const row = await this.db
      .selectFrom('loop_rounds')
      .selectAll()
      .where('project_id', '=', projectId)
      .where('route', '=', route)
      .where('status', 'in', openLoopStatuses)
      .orderBy('round', 'desc')
      .executeTakeFirst();
    return row && this.toRound(row);
  }

  async list(projectId: string, filter: { route?: string; limit?: number } = {}): Promise<LoopRound[]> {
    let q = this.db.selectFrom('loop_rounds').selectAll().where('project_id', '=', projectId);
    if (filter.route) q = q.where('route', '=', filter.route);
    const rows = await q
      .orderBy('created_at', 'desc')
      .limit(filter.limit ?? 100)
      .execute();
    return rows.map((r) => this.toRound(r));
  }

  async get(projectId: string, id: string): Promise<LoopRound | undefined> {
    const row = await this.db
      .selectFrom('loop_rounds')
      .selectAll()
      .where('project_id', '=', projectId)
      .where('id', '=', id)
      .executeTakeFirst();
    return row && this.toRound(row);
  }

  /** Starts the route's next round (numbered after the last one) at its first stage. */
  async start(
    projectId: string,
    route: string,
    stage: string,
    policy: Record<string, unknown>,
    actor: string,
  ): Promise<LoopRound> {
    return this.db.transaction().execute(async (trx) => {
      const running = await trx
        .selectFrom('loop_rounds')
        .select('id')
        .where('project_id', '=', projectId)
        .where('route', '=', route)
        .where('status', 'in', openLoopStatuses)
        .executeTakeFirst();
      if (running)
        throw new RatchetError(
          'conflict',
          `route "${route}" already has a round running (${running.id})`,
          'route',
        );
      const last = await trx
        .selectFrom('loop_rounds')
        .select((eb) => eb.fn.max('round').as('round'))
        .where('project_id', '=', projectId)
        .where('route', '=', route)
        .executeTakeFirst();
      const now = Date.now();
      const row = {
        id: newId(now),
        project_id: projectId,
        route,
        round: Number(last?.round ?? 0) + 1,
        stage,
        status: 'running' as const,
        state: encodeJson({}),
        policy: encodeJson(policy),
        error: null,
        created_at: now,
        updated_at: now,
        finished_at: null,
      };
      await trx.insertInto('loop_rounds').values(row).execute();
      await this.audit.record(
        {
          projectId,
          actor,
          action: 'loop.round.start',
          subjectType: 'loop_round',
          subjectId: row.id,
          details: { route, round: row.round, stage },
        },
        trx,
      );
      return {
        id: row.id,
        projectId,
        route,
        round: row.round,
        stage,
        status: row.status,
        state: {},
        policy,
        error: null,
        createdAt: now,
        updatedAt: now,
        finishedAt: null,
      };
    });
  }

  /**
   * Records that a stage finished: merges what it produced into the state and moves to the next
   * stage, or ends the round with a final status. Fails if the round is not at `from` any more
   * (another process moved it), so two loops cannot both run a stage's effects.
   */
  async advance(
    projectId: string,
    id: string,
    move: {
      from: string;
      to: string;
      state?: Record<string, unknown>;
      status?: LoopRoundStatus;
      error?: string;
      actor: string;
      note?: Record<string, unknown>;
    },
  ): Promise<LoopRound> {
    return this.db.transaction().execute(async (trx) => {
      const round = await this.inTransaction(trx, projectId, id);
      if (round.status !== 'running' || round.stage !== move.from)
        throw new RatchetError(
          'conflict',
          `loop round ${round.round} of "${round.route}" is at ${round.stage} (${round.status}), not ${move.from}`,
          'stage',
        );
      const now = Date.now();
      const status = move.status ?? 'running';
      const state = { ...round.state, ...move.state };
      await trx
        .updateTable('loop_rounds')
        .set({
          stage: move.to,
          status,
          state: encodeJson(state),
          error: move.error ?? null,
          updated_at: now,
          finished_at: isOpen(status) ? null : now,
        })
        .where('id', '=', id)
        .execute();
      await this.audit.record(
        {
          projectId,
          actor: move.actor,
          // A move within a stage (what it has done so far, kept before it finishes) is progress.
          action:
            status !== 'running'
              ? `loop.round.${status}`
              : move.to === move.from
                ? `loop.progress.${move.from}`
                : `loop.stage.${move.from}`,
          subjectType: 'loop_round',
          subjectId: id,
          details: { route: round.route, round: round.round, from: move.from, to: move.to, ...move.note },
        },
        trx,
      );
      return { ...round, stage: move.to, status, state, error: move.error ?? null, updatedAt: now };
    });
  }

  /**
   * A person approves or rejects a round awaiting approval: the answer joins the round's state
   * (`approval`), the round is running again so the loop's next pass acts on it (promote, or keep
   * production), and the answer is audited with who gave it, in one transaction. Fails unless the
   * round is awaiting approval, so an answer cannot land twice or on a round that moved on.
   */
  async review(
    projectId: string,
    id: string,
    answer: { approved: boolean; actor: string; reason?: string | undefined },
  ): Promise<LoopRound> {
    return this.db.transaction().execute(async (trx) => {
      const round = await this.inTransaction(trx, projectId, id);
      if (round.status !== 'awaiting_approval')
        throw new RatchetError(
          'conflict',
          `loop round ${round.round} of "${round.route}" is ${round.status} at ${round.stage}, not awaiting approval`,
          'id',
        );
      const now = Date.now();
      const approval: LoopApproval = {
        approved: answer.approved,
        actor: answer.actor,
        reason: answer.reason ?? null,
        at: now,
      };
      const state = { ...round.state, approval };
      await trx
        .updateTable('loop_rounds')
        .set({ status: 'running', state: encodeJson(state), updated_at: now })
        .where('id', '=', id)
        .where('status', '=', 'awaiting_approval')
        .execute();
      await this.audit.record(
        {
          projectId,
          actor: answer.actor,
          action: answer.approved ? 'loop.round.approved' : 'loop.round.rejected_by_person',
          subjectType: 'loop_round',
          subjectId: id,
          details: { route: round.route, round: round.round, reason: approval.reason },
        },
        trx,
      );
      return { ...round, status: 'running', state, updatedAt: now };
    });
  }

  /** A round read inside a write's transaction, or not_found. */
  private async inTransaction(trx: Transaction<Database>, projectId: string, id: string): Promise<LoopRound> {
    const row = await trx
      .selectFrom('loop_rounds')
      .selectAll()
      .where('project_id', '=', projectId)
      .where('id', '=', id)
      .executeTakeFirst();
    if (!row) throw new RatchetError('not_found', `loop round "${id}" not found`, 'id');
    return this.toRound(row);
  }

  private toRound(r: Selectable<LoopRoundsTable>): LoopRound {
    return {
      id: r.id,
      projectId: r.project_id,
      route: r.route,
      round: Number(r.round),
      stage: r.stage,
      status: r.status,
      state: decodeJson(this.dialect, r.state),
      policy: decodeJson(this.dialect, r.policy),
      error: r.error,
      createdAt: Number(r.created_at),
      updatedAt: Number(r.updated_at),
      finishedAt: r.finished_at === null ? null : Number(r.finished_at),
    };
  }
}
