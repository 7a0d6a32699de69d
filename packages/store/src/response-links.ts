import { storableString } from '@ratchet/core';
import type { Kysely } from 'kysely';
import type { Database } from './schema.js';

/**
 * A Responses API answer as the gateway logged it: the upstream's response id, the interaction
 * it became, the conversation it belongs to (the first turn's interaction id) and its session.
 * An upstream that speaks Responses keeps the conversation itself; a later turn names it only by
 * `previous_response_id`, and this is how the gateway links that turn to the earlier one.
 */
export interface ResponseLink {
  responseId: string;
  interactionId: string;
  conversationId: string;
  sessionId?: string | undefined;
  createdAt: number;
}

export class ResponseLinkRepository {
  constructor(private readonly db: Kysely<Database>) {}

  /** Records a link; the same response recorded twice keeps the first. */
  async insert(projectId: string, link: ResponseLink): Promise<void> {
    await this.db
      .insertInto('gateway_responses')
      .values({
        project_id: projectId,
        response_id: storableString(link.responseId),
        interaction_id: link.interactionId,
        conversation_id: link.conversationId,
        session_id: link.sessionId === undefined ? null : storableString(link.sessionId),
        created_at: link.createdAt,
      })
      .onConflict((oc) => oc.columns(['project_id', 'response_id']).doNothing())
      .execute();
  }

  async find(projectId: string, responseId: string): Promise<ResponseLink | undefined> {
    const row = await this.db
      .selectFrom('gateway_responses')
      .selectAll()
      .where('project_id', '=', projectId)
      .where('response_id', '=', responseId)
      .executeTakeFirst();
    if (!row) return undefined;
    return {
      responseId: row.response_id,
      interactionId: row.interaction_id,
      conversationId: row.conversation_id,
      sessionId: row.session_id ?? undefined,
      createdAt: Number(row.created_at),
    };
  }
}
