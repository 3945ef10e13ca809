'use strict';
// The recovery suite (recovery-suite.js) with the history on one Redis.

require('./recovery-suite').recoverySuite('redis');
