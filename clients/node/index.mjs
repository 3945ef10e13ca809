// ESM entry of @fixrx/realtime-client: the same functions as the CommonJS index.js.
import client from './index.js';

export const {
  createClient,
  FixrxError,
  EVENT_TYPES,
  emitServiceCreated,
  emitServiceUpdated,
  emitServiceStatusChanged,
  emitBookingCreated,
  emitBookingStatusChanged,
  emitBookingCancelled,
  emitPaymentCompleted,
  emitPaymentFailed,
  emitBatch,
  sendChatMessage,
  presence,
  disconnectUser,
  verifyWebhook,
  createClientToken,
} = client;

export default client;
