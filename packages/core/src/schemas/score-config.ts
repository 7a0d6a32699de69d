import { z } from 'zod';

/**
 * A configurable rating scale. `stars` configs give the scale of star ratings (a project may have
 * several, e.g. `stars` 1..5 and `nps` 0..10); `criterion` configs name the criteria raters score.
 */
export const ScoreConfigInput = z
  .strictObject({
    name: z
      .string()
      .min(1)
      .max(64)
      .regex(/^[a-z][a-z0-9_]*$/, 'must be lower_snake_case'),
    usage: z.enum(['stars', 'criterion']),
    dataType: z.enum(['numeric', 'categorical']).default('numeric'),
    /** At most 1e9 either way: ratings are normalized by (max - min), which must stay finite. */
    min: z.number().min(-1e9).max(1e9).optional(),
    max: z.number().min(-1e9).max(1e9).optional(),
    /** For categorical criteria: the labels in order from worst to best. */
    categories: z.array(z.string().min(1).max(100)).min(2).max(100).optional(),
    /** Weight of this criterion when criteria are combined into one reward. */
    weight: z.number().nonnegative().max(1e6).default(1),
    description: z.string().max(1000).optional(),
  })
  .superRefine((c, ctx) => {
    if (c.dataType === 'numeric') {
      if (c.min === undefined || c.max === undefined) {
        ctx.addIssue({ code: 'custom', path: ['min'], message: 'numeric scales need min and max' });
      } else if (c.min >= c.max) {
        ctx.addIssue({ code: 'custom', path: ['max'], message: 'max must be greater than min' });
      }
    } else if (!c.categories) {
      ctx.addIssue({ code: 'custom', path: ['categories'], message: 'categorical scales need categories' });
    }
  });
export type ScoreConfigInput = z.input<typeof ScoreConfigInput>;

export interface ScoreConfig {
  name: string;
  usage: 'stars' | 'criterion';
  dataType: 'numeric' | 'categorical';
  min: number | null;
  max: number | null;
  categories: string[] | null;
  weight: number;
  description: string | null;
}

/** What every new project starts with: 1-5 stars and the three criteria people ask for most. */
export const defaultScoreConfigs: ScoreConfig[] = [
  {
    name: 'stars',
    usage: 'stars',
    dataType: 'numeric',
    min: 1,
    max: 5,
    categories: null,
    weight: 1,
    description: 'Overall rating, 1 to 5 stars',
  },
  {
    name: 'relevance',
    usage: 'criterion',
    dataType: 'numeric',
    min: 1,
    max: 5,
    categories: null,
    weight: 1,
    description: 'Does the answer address the question?',
  },
  {
    name: 'accuracy',
    usage: 'criterion',
    dataType: 'numeric',
    min: 1,
    max: 5,
    categories: null,
    weight: 1,
    description: 'Is the answer factually correct?',
  },
  {
    name: 'helpfulness',
    usage: 'criterion',
    dataType: 'numeric',
    min: 1,
    max: 5,
    categories: null,
    weight: 1,
    description: 'Does the answer help the user get done?',
  },
];
