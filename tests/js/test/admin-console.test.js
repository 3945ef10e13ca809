'use strict';
// The admin console in a real browser: Debian's headless Chromium driven by
// playwright-core, against the real server, with official socket.io-client sockets as
// the traffic. Each step saves a screenshot under tests/js/output/admin-console/.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');
const h = require('./helpers');
const { startRedis } = require('./redis');

const ADMIN_TOKEN = 'js-suite-admin-token-0123456789abcdef';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const OUTPUT = path.resolve(__dirname, '..', 'output', 'admin-console');
/** The console polls every second; what it shows must follow within 2 s. */
const LIVE = 2000;
// As the workplace notes advise: no sandbox as root, and no background traffic to
// Google's hosts, which this machine's closed network refuses.
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

async function launch() {
  assert.ok(fs.existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM}: apt-get install chromium`);
  return chromium.launch({ executablePath: CHROMIUM, args: ARGS });
}

/** A page with the console's problems collected: script errors and CSP refusals. */
async function openPage(browser, viewport = { width: 1366, height: 900 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  return { context, page, problems };
}

let shot = 0;
async function screenshot(page, name) {
  fs.mkdirSync(OUTPUT, { recursive: true });
  shot += 1;
  const file = path.join(OUTPUT, `${String(shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

async function signIn(page, server, token = ADMIN_TOKEN) {
  await page.goto(`${server.url}/admin`);
  await page.locator('#token').fill(token);
  await page.locator('#token').press('Enter');
}

const text = (page, selector) => page.locator(selector).first().textContent();

describe('the admin console in Chromium', () => {
  let server;
  let browser;
  let page;
  let problems;
  before(async () => {
    fs.rmSync(OUTPUT, { recursive: true, force: true });
    server = await h.startServer({ ADMIN_TOKEN });
    browser = await launch();
    ({ page, problems } = await openPage(browser));
  });
  after(async () => {
    h.closeAll();
    if (browser) await browser.close();
    if (server) await server.stop();
  });

  it('refuses a wrong token, then signs in with the right one using the keyboard only', async () => {
    await signIn(page, server, 'not-the-token');
    await page.waitForFunction(() => document.querySelector('#signin-error').textContent.trim() !== '');
    assert.match(await text(page, '#signin-error'), /wrong token/i);
    assert.equal(await page.locator('#console').isVisible(), false, 'the console stays hidden');
    await screenshot(page, 'signin-wrong-token');

    await page.locator('#token').fill('');
    await page.locator('#token').focus();
    await page.keyboard.type(ADMIN_TOKEN);
    await page.keyboard.press('Enter');
    await page.locator('#console').waitFor({ state: 'visible', timeout: h.TIMEOUT });
    await page.waitForFunction(() => document.querySelector('#conn-status').dataset.state === 'live');
    assert.equal(await page.locator('#signin').isVisible(), false);
    assert.equal(await text(page, '#total-connections'), '0');
    // The token is not shown anywhere on the page.
    assert.ok(!(await page.content()).includes(ADMIN_TOKEN));
    await screenshot(page, 'signed-in');
  });

  it('follows official clients connecting and leaving', async () => {
    const ids = [h.uid('u'), h.uid('u'), h.uid('u')];
    const clients = [];
    for (const id of ids) clients.push(await h.connect(server, { token: h.userToken(id) }));
    await page.waitForFunction(() => document.querySelector('#total-connections').textContent === '3', null, {
      timeout: LIVE + 1000,
    });
    const row = page.locator('#instances tbody tr').first();
    assert.equal(await row.locator('td.connections').textContent(), '3');
    await screenshot(page, 'three-clients');
    clients[0].close();
    clients[1].close();
    await page.waitForFunction(() => document.querySelector('#total-connections').textContent === '1', null, {
      timeout: LIVE + 1000,
    });
    await screenshot(page, 'two-left');
    clients[2].close();
    await page.waitForFunction(() => document.querySelector('#total-connections').textContent === '0', null, {
      timeout: LIVE + 1000,
    });
  });

  it('lists a REST event in the latest events within 2 s', async () => {
    const user = h.uid('u');
    const vendor = h.uid('v');
    const sent = Date.now();
    const { id } = await h.emitEvent(server, h.bookingEvent(user, vendor));
    const row = page.locator(`#latest tbody tr[data-event-id="${id}"]`);
    await row.waitFor({ state: 'visible', timeout: LIVE });
    const shownWithin = Date.now() - sent;
    assert.ok(shownWithin <= LIVE, `shown after ${shownWithin} ms`);
    const cells = await row.locator('td').allTextContents();
    assert.ok(cells.includes('booking:status_changed'), JSON.stringify(cells));
    assert.ok(cells.some((c) => c.includes(`user:${user}`) && c.includes(`vendor:${vendor}`)), JSON.stringify(cells));
    await page.locator('#by-type tbody tr[data-type="booking:status_changed"]').waitFor({ timeout: LIVE });
    // A burst draws on the plot.
    for (let i = 0; i < 20; i++) await h.emitEvent(server, h.bookingEvent(user, vendor));
    await page.waitForFunction(() => Number(document.querySelector('#events-last-minute').textContent) >= 21, null, {
      timeout: LIVE + 1000,
    });
    await screenshot(page, 'latest-events');
  });

  it('looks up a user: online, its sockets, its latest events; then offline', async () => {
    const user = h.uid('u');
    const phone = await h.connect(server, { token: h.userToken(user) });
    const laptop = await h.connect(server, { token: h.userToken(user), transports: ['polling'] });
    const { id } = await h.emitEvent(server, h.bookingEvent(user, h.uid('v')));
    await page.locator('#lookup-kind').selectOption('user');
    await page.locator('#lookup-id').fill(user);
    await page.locator('#lookup-id').press('Enter');
    await page.locator('#lookup-result').waitFor({ state: 'visible', timeout: h.TIMEOUT });
    await page.waitForFunction(() => document.querySelector('#lookup-state').textContent.trim() === 'online');
    assert.equal(await text(page, '#lookup-connections'), '2');
    const sockets = await page.locator('#lookup-sockets li').allTextContents();
    assert.equal(sockets.length, 2, JSON.stringify(sockets));
    assert.ok(sockets.some((s) => s.includes('websocket')) && sockets.some((s) => s.includes('polling')), JSON.stringify(sockets));
    // A fingerprint, never the socket id.
    for (const s of sockets) for (const c of [phone, laptop]) assert.ok(!s.includes(c.socket.id), s);
    await page.locator(`#lookup-latest tbody tr[data-event-id="${id}"]`).waitFor({ timeout: h.TIMEOUT });
    await screenshot(page, 'lookup-online');
    phone.close();
    laptop.close();
    await page.waitForFunction(() => document.querySelector('#lookup-state').textContent.trim() === 'offline', null, {
      timeout: h.TIMEOUT,
    });
    await screenshot(page, 'lookup-offline');
  });

  it('disconnects a user after a confirmation, and only that user', async () => {
    const user = h.uid('u');
    const target = await h.connect(server, { token: h.userToken(user) });
    const bystander = await h.connect(server, { token: h.userToken(h.uid('u')) });
    const reasons = [];
    target.socket.on('disconnect', (reason) => reasons.push(reason));
    await page.locator('#lookup-id').fill(user);
    await page.locator('#lookup-id').press('Enter');
    await page.waitForFunction(() => document.querySelector('#lookup-state').textContent.trim() === 'online', null, {
      timeout: h.TIMEOUT,
    });
    await page.locator('#disconnect').click();
    const dialog = page.locator('#confirm-disconnect');
    await dialog.waitFor({ state: 'visible' });
    assert.match(await dialog.textContent(), new RegExp(`user:${user}`));
    await screenshot(page, 'confirm-disconnect');
    // Cancel first: nothing happens.
    await page.locator('#confirm-disconnect-no').click();
    await h.sleep(h.QUIET);
    assert.equal(target.socket.connected, true, 'cancel keeps the user connected');
    await page.locator('#disconnect').click();
    await page.locator('#confirm-disconnect-yes').click();
    await h.waitUntil(() => reasons.length > 0, 'the client to be disconnected');
    assert.equal(reasons[0], 'io server disconnect');
    await page.waitForFunction(() => /Disconnected 1 socket/.test(document.querySelector('#disconnect-result').textContent));
    await h.sleep(h.QUIET);
    assert.equal(bystander.socket.connected, true, 'another user stays connected');
    await page.waitForFunction(() => document.querySelector('#lookup-state').textContent.trim() === 'offline', null, {
      timeout: h.TIMEOUT,
    });
    await screenshot(page, 'disconnected');
  });

  it('sends a test event from the form to the room, and to no one else', async () => {
    const user = h.uid('u');
    const target = await h.connect(server, { token: h.userToken(user) });
    const other = await h.connect(server, { token: h.userToken(h.uid('u')) });
    await page.locator('#test-room').fill(`user:${user}`);
    await page.locator('#test-message').fill('Can you see this?');
    await page.locator('#test-message').press('Enter');
    const got = await target.waitFor('admin:test');
    const envelope = got.args[0];
    assert.equal(envelope.type, 'admin:test');
    assert.equal(envelope.message, 'Can you see this?');
    h.assertRfc3339(envelope.occurredAt);
    await page.waitForFunction((id) => document.querySelector('#test-event-result').textContent.includes(id), envelope.id);
    await h.expectNothing([other], 'admin:test');
    await page.locator(`#latest tbody tr[data-event-id="${envelope.id}"]`).waitFor({ timeout: LIVE });
    await screenshot(page, 'test-event-sent');
    // A room that is not a room is refused with its reason, and nothing is sent.
    await page.locator('#test-room').fill('nowhere');
    await page.locator('#test-room').press('Enter');
    await page.waitForFunction(() => /room/i.test(document.querySelector('#test-event-result').textContent));
    await h.expectNothing([target, other], 'admin:test', (e) => e.id !== envelope.id);
  });

  it('fits a phone screen', async () => {
    const phone = await openPage(browser, { width: 390, height: 844 });
    await signIn(phone.page, server);
    await phone.page.locator('#console').waitFor({ state: 'visible', timeout: h.TIMEOUT });
    // Nothing wider than the screen: no sideways scrolling.
    const overflow = await phone.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `the page is ${overflow}px wider than the phone`);
    await screenshot(phone.page, 'phone');
    assert.deepEqual(phone.problems, []);
    await phone.context.close();
  });

  it('says clearly when it lost the server, and has had no script or policy error', async () => {
    await server.stop();
    await page.waitForFunction(() => document.querySelector('#conn-status').dataset.state === 'lost', null, {
      timeout: h.TIMEOUT,
    });
    assert.equal(await page.locator('#lost-banner').isVisible(), true);
    assert.match(await text(page, '#conn-status'), /lost/i);
    await screenshot(page, 'connection-lost');
    server = null;
    assert.deepEqual(problems, []);
  });
});

describe('the admin console with Redis and two instances', () => {
  let redis;
  let a;
  let b;
  let browser;
  before(async () => {
    redis = await startRedis();
    a = await h.startServer({ ADMIN_TOKEN, REDIS_URL: redis.url });
    b = await h.startServer({ ADMIN_TOKEN, REDIS_URL: redis.url });
    browser = await launch();
  });
  after(async () => {
    h.closeAll();
    if (browser) await browser.close();
    for (const s of [a, b]) if (s) await s.stop();
    if (redis) await redis.stop();
  });

  it('shows the connections of both on the console of one', async () => {
    const { page, problems } = await openPage(browser);
    await signIn(page, a);
    await page.locator('#console').waitFor({ state: 'visible', timeout: h.TIMEOUT });
    await h.connect(a, { token: h.userToken(h.uid('u')) });
    for (let i = 0; i < 2; i++) await h.connect(b, { token: h.userToken(h.uid('u')) });
    await page.waitForFunction(() => document.querySelector('#total-connections').textContent === '3', null, {
      timeout: LIVE + 1000,
    });
    assert.equal(await text(page, '#instance-count'), '2');
    const counts = await page.locator('#instances tbody tr td.connections').allTextContents();
    assert.deepEqual(counts.map(Number).sort(), [1, 2]);
    await screenshot(page, 'two-instances');
    assert.deepEqual(problems, []);
  });
});
