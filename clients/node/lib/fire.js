'use strict';
// The fire-and-forget form of a call: `emitX.fire(client, data, { onError })` returns
// nothing and never rejects or throws; every failure, a wrong argument included, goes
// to one error callback exactly once. A controller can call it without `await` and
// without `.catch`, and no failure of the realtime server can crash its process.

const { defaultOnError } = require('./client.js');

/** Hands `err` to the callback; a callback that throws becomes a process warning, not a crash. */
function report(onError, err, info) {
  if (typeof onError !== 'function') {
    process.emitWarning(`${info.fn} failed and no onError was given: ${err && err.message}`, {
      type: 'FixrxWarning',
      code: 'FIXRX_FIRE_FAILED',
    });
    return;
  }
  try {
    onError(err, info);
  } catch (thrown) {
    process.emitWarning(`the onError callback of ${info.fn} threw: ${thrown && thrown.message}`, {
      type: 'FixrxWarning',
      code: 'FIXRX_ON_ERROR_THREW',
    });
  }
}

/**
 * The fire form of `call(client, arg, options)`. `prepare(arg, info)` may return the
 * argument to send instead (e.g. with its idempotency key made here, so that `info`
 * can name it) and add to `info`.
 */
function fireForm(name, call, prepare = (arg) => arg) {
  const fire = function (client, arg, options) {
    const info = { fn: name };
    const hasOptions = options !== null && typeof options === 'object';
    const onError = hasOptions && typeof options.onError === 'function' ? options.onError : defaultOnError(client);
    let pending;
    try {
      if (options !== undefined && !hasOptions) {
        throw new TypeError(`${name}.fire: options must be an object { onError?, deadlineMs?, signal? }`);
      }
      if (hasOptions && options.onError !== undefined && typeof options.onError !== 'function') {
        throw new TypeError(`${name}.fire: \`onError\` must be a function (err, info) => void`);
      }
      const { onError: _ignored, ...callOptions } = hasOptions ? options : {};
      pending = call(client, prepare(arg, info), callOptions);
    } catch (err) {
      pending = Promise.reject(err);
    }
    Promise.resolve(pending).then(undefined, (err) => report(onError, err, info));
  };
  Object.defineProperty(fire, 'name', { value: `${name}.fire` });
  return fire;
}

module.exports = { fireForm };
