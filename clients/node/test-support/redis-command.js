'use strict';
// One Redis command on a connection of its own (node:net), for the tests: `CLIENT PAUSE`
// must come from outside the server, whose connections are the ones paused. (Not under
// test/, so that `node --test test/` does not run it as a test file.)

const net = require('node:net');

/** Sends one inline command to 127.0.0.1:`port`; resolves the first line of the reply. */
function redisCommand(port, line, { timeoutMs = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let reply = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`redis on port ${port} did not answer \`${line}\` within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('connect', () => socket.write(`${line}\r\n`));
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      const end = reply.indexOf('\r\n');
      if (end >= 0) {
        clearTimeout(timer);
        socket.destroy();
        resolve(reply.slice(0, end));
      }
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

module.exports = { redisCommand };
