import { RatchetError } from '@ratchet/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Store } from './store.js';
import { testDatabases } from './testing.js';

for (const target of testDatabases()) {
  describe(`loop rounds on ${target.name}`, () => {
    let store: Store;
    let projectId: string;
    beforeAll(async () => {
      store = await Store.open(await target.create());
      projectId = (await store.projects.create('loops')).id;
    });
    afterAll(async () => {
      await store?.close();
      await target.cleanup();
    });

    it('numbers rounds per route, moves stage by stage with state, and audits every move', async () => {
      const r1 = await store.loops.start(projectId, 'support-bot', 'calibrate', { canary: 0.2 }, 'loop');
      expect(r1).toMatchObject({ round: 1, stage: 'calibrate', status: 'running', policy: { canary: 0.2 } });
      await expect(store.loops.start(projectId, 'support-bot', 'calibrate', {}, 'loop')).rejects.toThrow(
        /already has a round running/,
      );
      const other = await store.loops.start(projectId, 'other-route', 'calibrate', {}, 'loop');
      expect(other.round).toBe(1);

      await store.loops.advance(projectId, r1.id, {
        from: 'calibrate',
        to: 'build',
        state: { calibrationId: 'c1' },
        actor: 'loop',
      });
      const built = await store.loops.advance(projectId, r1.id, {
        from: 'build',
        to: 'train',
        state: { datasetId: 'd1' },
        actor: 'loop',
      });
      expect(built.state).toEqual({ calibrationId: 'c1', datasetId: 'd1' });
      expect(await store.loops.current(projectId, 'support-bot')).toMatchObject({
        stage: 'train',
        state: built.state,
      });

      // A second process that thinks the round is still at `build` cannot run that stage's effects again.
      const stale = store.loops.advance(projectId, r1.id, { from: 'build', to: 'train', actor: 'other' });
      await expect(stale).rejects.toBeInstanceOf(RatchetError);
      await expect(stale).rejects.toThrow(/is at train/);

      const ended = await store.loops.advance(projectId, r1.id, {
        from: 'train',
        to: 'done',
        status: 'rejected',
        state: { reasons: ['win rate too low'] },
        actor: 'loop',
      });
      expect(ended).toMatchObject({ status: 'rejected', stage: 'done' });
      expect(await store.loops.current(projectId, 'support-bot')).toBeUndefined();
      const r2 = await store.loops.start(projectId, 'support-bot', 'calibrate', {}, 'loop');
      expect(r2.round).toBe(2);
      expect((await store.loops.list(projectId, { route: 'support-bot' })).map((r) => r.round)).toEqual([
        2, 1,
      ]);

      const audit = await store.db
        .selectFrom('audit_log')
        .select(['action'])
        .where('subject_id', '=', r1.id)
        .orderBy('created_at')
        .orderBy('id')
        .execute();
      expect(audit.map((a) => a.action)).toEqual([
        'loop.round.start',
        'loop.stage.calibrate',
        'loop.stage.build',
        'loop.round.rejected',
      ]);
    });
  });
}
