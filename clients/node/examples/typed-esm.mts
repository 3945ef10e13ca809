// The ESM entry's types, checked by `tsc --noEmit -p .` (npm test). Not run.
import realtime, { createClient, createClientToken, emitServiceCreated, FixrxError, verifyWebhook } from '@fixrx/realtime-client';

const client = createClient({ url: 'http://localhost:3000', token: 'dev-api-token' });
const answer = await emitServiceCreated(client, { service: { id: 's1', vendorId: 'v1', name: 'Plumbing' } });
const rooms: string[] = answer.rooms;
const same: typeof createClient = realtime.createClient;
const isError = (e: unknown): boolean => e instanceof FixrxError;
console.log(rooms, same, isError);
emitServiceCreated.fire(client, { service: { id: 's2', vendorId: 'v1' } }, { onError: (err, info) => console.warn(info.id, err) });
const token: string = createClientToken({ sub: 'u1' }, 'secret', { expiresInSecs: 60 });
const ok: boolean = verifyWebhook('{}', new Headers(), 'secret');
console.log(token, ok);
