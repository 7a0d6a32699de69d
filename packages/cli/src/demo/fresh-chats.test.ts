import { describe, expect, it } from 'vitest';
import { demoPolicy, freshChats, riskyPolicy } from './loop-demo.js';

describe("the demo's chats before a round", () => {
  it('count the last canary toward a realistic round, and chat at least a quarter afresh', () => {
    const o = { chatsPerRound: 1000, population: 'realistic' as const };
    expect(freshChats(o, 0)).toBe(1000);
    expect(freshChats(o, 600)).toBe(400);
    expect(freshChats(o, 9000)).toBe(250);
  });

  it('keep the default population at its fixed chats whatever its canary ran', () => {
    expect(freshChats({ chatsPerRound: 250, population: 'default' }, 3000)).toBe(250);
  });

  it('decide the realistic canary on net dissatisfaction, with thumbs a guardrail', () => {
    const e = demoPolicy('base', {}, 'realistic').experiment;
    expect(e.metric).toBe('net_dissatisfaction');
    expect(e.guardrails).toEqual([expect.objectContaining({ metric: 'thumbs_up_rate' })]);
  });

  it("imitate production's own liked answers on the default population, and the risky round every rated answer", () => {
    const policy = demoPolicy('base');
    expect(policy.dataset).toMatchObject({ method: 'sft', productionAnswersOnly: true });
    expect(riskyPolicy(policy).dataset).toMatchObject({ method: 'rwsft', productionAnswersOnly: false });
    expect(demoPolicy('base', {}, 'realistic').dataset.productionAnswersOnly).toBe(false);
  });
});
