'use strict';
// The recovery suite (recovery-suite.js) on one instance without Redis.

require('./recovery-suite').recoverySuite('memory');
