'use strict';
// Contract section 2: authentication at the handshake. Token locations, their
// precedence, and every refusal reason; a refused client joins no room.

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./helpers');

let server;
h.serverPerFile((started) => {
  server = started;
});

/** Proves `c` is in `user:<sub>`: an event for that user reaches it. */
async function assertReceivesUserEvents(c, sub) {
  const ev = h.bookingEvent(sub, h.uid('v'));
  await h.emitEvent(server, ev);
  const got = await c.waitFor('booking:status_changed', (e) => e.booking.id === ev.booking.id);
  assert.equal(got.args[0].booking.userId, sub);
}

describe('token locations', () => {
  for (const transport of ['polling', 'websocket']) {
    it(`auth.token connects and joins user:<sub> (${transport})`, async () => {
      const sub = h.uid('u');
      const c = await h.connect(server, { token: h.userToken(sub), transports: [transport] });
      assert.equal(c.transport, transport);
      await assertReceivesUserEvents(c, sub);
    });

    it(`Authorization: Bearer header connects and joins user:<sub> (${transport})`, async () => {
      const sub = h.uid('u');
      const c = await h.connect(server, {
        extraHeaders: { authorization: `Bearer ${h.userToken(sub)}` },
        transports: [transport],
      });
      assert.equal(c.transport, transport);
      await assertReceivesUserEvents(c, sub);
    });

    it(`?token= query connects and joins user:<sub> (${transport})`, async () => {
      const sub = h.uid('u');
      const c = await h.connect(server, { query: { token: h.userToken(sub) }, transports: [transport] });
      assert.equal(c.transport, transport);
      await assertReceivesUserEvents(c, sub);
    });
  }

  it('the Bearer scheme is case-insensitive', async () => {
    const sub = h.uid('u');
    const c = await h.connect(server, { extraHeaders: { authorization: `bearer ${h.userToken(sub)}` } });
    await assertReceivesUserEvents(c, sub);
  });
});

describe('token precedence: the first location present is the one checked', () => {
  it('an invalid auth.token is refused even with a valid Bearer header', async () => {
    const sub = h.uid('u');
    const { client, error } = await h.connectRefused(server, {
      token: h.token({ sub }, { secret: 'not-the-server-secret' }),
      extraHeaders: { authorization: `Bearer ${h.userToken(sub)}` },
    });
    assert.equal(error.message, 'unauthorized: invalid signature');
    const control = await h.connect(server, { token: h.userToken(sub) });
    await assertReceivesUserEvents(control, sub);
    await h.expectNothing(client);
  });

  it('an invalid auth.token is refused even with a valid ?token= query', async () => {
    const sub = h.uid('u');
    const { error } = await h.connectRefused(server, {
      token: 'garbage',
      query: { token: h.userToken(sub) },
    });
    assert.equal(error.message, 'unauthorized: token malformed');
  });

  it('an expired Bearer header is refused even with a valid ?token= query', async () => {
    const sub = h.uid('u');
    const { error } = await h.connectRefused(server, {
      extraHeaders: { authorization: `Bearer ${h.token({ sub, exp: h.nowSecs() - 60 })}` },
      query: { token: h.userToken(sub) },
    });
    assert.equal(error.message, 'unauthorized: token expired');
  });

  it('a valid auth.token wins over an invalid header and query', async () => {
    const sub = h.uid('u');
    const c = await h.connect(server, {
      token: h.userToken(sub),
      extraHeaders: { authorization: 'Bearer garbage' },
      query: { token: 'garbage' },
    });
    await assertReceivesUserEvents(c, sub);
  });

  it('a valid Bearer header wins over an invalid query token', async () => {
    const sub = h.uid('u');
    const c = await h.connect(server, {
      extraHeaders: { authorization: `Bearer ${h.userToken(sub)}` },
      query: { token: 'garbage' },
    });
    await assertReceivesUserEvents(c, sub);
  });

  it('the identity comes from the checked token, not from a later location', async () => {
    const first = h.uid('u');
    const second = h.uid('u');
    const c = await h.connect(server, {
      token: h.userToken(first),
      extraHeaders: { authorization: `Bearer ${h.userToken(second)}` },
    });
    await assertReceivesUserEvents(c, first);
    await h.emitEvent(server, h.bookingEvent(second, h.uid('v')));
    await h.expectNothing(c, 'booking:status_changed', (e) => e.booking.userId === second);
  });
});

describe('refusals: connect_error says why, and the client receives nothing', () => {
  const cases = [
    { name: 'no token anywhere', make: () => ({}), message: 'unauthorized: token missing' },
    { name: 'auth without a token', make: () => ({ auth: { other: 'x' } }), message: 'unauthorized: token missing' },
    {
      name: 'expired token (auth.token)',
      make: (sub) => ({ token: h.token({ sub, exp: h.nowSecs() - 60 }) }),
      message: 'unauthorized: token expired',
    },
    {
      name: 'expired token (Bearer header)',
      make: (sub) => ({ extraHeaders: { authorization: `Bearer ${h.token({ sub, exp: h.nowSecs() - 60 })}` } }),
      message: 'unauthorized: token expired',
    },
    {
      name: 'expired token (?token= query)',
      make: (sub) => ({ query: { token: h.token({ sub, exp: h.nowSecs() - 60 }) } }),
      message: 'unauthorized: token expired',
    },
    {
      name: 'wrong signature',
      make: (sub) => ({ token: h.token({ sub }, { secret: 'not-the-server-secret' }) }),
      message: 'unauthorized: invalid signature',
    },
    {
      name: 'tampered payload (signature of another payload)',
      make: (sub) => {
        const [head, , sig] = h.userToken(sub).split('.');
        const forged = Buffer.from(JSON.stringify({ sub, role: 'admin', exp: h.nowSecs() + 600 })).toString('base64url');
        return { token: `${head}.${forged}.${sig}` };
      },
      message: 'unauthorized: invalid signature',
    },
    { name: 'malformed token', make: () => ({ token: 'not-a-jwt' }), message: 'unauthorized: token malformed' },
    {
      name: 'malformed token (three garbage segments)',
      make: () => ({ token: 'abc.def.ghi' }),
      message: 'unauthorized: token malformed',
    },
    {
      name: 'invalid role',
      make: (sub) => ({ token: h.token({ sub, role: 'root' }) }),
      message: 'unauthorized: invalid role',
    },
    {
      name: 'missing exp claim',
      make: (sub) => ({ token: h.token({ sub, exp: undefined }) }),
      message: /^unauthorized: .*exp/,
    },
    {
      name: 'missing sub claim',
      make: () => ({ token: h.token({ role: 'user' }) }),
      message: /^unauthorized: .*sub/,
    },
    {
      name: 'HS512 instead of HS256',
      make: (sub) => ({ token: h.token({ sub }, { algorithm: 'HS512' }) }),
      message: /^unauthorized: /,
    },
    {
      name: 'unsigned token (alg none)',
      make: (sub) => {
        const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
        return { token: `${enc({ alg: 'none', typ: 'JWT' })}.${enc({ sub, exp: h.nowSecs() + 600 })}.` };
      },
      message: /^unauthorized: /,
    },
  ];

  for (const tc of cases) {
    it(`${tc.name} → connect_error`, async () => {
      const sub = h.uid('u');
      const { client, error } = await h.connectRefused(server, tc.make(sub));
      if (typeof tc.message === 'string') assert.equal(error.message, tc.message);
      else assert.match(error.message, tc.message);
      // The event is emitted (a valid client of the same user gets it), the refused one gets nothing.
      const control = await h.connect(server, { token: h.userToken(sub) });
      await assertReceivesUserEvents(control, sub);
      await h.expectNothing(client);
      assert.equal(client.socket.connected, false);
    });
  }

  it('a refused vendor token receives no vendor events', async () => {
    const vendorId = h.uid('v');
    const { client, error } = await h.connectRefused(server, {
      token: h.token({ sub: h.uid('u'), role: 'vendor', vendorId, exp: h.nowSecs() - 5 }),
    });
    assert.equal(error.message, 'unauthorized: token expired');
    await h.emitEvent(server, { type: 'service:created', service: { id: h.uid('s'), vendorId } });
    await h.emitEvent(server, h.bookingEvent(h.uid('u'), vendorId));
    await h.expectNothing(client);
  });
});
