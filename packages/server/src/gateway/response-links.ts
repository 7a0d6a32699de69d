import type { ResponseLink } from '@ratchet/store';

/** Where the links live (the store's `responseLinks`, table `gateway_responses`). */
export interface ResponseLinkStore {
  insert(projectId: string, link: ResponseLink): Promise<void>;
  find(projectId: string, responseId: string): Promise<ResponseLink | undefined>;
}

const RECENT = 10_000;

/**
 * Which interaction each Responses API answer became, so that a later turn that names it by
 * `previous_response_id` is logged linked to it (same conversation, same session). Kept in the
 * database, so the link holds across restarts and servers (and goes when its interaction is
 * deleted); in memory only until its write lands, since a client sends its next turn the moment
 * it has the answer.
 */
export class ResponseLinks {
  private readonly recent = new Map<string, ResponseLink>();

  constructor(
    private readonly store: ResponseLinkStore | undefined,
    private readonly onError: (err: unknown, link: ResponseLink) => void = () => {},
  ) {}

  record(projectId: string, link: ResponseLink): void {
    const key = `${projectId}\u0000${link.responseId}`;
    this.recent.set(key, link);
    if (this.recent.size > RECENT) this.recent.delete(this.recent.keys().next().value!);
    this.store?.insert(projectId, link).then(
      () => this.recent.delete(key),
      (err) => this.onError(err, link),
    );
  }

  async find(projectId: string, responseId: string): Promise<ResponseLink | undefined> {
    return (
      this.recent.get(`${projectId}\u0000${responseId}`) ?? (await this.store?.find(projectId, responseId))
    );
  }
}
