import { RatchetError } from './errors.js';

export const modelStages = ['candidate', 'canary', 'production', 'archived'] as const;
export type ModelStage = (typeof modelStages)[number];

/**
 * Moves a model may make. A candidate earns canary traffic, then production; production only
 * leaves by being replaced or rolled back (to archived); an archived model can come back only as a
 * candidate (re-evaluated) or through a rollback to production.
 */
const allowedMoves: Record<ModelStage, readonly ModelStage[]> = {
  candidate: ['canary', 'production', 'archived'],
  canary: ['production', 'candidate', 'archived'],
  production: ['archived'],
  archived: ['candidate', 'production'],
};

export function checkStageMove(from: ModelStage, to: ModelStage, modelName: string): void {
  if (from === to) throw new RatchetError('conflict', `stage: ${modelName} is already ${to}`, 'stage');
  if (!allowedMoves[from].includes(to)) {
    throw new RatchetError(
      'conflict',
      `stage: ${modelName} cannot move from ${from} to ${to} (allowed: ${allowedMoves[from].join(', ')})`,
      'stage',
    );
  }
}
