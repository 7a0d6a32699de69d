export * from './calibrate.js';
export * from './calibrate-raters.js';
export * from './distributions.js';
export type { Hyperparameters, RatingColumns } from './model.js';
export * from './recalibrate.js';
export * from './snapshot-codec.js';
