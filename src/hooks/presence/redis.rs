//! Presence shared by every instance, in Redis. Every decision is one Lua script, so
//! two instances can never both announce the same transition.
//!
//! Keys, all under one hash tag (one Cluster slot, so each script is atomic):
//! - `instances`: live instances, scored by their last heartbeat (Redis `TIME`, so the
//!   instances' clocks do not matter); `reaping`: dead ones whose sockets are being removed;
//! - `inst:<instance>`: the identities an instance has sockets for;
//! - `id:<who>`: per instance, its socket count for `who`; `_on` once announced online;
//!   `_left` when its last socket left;
//! - `pending`: identities waiting out their grace, scored by the deadline;
//! - `outbox`: the transitions, a stream in decision order; `sender`: the delivery lease.

use std::time::Duration;

use crate::redis_link::RedisConn;
use redis::Script;

use super::{Applied, Beat, Change, DEAD_AFTER, HEARTBEAT, Queued, StoreError, Transition};

/// Transitions kept for a receiver that does not answer; past it new ones are given up.
pub const OUTBOX_CAP: u64 = 100_000;
/// Identities one sweep may reap or expire (a script must stay short: Redis waits for it).
const SWEEP_BUDGET: u64 = 2_000;
/// The sender lease outlives a few missed renewals (renewed every heartbeat).
const LEASE: Duration = Duration::from_secs(5);
const PREFIX: &str = "fixrx:{presence}:";

/// Shared by every script: the clock, the sum over instances, and the one rule that
/// turns counts into transitions.
macro_rules! script {
    ($body:literal) => {
        concat!(
            r"
local p = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seed, cap, grace = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local n, dropped = 0, 0
local function total(h)
  local v = redis.call('HGETALL', h)
  local s = 0
  for i = 1, #v, 2 do
    if string.sub(v[i], 1, 1) ~= '_' then s = s + tonumber(v[i + 1]) end
  end
  return s
end
local function announce(who, change, at)
  if redis.call('XLEN', p .. 'outbox') >= cap then dropped = dropped + 1; return end
  n = n + 1
  redis.call('XADD', p .. 'outbox', '*', 'id', seed .. '.' .. n, 'c', change, 'w', who, 'at', at)
end
local function settle(who)
  local h = p .. 'id:' .. who
  local on = redis.call('HGET', h, '_on')
  if total(h) > 0 then
    if redis.call('ZREM', p .. 'pending', who) == 1 then
      redis.call('HDEL', h, '_left')
    elseif not on then
      redis.call('HSET', h, '_on', now)
      announce(who, 'online', now)
    end
  elseif on then
    if not redis.call('ZSCORE', p .. 'pending', who) then
      redis.call('ZADD', p .. 'pending', now + grace, who)
      redis.call('HSET', h, '_left', now)
    end
  else
    redis.call('DEL', h)
  end
end
",
            $body
        )
    };
}

const APPLY: &str = script!(
    r"
local inst = ARGV[5]
if not redis.call('ZSCORE', p .. 'instances', inst) then return {-1, 0} end
for i = 6, #ARGV, 2 do
  local who, c = ARGV[i], tonumber(ARGV[i + 1])
  if c > 0 then
    redis.call('HSET', p .. 'id:' .. who, inst, c)
    redis.call('SADD', p .. 'inst:' .. inst, who)
  else
    redis.call('HDEL', p .. 'id:' .. who, inst)
    redis.call('SREM', p .. 'inst:' .. inst, who)
  end
  settle(who)
end
return {n, dropped}
"
);

const HEARTBEAT_SCRIPT: &str = script!(
    r"
local inst = ARGV[5]
if redis.call('SISMEMBER', p .. 'reaping', inst) == 1 then return 2 end
return redis.call('ZADD', p .. 'instances', now, inst)
"
);

const SWEEP: &str = script!(
    r"
local budget = tonumber(ARGV[6])
local dead = redis.call('ZRANGEBYSCORE', p .. 'instances', '-inf', now - tonumber(ARGV[5]), 'LIMIT', 0, 16)
for _, inst in ipairs(dead) do
  redis.call('ZREM', p .. 'instances', inst)
  redis.call('SADD', p .. 'reaping', inst)
end
for _, inst in ipairs(redis.call('SMEMBERS', p .. 'reaping')) do
  if budget <= 0 then break end
  local gone = redis.call('SPOP', p .. 'inst:' .. inst, budget)
  for _, who in ipairs(gone) do
    redis.call('HDEL', p .. 'id:' .. who, inst)
    settle(who)
  end
  budget = budget - #gone
  if redis.call('EXISTS', p .. 'inst:' .. inst) == 0 then redis.call('SREM', p .. 'reaping', inst) end
end
for _, who in ipairs(redis.call('ZRANGEBYSCORE', p .. 'pending', '-inf', now, 'LIMIT', 0, tonumber(ARGV[6]))) do
  redis.call('ZREM', p .. 'pending', who)
  local h = p .. 'id:' .. who
  if total(h) == 0 and redis.call('HGET', h, '_on') then
    local left = redis.call('HGET', h, '_left') or now
    redis.call('DEL', h)
    announce(who, 'offline', left)
  end
end
return {n, dropped}
"
);

const LEAD: &str = script!(
    r"
local cur = redis.call('GET', p .. 'sender')
if cur and cur ~= ARGV[5] then return 0 end
redis.call('SET', p .. 'sender', ARGV[5], 'PX', ARGV[6])
return 1
"
);

/// A clean exit: what is left of this instance is reaped like a dead one's (normally
/// nothing: its sockets' departures were written first), and the lease is released.
const LEAVE: &str = script!(
    r"
local inst = ARGV[5]
redis.call('ZREM', p .. 'instances', inst)
if redis.call('EXISTS', p .. 'inst:' .. inst) == 1 then redis.call('SADD', p .. 'reaping', inst) end
if redis.call('GET', p .. 'sender') == inst then redis.call('DEL', p .. 'sender') end
return {n, dropped}
"
);

/// Flat `{key, id, change, who, at, ...}` of the entries after `ARGV[5]` (or from the start).
const READ: &str = script!(
    r"
local from = '-'
if ARGV[5] ~= '' then from = '(' .. ARGV[5] end
local out = {}
for _, e in ipairs(redis.call('XRANGE', p .. 'outbox', from, '+', 'COUNT', tonumber(ARGV[6]))) do
  local f = {}
  for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
  out[#out + 1] = e[1]
  out[#out + 1] = f['id'] or ''
  out[#out + 1] = f['c'] or ''
  out[#out + 1] = f['w'] or ''
  out[#out + 1] = f['at'] or '0'
end
return out
"
);

pub struct RedisStore {
    conn: RedisConn,
    instance: String,
    grace: Duration,
    apply: Script,
    heartbeat: Script,
    sweep: Script,
    lead: Script,
    leave: Script,
    read: Script,
}

impl RedisStore {
    pub fn new(conn: RedisConn, instance: String, grace: Duration) -> RedisStore {
        RedisStore {
            conn,
            instance,
            grace,
            apply: Script::new(APPLY),
            heartbeat: Script::new(HEARTBEAT_SCRIPT),
            sweep: Script::new(SWEEP),
            lead: Script::new(LEAD),
            leave: Script::new(LEAVE),
            read: Script::new(READ),
        }
    }

    /// The common arguments: prefix, id seed, outbox cap, grace. One key names the
    /// `{presence}` slot, so that a cluster runs the script on the node that owns it.
    fn invocation<'a>(&self, script: &'a Script) -> redis::ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        inv.key(format!("{PREFIX}instances"));
        let grace = u64::try_from(self.grace.as_millis()).unwrap_or(u64::MAX);
        inv.arg(PREFIX).arg(uuid::Uuid::new_v4().simple().to_string()).arg(OUTBOX_CAP).arg(grace);
        inv
    }

    async fn counts(&self, inv: redis::ScriptInvocation<'_>) -> Result<Applied, StoreError> {
        let mut conn = self.conn.clone();
        let reply: Vec<i64> = inv.invoke_async(&mut conn).await?;
        match reply.as_slice() {
            [-1, _] => Err(StoreError::Unregistered),
            [n, dropped] => {
                Ok(Applied { announced: u64::try_from(*n).unwrap_or(0), dropped: u64::try_from(*dropped).unwrap_or(0) })
            }
            other => Err(StoreError::Reply(format!("{other:?}"))),
        }
    }

    pub async fn apply(&self, counts: &[(String, u32)]) -> Result<Applied, StoreError> {
        let mut inv = self.invocation(&self.apply);
        inv.arg(&self.instance);
        for (who, n) in counts {
            inv.arg(who).arg(*n);
        }
        self.counts(inv).await
    }

    pub async fn heartbeat(&self) -> Result<Beat, StoreError> {
        let mut inv = self.invocation(&self.heartbeat);
        inv.arg(&self.instance);
        let mut conn = self.conn.clone();
        match inv.invoke_async::<i64>(&mut conn).await? {
            0 => Ok(Beat::Alive),
            1 => Ok(Beat::Joined),
            2 => Ok(Beat::Reaping),
            other => Err(StoreError::Reply(other.to_string())),
        }
    }

    pub async fn sweep(&self) -> Result<Applied, StoreError> {
        let mut inv = self.invocation(&self.sweep);
        inv.arg(u64::try_from(DEAD_AFTER.as_millis()).unwrap_or(u64::MAX)).arg(SWEEP_BUDGET);
        self.counts(inv).await
    }

    pub async fn lead(&self) -> Result<bool, StoreError> {
        let mut inv = self.invocation(&self.lead);
        inv.arg(&self.instance).arg(u64::try_from(LEASE.as_millis()).unwrap_or(5_000));
        let mut conn = self.conn.clone();
        Ok(inv.invoke_async::<i64>(&mut conn).await? == 1)
    }

    pub async fn leave(&self) -> Result<(), StoreError> {
        let mut inv = self.invocation(&self.leave);
        inv.arg(&self.instance);
        self.counts(inv).await.map(|_| ())
    }

    pub async fn read(&self, after: Option<&str>, max: usize) -> Result<Vec<Queued>, StoreError> {
        let mut inv = self.invocation(&self.read);
        inv.arg(after.unwrap_or("")).arg(max);
        let mut conn = self.conn.clone();
        let flat: Vec<String> = inv.invoke_async(&mut conn).await?;
        Ok(flat.chunks_exact(5).filter_map(queued).collect())
    }

    /// `XLEN` of the outbox: what every instance's sender sees, delivered entries being
    /// deleted (`XDEL`) by [`Self::ack`].
    pub async fn depth(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("XLEN").arg(format!("{PREFIX}outbox")).query_async(&mut conn).await?)
    }

    pub async fn ack(&self, key: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("XDEL").arg(format!("{PREFIX}outbox")).arg(key).query_async(&mut conn).await?;
        Ok(())
    }
}

/// One entry of [`READ`]'s reply; one that is not ours is skipped (and stays unacked).
fn queued(e: &[String]) -> Option<Queued> {
    let [key, id, change, who, at] = e else { return None };
    let transition =
        Transition { id: id.clone(), change: Change::parse(change)?, who: who.clone(), at_ms: at.parse().ok()? };
    Some(Queued { key: key.clone(), transition })
}

// A heartbeat is needed well within the time after which an instance counts as dead.
const _: () = assert!(HEARTBEAT.as_millis() * 3 <= DEAD_AFTER.as_millis());
