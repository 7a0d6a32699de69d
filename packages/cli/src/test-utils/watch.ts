import { FeedbackInput, InteractionInput, parseInput } from '@ratchet/core';
import type { Store } from '@ratchet/store';

/** What the registry knows of a gateway file with one upstream that serves every model. */
const gateway = { upstreams: ['local'], routeUpstreams: {}, defaultUpstream: 'local' };
/**
 * Promotes `bad` over `good` on `route` (a watch with half the users held back, so a few dozen
 * users decide), then plants 60 users' calls and their own thumbs: the holdback's users like
 * their answers, the promoted model's users do not.
 */
export async function plantHarm(store: Store, projectId: string, route: string) {
  for (const name of [`${route}-good`, `${route}-bad`])
    await store.models.register(projectId, { name, route, baseModel: 'tiny' }, 'test');
  await store.models.setStage(projectId, `${route}-good`, 'production', 'test', 'baseline', gateway);
  const promoted = await store.models.setStage(
    projectId,
    `${route}-bad`,
    'production',
    'test',
    'by hand',
    gateway,
    {
      watch: { holdbackShare: 0.5, minUsersPerArm: 5 },
    },
  );
  const watch = (await store.watches.get(projectId, promoted.watchId!))!;
  const calls = Array.from({ length: 60 }, (_, i) => {
    const held = i % 2 === 0;
    return parseInput(InteractionInput, {
      id: `${route}-call-${i}`,
      route,
      variant: held ? 'holdback' : 'production',
      model: held ? `${route}-good` : `${route}-bad`,
      userId: `${route}-user-${i}`,
      messages: [{ role: 'user', content: 'hi' }],
      output: 'hello',
      latencyMs: 100,
      usage: { inputTokens: 1, outputTokens: 1 },
      createdAt: watch.openedAt + 1 + i,
    });
  });
  await store.interactions.insert(projectId, calls);
  await store.feedback.insert(
    projectId,
    calls.map((c, i) =>
      parseInput(FeedbackInput, { kind: 'thumbs', interactionId: c.id, value: i % 2 === 0 ? 'up' : 'down' }),
    ),
  );
  return watch;
}
