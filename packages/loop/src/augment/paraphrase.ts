import { ParaphraseConfig } from '@ratchet/core';
import type { z } from 'zod';

/**
 * Paraphrase and back-translation through the OpenAI-compatible chat endpoint a
 * `ParaphraseConfig` names. Plain fetch: one request shape, no client library needed.
 */
async function complete(c: z.output<typeof ParaphraseConfig>, system: string, text: string): Promise<string> {
  const res = await fetch(`${c.baseURL.replace(/\/$/, '')}/chat/completions`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(c.apiKey ? { authorization: `Bearer ${c.apiKey}` } : {}),
    },
    body: JSON.stringify({
      model: c.model,
      temperature: c.temperature,
      messages: [
        { role: 'system', content: system },
        { role: 'user', content: text },
      ],
    }),
    signal: AbortSignal.timeout(c.timeoutMs),
  });
  if (!res.ok)
    throw new Error(
      `paraphrase model ${c.model} at ${c.baseURL} answered ${res.status}: ${(await res.text()).slice(0, 500)}`,
    );
  const body = (await res.json()) as { choices?: { message?: { content?: string } }[] };
  const out = body.choices?.[0]?.message?.content?.trim();
  if (!out) throw new Error(`paraphrase model ${c.model} returned no text`);
  return out;
}

export async function paraphrase(text: string, config: ParaphraseConfig): Promise<string> {
  const c = ParaphraseConfig.parse(config);
  return complete(
    c,
    'Rewrite the user message with different wording and the same meaning. Reply with the rewrite only.',
    text,
  );
}

/** Translates to a pivot language and back: a paraphrase that varies wording more freely. */
export async function backTranslate(
  text: string,
  config: ParaphraseConfig,
  pivotLanguage = 'German',
): Promise<string> {
  const c = ParaphraseConfig.parse(config);
  const pivot = await complete(
    c,
    `Translate the user message into ${pivotLanguage}. Reply with the translation only.`,
    text,
  );
  return complete(c, 'Translate the user message into English. Reply with the translation only.', pivot);
}
