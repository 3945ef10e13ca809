// Hand-written types of @fixrx/realtime-client (CommonJS entry, index.js).

/** An id as the server reads it: a string of 1 to 128 characters, or an integer. */
export type Id = string | number;

export interface ClientOptions {
  /** The fixrx-realtime server, e.g. `http://localhost:3000`. */
  url: string | URL;
  /** A REST bearer token: one of the server's `API_TOKEN`. */
  token: string;
  /** Per-attempt timeout in milliseconds. Default 5000. */
  timeoutMs?: number;
  /** Retries after the first attempt. Default 6. */
  retries?: number;
  /** First backoff between attempts (doubles each time, with jitter). Default 100. */
  minBackoffMs?: number;
  /** Longest backoff between attempts. Default 2000. */
  maxBackoffMs?: number;
  /** Longest wait a `429`'s `Retry-After` may impose before a retry. Default 10000. */
  maxRetryAfterMs?: number;
}

/** A client of one server; create it once (e.g. at start-up) and share it. */
export interface Client {
  readonly url: string;
  readonly timeoutMs: number;
  readonly retries: number;
  readonly minBackoffMs: number;
  readonly maxBackoffMs: number;
  readonly maxRetryAfterMs: number;
}

export function createClient(options: ClientOptions): Client;

/** Who did it. */
export interface Actor {
  id: Id;
  role?: string;
}

/** Other fields pass through to the sockets untouched. */
export interface Service {
  id: Id;
  vendorId: Id;
  [field: string]: unknown;
}

export interface Booking {
  id: Id;
  userId: Id;
  vendorId: Id;
  [field: string]: unknown;
}

export interface Payment {
  id: Id;
  userId: Id;
  vendorId?: Id;
  [field: string]: unknown;
}

/** What every event may carry besides its entity. */
export interface EventOptions {
  actor?: Actor;
  /** The idempotency key (and event id). Generated (a UUID) when absent. */
  id?: Id;
  /** RFC 3339; the server's clock when absent. */
  occurredAt?: string;
}

export interface ServiceEvent extends EventOptions {
  service: Service;
}
export interface ServiceStatusChangedEvent extends ServiceEvent {
  previousStatus?: string;
}
export interface BookingEvent extends EventOptions {
  booking: Booking;
}
export interface BookingStatusChangedEvent extends BookingEvent {
  previousStatus?: string;
}
export interface BookingCancelledEvent extends BookingEvent {
  reason?: string;
}
export interface PaymentEvent extends EventOptions {
  payment: Payment;
}
export interface PaymentFailedEvent extends PaymentEvent {
  reason?: string;
}

/** The server's answer to an accepted event. */
export interface Emitted {
  id: string;
  type: EventType;
  /** e.g. `["user:u1", "vendor:v1"]` */
  rooms: string[];
}

export function emitServiceCreated(client: Client, event: ServiceEvent): Promise<Emitted>;
export function emitServiceUpdated(client: Client, event: ServiceEvent): Promise<Emitted>;
export function emitServiceStatusChanged(client: Client, event: ServiceStatusChangedEvent): Promise<Emitted>;
export function emitBookingCreated(client: Client, event: BookingEvent): Promise<Emitted>;
export function emitBookingStatusChanged(client: Client, event: BookingStatusChangedEvent): Promise<Emitted>;
export function emitBookingCancelled(client: Client, event: BookingCancelledEvent): Promise<Emitted>;
export function emitPaymentCompleted(client: Client, event: PaymentEvent): Promise<Emitted>;
export function emitPaymentFailed(client: Client, event: PaymentFailedEvent): Promise<Emitted>;

export type EventType =
  | 'service:created'
  | 'service:updated'
  | 'service:status_changed'
  | 'booking:created'
  | 'booking:status_changed'
  | 'booking:cancelled'
  | 'payment:completed'
  | 'payment:failed';

/** One event of a batch: a full envelope, discriminated by `type`. */
export type AnyEvent =
  | ({ type: 'service:created' | 'service:updated' } & ServiceEvent)
  | ({ type: 'service:status_changed' } & ServiceStatusChangedEvent)
  | ({ type: 'booking:created' } & BookingEvent)
  | ({ type: 'booking:status_changed' } & BookingStatusChangedEvent)
  | ({ type: 'booking:cancelled' } & BookingCancelledEvent)
  | ({ type: 'payment:completed' } & PaymentEvent)
  | ({ type: 'payment:failed' } & PaymentFailedEvent);

/** The catalog: each event type and its entity key. */
export const EVENT_TYPES: Readonly<Record<EventType, 'service' | 'booking' | 'payment'>>;

/** 1 to 500 events, validated as a whole, emitted in order; resolves one answer per event. */
export function emitBatch(client: Client, events: AnyEvent[]): Promise<Emitted[]>;

export interface Party {
  type: 'user' | 'vendor';
  id: Id;
}

export interface ChatMessageInput {
  from: Party;
  to: Party;
  /** 1 to 4000 characters. */
  text: string;
  /** Echoed to the sockets so that they can de-duplicate (up to 128 characters). */
  clientMsgId?: string | number;
}

export interface ChatMessage {
  id: string;
  from: { type: 'user' | 'vendor'; id: string };
  to: { type: 'user' | 'vendor'; id: string };
  text: string;
  sentAt: string;
  clientMsgId: string | null;
}

export interface ChatSent {
  message: ChatMessage;
  rooms: string[];
}

/** Retried only on 429, 503 or a refused connection (never after it may have been relayed). */
export function sendChatMessage(client: Client, message: ChatMessageInput): Promise<ChatSent>;

export interface Presence {
  online: boolean;
  connections: number;
}

export function presence(client: Client, kind: 'user' | 'vendor', id: Id): Promise<Presence>;

export function disconnectUser(client: Client, userId: Id): Promise<{ disconnected: number }>;

export type FixrxErrorCode =
  | 'invalid_json'
  | 'unauthorized'
  | 'not_found'
  | 'method_not_allowed'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'validation_failed'
  | 'rate_limited'
  | 'rejected'
  | 'unavailable'
  | 'internal'
  | 'network'
  | 'timeout'
  | 'invalid_response'
  | (string & {});

/** Every failure: an error answer of the server, or a transport failure. */
export class FixrxError extends Error {
  readonly name: 'FixrxError';
  /** HTTP status; undefined for `network` and `timeout`. */
  readonly status: number | undefined;
  /** The server's `error.code`, or `network` / `timeout` for transport failures. */
  readonly code: FixrxErrorCode;
  /** The offending field of a `422` (e.g. `booking.userId`), when the server names one. */
  readonly field: string | undefined;
  /** On `429`: the server's `Retry-After`, in milliseconds. */
  readonly retryAfterMs: number | undefined;
  /** Attempts made before this error was thrown. */
  readonly attempts: number | undefined;
  constructor(
    message: string,
    details?: {
      status?: number;
      code: string;
      field?: string;
      retryAfterMs?: number;
      attempts?: number;
      cause?: unknown;
    },
  );
}
