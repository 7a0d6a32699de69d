export * from './kappa.js';
export * from './krippendorff.js';
export * from './people.js';
export * from './summary.js';
export type { RatingValue } from './values.js';
