"""Lua scripts that keep a fair semaphore's Redis state consistent, one atomic step each."""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import redis

# KEYS[1]: <prefix>:queue; the other keys share its prefix and hash tag (one cluster slot).
# ARGV[1]: capacity, ARGV[2]: ms before idle keys expire; each script reads the rest from ARGV[3].
# fence:   INCR counter of fencing tokens that never expires, floored at TIME ms x 1000 so
#          tokens keep rising even if Redis loses it (a restart without persistence takes more
#          than a millisecond; fewer than 1000 grants per ms on one resource).
# queue:   zset lease id -> ticket (INCR on `ticket`, so FIFO is the server's order).
# holders: zset lease id -> lease expiry in ms of Redis TIME.
# info:    hash lease id -> "lease_ms:waiter_ms:owner" for waiters and holders.
# tokens:  hash lease id -> fencing token of a holder.
# <prefix>:alive:<id> is a waiter's heartbeat (a key with PX), <prefix>:wake:<id> its inbox:
# "t:<token>" when granted, "n:<ms>" when it became a head (ms until a holder's lease expires).
COMMON = """
local queue = KEYS[1]
local prefix = string.sub(queue, 1, -7)
local fence, ticket, holders = prefix .. ':fence', prefix .. ':ticket', prefix .. ':holders'
local info, tokens = prefix .. ':info', prefix .. ':tokens'
local capacity = tonumber(ARGV[1])
local idle_ms = tonumber(ARGV[2])

local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function num(n) return string.format('%.0f', n) end
local function alive_key(id) return prefix .. ':alive:' .. id end
local function wake_key(id) return prefix .. ':wake:' .. id end

local function ttls(id)
  local v = redis.call('HGET', info, id)
  if not v then return 10000, 10000 end
  local lease_ms, waiter_ms = string.match(v, '^(%d+):(%d+):')
  return tonumber(lease_ms), tonumber(waiter_ms)
end

local function owner_of(id)
  local v = redis.call('HGET', info, id)
  return v and string.match(v, '^%d+:%d+:(.*)$') or ''
end

-- Tokens never go back, even after Redis lost the counter: the clock (ms * 1000) is a floor.
local function next_token(now)
  local token = redis.call('INCR', fence)
  local floor = now * 1000
  if token < floor then
    redis.call('SET', fence, num(floor))
    token = floor
  end
  return token
end

local function drop_holders(ids)
  if #ids == 0 then return end
  redis.call('ZREM', holders, unpack(ids))
  redis.call('HDEL', info, unpack(ids))
  redis.call('HDEL', tokens, unpack(ids))
end

local function prune_holders(now)
  drop_holders(redis.call('ZRANGE', holders, '-inf', num(now), 'BYSCORE'))
end

local function expiry_hint(now)
  local first = redis.call('ZRANGE', holders, 0, 0, 'WITHSCORES')
  if first[2] == nil then return -1 end
  return tonumber(first[2]) - now
end

local function grant_to(id, now, lease_ms)
  local token = next_token(now)
  redis.call('ZADD', holders, num(now + lease_ms), id)
  redis.call('HSET', tokens, id, num(token))
  redis.call('PEXPIRE', holders, idle_ms)
  redis.call('PEXPIRE', tokens, idle_ms)
  return token
end

-- Idle keys expire; live ones are refreshed when half their time is gone (cheap to call often).
local function touch(force)
  if force or redis.call('PTTL', info) < idle_ms / 2 then
    for _, key in ipairs({ticket, queue, holders, info, tokens}) do
      redis.call('PEXPIRE', key, idle_ms)
    end
  end
end

-- Tell the waiters that now fit in capacity when the first holder's lease runs out.
local function nudge(now, caller)
  local heads = redis.call('ZRANGE', queue, 0, capacity - 1)
  if #heads == 0 then return end
  local msg = 'n:' .. num(expiry_hint(now))
  for _, id in ipairs(heads) do
    local key = wake_key(id)
    if id ~= caller and redis.call('LLEN', key) == 0 then
      local _, waiter_ms = ttls(id)
      redis.call('RPUSH', key, msg)
      redis.call('PEXPIRE', key, waiter_ms)
    end
  end
end

-- Grant free slots to live head-of-line waiters; return the caller's token or false.
local function grant(now, caller)
  prune_holders(now)
  local free = capacity - redis.call('ZCARD', holders)
  local mine, granted = false, 0
  while free > 0 do
    local head = redis.call('ZRANGE', queue, 0, 0)[1]
    if not head then break end
    redis.call('ZREM', queue, head)
    if redis.call('DEL', alive_key(head)) == 1 then
      local lease_ms = ttls(head)
      local token = grant_to(head, now, lease_ms)
      if head == caller then
        mine = token
      else
        local key = wake_key(head)
        redis.call('RPUSH', key, 't:' .. num(token))
        redis.call('PEXPIRE', key, lease_ms)
      end
      free, granted = free - 1, granted + 1
    else
      redis.call('HDEL', info, head)
    end
  end
  if granted > 0 then nudge(now, caller) end
  return mine
end

local function held_token(id, now)
  local score = redis.call('ZSCORE', holders, id)
  if score and tonumber(score) > now then
    redis.call('DEL', wake_key(id))
    return tonumber(redis.call('HGET', tokens, id))
  end
  return false
end
"""

# ARGV[3..7]: id, lease_ms, waiter_ms, owner, mode ("wait", "try" or "poll").
# Returns {1, token} when granted, else {0, rank, ms until a holder's lease expires or -1}.
ACQUIRE = """
local id, lease_ms, waiter_ms, owner = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local mode = ARGV[7]
local now = clock()
local token, queued = false, false
if mode == 'poll' then
  token = held_token(id, now)
  if token then return {1, token} end
  queued = redis.call('ZSCORE', queue, id)
end
if not queued then
  redis.call('HSET', info, id, lease_ms .. ':' .. waiter_ms .. ':' .. owner)
  prune_holders(now)
  if redis.call('EXISTS', queue) == 0 and redis.call('ZCARD', holders) < capacity then
    redis.call('PEXPIRE', info, idle_ms)
    return {1, grant_to(id, now, lease_ms)}
  end
  redis.call('ZADD', queue, redis.call('INCR', ticket), id)
end
redis.call('SET', alive_key(id), '1', 'PX', waiter_ms)
token = grant(now, id)
touch(not queued)
if token then
  redis.call('DEL', wake_key(id))
  return {1, token}
end
if mode == 'try' then
  redis.call('ZREM', queue, id)
  redis.call('HDEL', info, id)
  redis.call('DEL', alive_key(id))
  return {0, -1, -1}
end
return {0, redis.call('ZRANK', queue, id), expiry_hint(now)}
"""

# ARGV[3..4]: id, lease_ms. Returns 1 when renewed, 0 when the lease is gone.
RENEW = """
local id, lease_ms = ARGV[3], tonumber(ARGV[4])
local now = clock()
local score = redis.call('ZSCORE', holders, id)
if not score then return 0 end
if tonumber(score) <= now then
  grant(now, '')
  return 0
end
redis.call('ZADD', holders, 'XX', num(now + lease_ms), id)
touch(false)
return 1
"""

# ARGV[3]: id. Returns 1 when the lease was still valid, 0 otherwise; hands slots over.
RELEASE = """
local id = ARGV[3]
local now = clock()
local score = redis.call('ZSCORE', holders, id)
drop_holders({id})
grant(now, '')
if redis.call('EXISTS', queue) == 0 then redis.call('DEL', ticket) end
if score and tonumber(score) > now then return 1 end
return 0
"""

# ARGV[3]: id. A waiter gives up: returns its token if it was granted meanwhile, else nil.
LEAVE = """
local id = ARGV[3]
local now = clock()
local token = held_token(id, now)
if token then return token end
local rank = redis.call('ZRANK', queue, id)
redis.call('ZREM', queue, id)
redis.call('HDEL', info, id)
redis.call('DEL', alive_key(id), wake_key(id))
grant(now, '')
if rank and rank < capacity then nudge(now, '') end
if redis.call('EXISTS', queue) == 0 then redis.call('DEL', ticket) end
return false
"""

# ARGV[3]: owner. Ends every lease the owner holds here and returns how many.
REVOKE = """
local flat = redis.call('HGETALL', info)
local ids = {}
for i = 1, #flat, 2 do
  if string.match(flat[i + 1], '^%d+:%d+:(.*)$') == ARGV[3]
      and redis.call('ZSCORE', holders, flat[i]) then
    ids[#ids + 1] = flat[i]
  end
end
drop_holders(ids)
grant(clock(), '')
return #ids
"""

# Returns {holder owners, live waiter owners in queue order}.
SNAPSHOT = """
local now = clock()
local held, waiting = {}, {}
for _, id in ipairs(redis.call('ZRANGE', holders, '(' .. num(now), '+inf', 'BYSCORE')) do
  held[#held + 1] = owner_of(id)
end
for _, id in ipairs(redis.call('ZRANGE', queue, 0, -1)) do
  if redis.call('EXISTS', alive_key(id)) == 1 then waiting[#waiting + 1] = owner_of(id) end
end
return {held, waiting}
"""


@dataclass(frozen=True)
class Scripts:
    """The semaphore's scripts registered on one Redis client."""

    acquire: redis.commands.core.Script
    renew: redis.commands.core.Script
    release: redis.commands.core.Script
    leave: redis.commands.core.Script
    revoke: redis.commands.core.Script
    snapshot: redis.commands.core.Script


_registered: weakref.WeakKeyDictionary[redis.Redis, Scripts] = weakref.WeakKeyDictionary()


def register(redis_client: redis.Redis) -> Scripts:
    """Register every semaphore script on `redis_client` (EVALSHA, reloaded on NOSCRIPT), once
    per client: hashing the scripts for every semaphore would cost more than using it."""
    scripts = _registered.get(redis_client)
    if scripts is None:
        scripts = Scripts(
            *(
                redis_client.register_script(COMMON + body)
                for body in (ACQUIRE, RENEW, RELEASE, LEAVE, REVOKE, SNAPSHOT)
            )
        )
        _registered[redis_client] = scripts
    return scripts
