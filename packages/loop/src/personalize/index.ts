export { measureSegmentQuality, type SegmentQualityOptions } from './measure.js';
export {
  type PersonalizeOptions,
  type PersonalizeResult,
  PersonalizeSpec,
  type PersonalizeSpecInput,
  personalize,
  ratingsBySegment,
  type SegmentOutcome,
  segmentModelRoute,
  withSegmentVariants,
} from './personalize.js';
