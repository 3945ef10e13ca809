'use strict';
// The recovery suite (recovery-suite.js) with the history on a Redis Cluster of three
// primaries, split into three partitions, one per primary.

require('./recovery-suite').recoverySuite('cluster');
