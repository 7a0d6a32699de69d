/**
 * The widget's whole API surface: send feedback and read the one public aggregate. It runs on an
 * application's own pages with the project's PUBLIC key, which can do nothing else.
 */
export interface WidgetOptions {
  /** Where Ratchet is served, e.g. https://ratchet.example.com (no trailing slash). */
  baseUrl: string;
  /** The project's public key (rk_pub_...). Never a secret key in a browser. */
  publicKey: string;
  interactionId: string;
  /**
   * The interaction's feedback token: the gateway's `x-ratchet-feedback-token` (or the
   * `feedbackToken` of `POST /api/v1/interactions`), handed to the page by the application. It
   * makes the rating the interaction's end user's; the public key writes nothing without it.
   */
  feedbackToken: string;
  /** The gateway route, to say how many ratings went into its current model. */
  route?: string;
  /** Criteria to offer, scored 1..5 (e.g. ["accuracy", "helpfulness"]). */
  criteria?: string[];
}

export type WidgetFeedback =
  | { kind: 'thumbs'; value: 'up' | 'down' }
  | { kind: 'stars'; value: number }
  | { kind: 'criteria'; scores: Record<string, number> }
  | { kind: 'comment'; text: string };

async function call(options: WidgetOptions, path: string, init: RequestInit = {}): Promise<unknown> {
  const res = await fetch(options.baseUrl + path, {
    ...init,
    headers: { authorization: `Bearer ${options.publicKey}`, 'content-type': 'application/json' },
  });
  const body: unknown = await res.json().catch(() => null);
  if (!res.ok) {
    const message = (body as { error?: { message?: string } } | null)?.error?.message;
    throw new Error(message ?? `HTTP ${res.status}`);
  }
  return body;
}

/** Sends the given feedback events for the interaction in one all-or-nothing batch. */
export async function sendFeedback(options: WidgetOptions, events: WidgetFeedback[]): Promise<void> {
  if (!events.length) return;
  // No rater or time: the server rates as the token's end user, at its own time.
  const items = events.map((e) => ({
    ...e,
    interactionId: options.interactionId,
    // Left out when the page has none: the server's 401 then names the missing field.
    ...(options.feedbackToken ? { feedbackToken: options.feedbackToken } : {}),
  }));
  await call(options, '/api/v1/feedback', { method: 'POST', body: JSON.stringify({ items }) });
}

/** How many ratings went into the route's current model ("feedback like yours made this version"). */
export async function ratingsInCurrentModel(options: WidgetOptions): Promise<number | null> {
  if (!options.route) return null;
  const body = (await call(options, `/api/v1/widget/summary?route=${encodeURIComponent(options.route)}`)) as {
    ratingsInCurrentModel: number;
  };
  return body.ratingsInCurrentModel;
}

export function thanksMessage(ratings: number | null): string {
  if (ratings === null || ratings === 0) return 'Thanks: your feedback trains the next version.';
  return `Thanks: ${ratings.toLocaleString('en')} ratings like yours went into the current version.`;
}
