export {
  type PersonalizeOptions,
  type PersonalizeResult,
  PersonalizeSpec,
  type PersonalizeSpecInput,
  personalize,
  ratingsBySegment,
  type SegmentOutcome,
  segmentModelRoute,
  segmentModelsToServe,
  withSegmentVariants,
} from './personalize.js';
