// Hand-written types of @fixrx/realtime-client (CommonJS entry, index.js).
import type { KeyObject } from 'node:crypto';

/** An id as the server reads it: a string of 1 to 128 characters, or an integer. */
export type Id = string | number;

export interface ClientOptions {
  /** The fixrx-realtime server, e.g. `http://localhost:3000`. */
  url: string | URL;
  /** A REST bearer token: one of the server's `API_TOKEN`. */
  token: string;
  /** Per-attempt timeout in milliseconds. Default 5000. */
  timeoutMs?: number;
  /**
   * The whole call, every attempt, retry and wait included, in milliseconds; a call
   * that cannot succeed by then rejects with `code: 'deadline_exceeded'`. Default 30000.
   */
  deadlineMs?: number;
  /** Retries after the first attempt. Default 6. */
  retries?: number;
  /** First backoff between attempts (doubles each time, with jitter). Default 100. */
  minBackoffMs?: number;
  /** Longest backoff between attempts. Default 2000. */
  maxBackoffMs?: number;
  /** Longest wait a `429`'s `Retry-After` may impose before a retry. Default 10000. */
  maxRetryAfterMs?: number;
  /** The error callback of `fn.fire(...)` calls that give none. */
  onError?: OnError;
}

/** A client of one server; create it once (e.g. at start-up) and share it. */
export interface Client {
  readonly url: string;
  readonly timeoutMs: number;
  readonly deadlineMs: number;
  readonly retries: number;
  readonly minBackoffMs: number;
  readonly maxBackoffMs: number;
  readonly maxRetryAfterMs: number;
}

export function createClient(options: ClientOptions): Client;

/** Per call: overrides the client's deadline, and lets the caller abort. */
export interface CallOptions {
  /** This call's deadline in milliseconds (default: the client's `deadlineMs`). */
  deadlineMs?: number;
  /**
   * Aborts the call, even between attempts; it then rejects with `signal.reason` (an
   * `AbortError` for `controller.abort()`), as fetch does. An aborted emit may still
   * have been emitted: call again with the same `id` to be sure.
   */
  signal?: AbortSignal;
}

/** What `onError` is told besides the error. */
export interface FireInfo {
  /** The function, e.g. `emitServiceCreated`. */
  fn: string;
  /** Single events: the idempotency key sent (yours, or the one made for the call). */
  id?: Id;
  /** emitBatch: each event's key, in order. */
  ids?: Array<Id | undefined>;
}

/**
 * Called once per failed fire-and-forget call: a `FixrxError`, a `TypeError` for a
 * wrong argument, or the abort reason. A callback that throws becomes a process warning.
 */
export type OnError = (err: Error, info: FireInfo) => void;

export interface FireOptions extends CallOptions {
  /** Default: the client's `onError`; without either, a process warning (`FIXRX_FIRE_FAILED`). */
  onError?: OnError;
}

/**
 * A call with its fire-and-forget form. `fire` returns nothing, never throws and never
 * rejects: every failure goes to `onError`, once.
 */
export interface Callable<A, R> {
  (client: Client, arg: A, options?: CallOptions): Promise<R>;
  fire(client: Client, arg: A, options?: FireOptions): void;
}

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

export const emitServiceCreated: Callable<ServiceEvent, Emitted>;
export const emitServiceUpdated: Callable<ServiceEvent, Emitted>;
export const emitServiceStatusChanged: Callable<ServiceStatusChangedEvent, Emitted>;
export const emitBookingCreated: Callable<BookingEvent, Emitted>;
export const emitBookingStatusChanged: Callable<BookingStatusChangedEvent, Emitted>;
export const emitBookingCancelled: Callable<BookingCancelledEvent, Emitted>;
export const emitPaymentCompleted: Callable<PaymentEvent, Emitted>;
export const emitPaymentFailed: Callable<PaymentFailedEvent, Emitted>;

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
export const emitBatch: Callable<AnyEvent[], Emitted[]>;

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
export const sendChatMessage: Callable<ChatMessageInput, ChatSent>;

export interface Presence {
  online: boolean;
  connections: number;
}

export function presence(client: Client, kind: 'user' | 'vendor', id: Id, options?: CallOptions): Promise<Presence>;

export const disconnectUser: Callable<Id, { disconnected: number }>;

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
  | 'deadline_exceeded'
  | 'invalid_response'
  | (string & {});

/** Every failure: an error answer of the server, or a transport failure. */
export class FixrxError extends Error {
  readonly name: 'FixrxError';
  /** HTTP status; undefined for `network`, `timeout` and `deadline_exceeded`. */
  readonly status: number | undefined;
  /**
   * The server's `error.code`; `http_<status>` for an answer without one (a gateway's
   * 502/504); `network` / `timeout` for transport failures; `deadline_exceeded` when the
   * call's deadline ran out (`cause`: the last attempt's error).
   */
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

/** Headers as node's `req.headers` has them, or a fetch `Headers`. */
export type WebhookHeaders = Record<string, string | string[] | undefined> | { get(name: string): string | null };

export interface VerifyWebhookOptions {
  /** Largest difference between the request's timestamp and `now`, either way. Default 300. */
  toleranceSecs?: number;
  /** Unix milliseconds to check against. Default `Date.now()`. */
  now?: number;
}

/**
 * Whether a hook request (presence webhook, chat hook) was signed by the server:
 * `X-Webhook-Signature` is `sha256=` and the HMAC-SHA256 of `"<X-Webhook-Timestamp>.<raw body>"`
 * under one of `secret` (a list while the secret is rotated), compared in constant time,
 * and the timestamp is within `toleranceSecs`. Pass the bytes received, before any JSON
 * parsing. False for anything missing or malformed; a TypeError for a parsed body.
 */
export function verifyWebhook(
  rawBody: Uint8Array | ArrayBuffer | string,
  headers: WebhookHeaders,
  secret: string | Uint8Array | ReadonlyArray<string | Uint8Array>,
  options?: VerifyWebhookOptions,
): boolean;

/** The claims the server's handshake reads; other claims pass through. */
export interface ClientTokenClaims {
  /** The user id: a string of 1 to 128 characters, or an integer. */
  sub: Id;
  /** Default (absent): `user`. */
  role?: 'user' | 'vendor' | 'admin';
  /** Vendors: their vendor id; defaults to `sub` on the server. */
  vendorId?: Id;
  /** Unix seconds; default `expiresInSecs` from now. */
  exp?: number;
  /** Unix seconds before which the server refuses the token. */
  nbf?: number;
  [claim: string]: unknown;
}

export interface ClientTokenOptions {
  /** Checked against the key's: HS256 for a secret, RS256 for RSA, ES256 for EC P-256. */
  algorithm?: 'HS256' | 'RS256' | 'ES256';
  /** Lifetime when the claims have no `exp`. Default 3600. */
  expiresInSecs?: number;
  /** `iss`: the server's JWT_ISSUER, when it has one. */
  issuer?: string;
  /** `aud`: the server's JWT_AUDIENCE, when it has one. */
  audience?: string;
  /** `kid` in the header. */
  keyId?: string;
}

/**
 * Signs a client token the server's Socket.IO handshake accepts, with node:crypto:
 * `key` is the JWT_SECRET (HS256), or the private key (PEM or KeyObject) whose public
 * half is the server's JWT_PUBLIC_KEY (RS256 for RSA, ES256 for EC P-256).
 */
export function createClientToken(
  claims: ClientTokenClaims,
  key: string | Uint8Array | KeyObject,
  options?: ClientTokenOptions,
): string;
