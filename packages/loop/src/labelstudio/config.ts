import type { ScoreConfig } from '@ratchet/core';

/**
 * The labeling interface Ratchet asks Label Studio for, and the names that tie annotation
 * results back to our rating kinds. Control names are the contract with `results.ts`: a result
 * from `stars` is a star rating, from `criterion_relevance` a score on the relevance criterion.
 */
export const taskDataKeys = {
  interactionId: 'ratchet_interaction_id',
  otherInteractionId: 'ratchet_interaction_id_b',
  prompt: 'prompt',
  answer: 'answer',
  otherAnswer: 'answer_b',
  model: 'model',
} as const;

export const controlNames = {
  thumbs: 'thumbs',
  comment: 'comment',
  correction: 'correction',
  preference: 'preference',
} as const;

/** `single`: rate one answer in every kind; `pairwise`: choose the better of two answers. */
export type LabelingMode = 'single' | 'pairwise';

export const starsControlName = (scale: string) => (scale === 'stars' ? 'stars' : `stars_${scale}`);
export const criterionControlName = (criterion: string) => `criterion_${criterion}`;

/**
 * Label Studio's Rating gives 1..maxRating stars; an integer scale of up to 11 steps maps onto it
 * with an offset (NPS 0..10 is 11 stars, star k meaning k - 1). Other scales get a Number field.
 */
export function ratingSteps(scale: Pick<ScoreConfig, 'min' | 'max'>): number | undefined {
  const { min, max } = scale;
  if (min === null || max === null || !Number.isInteger(min) || !Number.isInteger(max)) return undefined;
  const steps = max - min + 1;
  return steps >= 2 && steps <= 11 ? steps : undefined;
}

const escapeXml = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function header(text: string): string {
  return `  <Header value="${escapeXml(text)}"/>`;
}

/** A Rating, a Number or Choices for one scale, whichever fits its data type and range. */
function scaleControl(name: string, scale: ScoreConfig): string {
  if (scale.dataType === 'categorical') {
    const choices = (scale.categories ?? []).map((c) => `    <Choice value="${escapeXml(c)}"/>`);
    return [
      `  <Choices name="${name}" toName="answer" choice="single" showInline="true">`,
      ...choices,
      '  </Choices>',
    ].join('\n');
  }
  const steps = ratingSteps(scale);
  if (steps !== undefined) return `  <Rating name="${name}" toName="answer" maxRating="${steps}"/>`;
  return `  <Number name="${name}" toName="answer" min="${scale.min}" max="${scale.max}"/>`;
}

function label(scale: ScoreConfig): string {
  const range = scale.dataType === 'numeric' ? ` (${scale.min} to ${scale.max})` : '';
  return `${scale.name}${range}${scale.description ? `: ${scale.description}` : ''}`;
}

function singleAnswerControls(scales: readonly ScoreConfig[]): string[] {
  const stars = scales.filter((s) => s.usage === 'stars');
  const criteria = scales.filter((s) => s.usage === 'criterion');
  return [
    header('Is the answer good?'),
    `  <Choices name="${controlNames.thumbs}" toName="answer" choice="single" showInline="true">`,
    '    <Choice value="Good" alias="up"/>',
    '    <Choice value="Bad" alias="down"/>',
    '  </Choices>',
    ...stars.flatMap((s) => [header(label(s)), scaleControl(starsControlName(s.name), s)]),
    ...criteria.flatMap((s) => [header(label(s)), scaleControl(criterionControlName(s.name), s)]),
    header('Comment'),
    `  <TextArea name="${controlNames.comment}" toName="answer" rows="2" maxSubmissions="1" editable="true"/>`,
    header('Correction: the answer you wanted instead (leave empty if none)'),
    `  <TextArea name="${controlNames.correction}" toName="answer" rows="6" maxSubmissions="1" editable="true"/>`,
  ];
}

/** The labeling config XML for a project's rating kinds (its star scales and criteria). */
export function labelingConfig(scales: readonly ScoreConfig[], mode: LabelingMode = 'single'): string {
  const conversation = [header('Conversation'), `  <Text name="prompt" value="$${taskDataKeys.prompt}"/>`];
  const body =
    mode === 'single'
      ? [
          header('Answer'),
          `  <Text name="answer" value="$${taskDataKeys.answer}"/>`,
          ...singleAnswerControls(scales),
        ]
      : [
          header('Which answer is better?'),
          `  <Text name="answer" value="$${taskDataKeys.answer}"/>`,
          `  <Text name="answer_b" value="$${taskDataKeys.otherAnswer}"/>`,
          `  <Pairwise name="${controlNames.preference}" toName="answer,answer_b"/>`,
        ];
  return ['<View>', ...conversation, ...body, '</View>'].join('\n');
}
