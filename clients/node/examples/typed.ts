// A typed controller, checked by `tsc --noEmit -p .` (npm test). Not run.
import {
  createClient,
  emitBookingStatusChanged,
  emitBatch,
  emitPaymentFailed,
  emitServiceCreated,
  presence,
  sendChatMessage,
  verifyWebhook,
  createClientToken,
  FixrxError,
  type Emitted,
  type FireInfo,
} from '@fixrx/realtime-client';

const realtime = createClient({
  url: process.env.REALTIME_URL ?? 'http://localhost:3000',
  token: process.env.REALTIME_API_TOKEN ?? 'dev-api-token',
  timeoutMs: 3000,
  deadlineMs: 10000,
  onError: (err: Error, info: FireInfo) => console.warn(info.fn, info.id, err.message),
});

interface Req {
  user: { id: string; role: 'user' | 'vendor' };
  params: { id: string };
}

export async function confirmBooking(req: Req): Promise<Emitted | undefined> {
  const booking = { id: req.params.id, userId: 'u1', vendorId: 'v1', status: 'confirmed', price: 4200 };
  try {
    const sent = await emitBookingStatusChanged(realtime, {
      booking,
      previousStatus: 'pending',
      actor: { id: req.user.id, role: req.user.role },
    });
    const rooms: string[] = sent.rooms;
    console.log(sent.id, rooms.join(','));
    return sent;
  } catch (err) {
    if (err instanceof FixrxError && err.status === 422) {
      console.error(`invalid event: ${err.field ?? '?'}: ${err.message}`);
      return undefined;
    }
    throw err;
  }
}

export async function more(): Promise<void> {
  await emitPaymentFailed(realtime, { payment: { id: 'p1', userId: 7 }, reason: 'card declined', id: 'pay-p1-failed' });
  const answers: Emitted[] = await emitBatch(realtime, [
    { type: 'service:created', service: { id: 's1', vendorId: 'v1' } },
    { type: 'booking:cancelled', booking: { id: 'b1', userId: 'u1', vendorId: 'v1' }, reason: 'no show' },
  ]);
  console.log(answers.length);
  const { online, connections }: { online: boolean; connections: number } = await presence(realtime, 'user', 'u1');
  console.log(online, connections);
  const { message } = await sendChatMessage(realtime, {
    from: { type: 'vendor', id: 'v1' },
    to: { type: 'user', id: 'u1' },
    text: 'Your booking is confirmed.',
  });
  console.log(message.sentAt);

  // Deliberate type errors: each line below must be refused by the compiler.
  // @ts-expect-error a booking needs a vendorId
  await emitBookingStatusChanged(realtime, { booking: { id: 'b1', userId: 'u1' } });
  // @ts-expect-error previousStatus exists only on *:status_changed events
  await emitPaymentFailed(realtime, { payment: { id: 'p1', userId: 'u1' }, previousStatus: 'pending' });
  // @ts-expect-error presence is for 'user' or 'vendor'
  await presence(realtime, 'admin', 'a1');
  // @ts-expect-error the first argument is a client from createClient(), not a Socket.IO server
  await emitBookingStatusChanged({ to: () => undefined }, { booking: { id: 'b', userId: 'u', vendorId: 'v' } });
}

export function createService(req: Req, service: { id: string; vendorId: string }): void {
  // Fire and forget: nothing to await or catch, and no failure can crash the process.
  const nothing: void = emitServiceCreated.fire(realtime, { service, actor: { id: req.user.id } }, {
    onError: (err) => console.warn(`service:created not sent: ${err.message}`),
    deadlineMs: 2000,
  });
  console.log(nothing);
}

export async function withDeadline(signal: AbortSignal): Promise<void> {
  try {
    await presence(realtime, 'vendor', 'v1', { deadlineMs: 1000, signal });
  } catch (err) {
    if (err instanceof FixrxError && err.code === 'deadline_exceeded') console.warn('slow realtime server', err.cause);
  }
}

export function hooks(raw: Buffer, headers: Record<string, string | string[] | undefined>): boolean {
  return verifyWebhook(raw, headers, [process.env.WEBHOOK_SECRET ?? '', 'the-previous-secret'], { toleranceSecs: 120 });
}

export function tokens(privatePem: string): string[] {
  return [
    createClientToken({ sub: 'u1' }, process.env.JWT_SECRET ?? 'dev'),
    createClientToken({ sub: 'owner1', role: 'vendor', vendorId: 'v1' }, privatePem, { algorithm: 'RS256', expiresInSecs: 900 }),
  ];
}

export async function wrongNewCalls(): Promise<void> {
  // @ts-expect-error fire returns nothing to await or catch
  await emitServiceCreated.fire(realtime, { service: { id: 's', vendorId: 'v' } }).catch(() => undefined);
  // @ts-expect-error deadlineMs is a number of milliseconds
  await presence(realtime, 'user', 'u1', { deadlineMs: '1s' });
  // @ts-expect-error a role the server refuses
  createClientToken({ sub: 'u1', role: 'root' }, 'secret');
  // @ts-expect-error a token needs a sub
  createClientToken({ role: 'user' }, 'secret');
  // @ts-expect-error the raw body, not parsed JSON
  verifyWebhook({ type: 'presence.online' }, {}, 'secret');
}
