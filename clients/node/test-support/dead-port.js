'use strict';
// A port nothing listens on: bound, then closed, so a connection to it is refused.

const net = require('node:net');

async function deadPort() {
  const s = net.createServer();
  await new Promise((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address();
  await new Promise((resolve) => s.close(resolve));
  return port;
}

module.exports = { deadPort };
