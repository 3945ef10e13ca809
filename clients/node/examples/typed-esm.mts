// The ESM entry's types, checked by `tsc --noEmit -p .` (npm test). Not run.
import realtime, { createClient, emitServiceCreated, FixrxError } from '@fixrx/realtime-client';

const client = createClient({ url: 'http://localhost:3000', token: 'dev-api-token' });
const answer = await emitServiceCreated(client, { service: { id: 's1', vendorId: 'v1', name: 'Plumbing' } });
const rooms: string[] = answer.rooms;
const same: typeof createClient = realtime.createClient;
const isError = (e: unknown): boolean => e instanceof FixrxError;
console.log(rooms, same, isError);
