// Types of the ESM entry (index.mjs): the same as the CommonJS entry's.
import realtime from './index.js';

export * from './index.js';
export default realtime;
