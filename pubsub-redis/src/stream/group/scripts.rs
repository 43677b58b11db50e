//! The Lua scripts of a group. Each touches only its stream's keys (one hash slot, see
//! `Keys`), so it runs as one atomic step on a single server and on a cluster alike.

/// `KEYS`: log, meta, groups. `ARGV`: group, settings, start (`now`, `start`, `after`), the
/// epoch and `n` a start `after` is at, epoch candidate, idle ms after which a consumer
/// holding nothing is forgotten.
///
/// Starts the log's life as the read script does (a meta hash without an epoch gets one and
/// the log is emptied first, so that the first append does not drop the group with it).
/// Records the group's settings, or returns `{'conflict', settings there}` when others are
/// recorded. Creates the consumer group (`MKSTREAM`) at the start asked; a group that exists
/// goes on where it was, and its consumers that hold nothing and were idle long (members that
/// left without their consumer being deleted) are deleted. Returns `{'ok', epoch}`.
pub(super) const JOIN: &str = r#"
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = ARGV[6]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'seq', 0)
end
local there = redis.call('HGET', KEYS[3], ARGV[1])
if there and there ~= ARGV[2] then
  return {'conflict', there}
end
if not there then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
end
local id = '$'
if ARGV[3] == 'start' then
  id = '0'
elseif ARGV[3] == 'after' then
  if ARGV[4] == epoch then id = ARGV[5] else id = '0' end
end
local made = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], id, 'MKSTREAM')
if type(made) == 'table' and made.err then
  if string.sub(made.err, 1, 9) ~= 'BUSYGROUP' then
    return redis.error_reply(made.err)
  end
  local stale = tonumber(ARGV[7])
  for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
    local name, pending, idle
    for i = 1, #c, 2 do
      if c[i] == 'name' then name = c[i + 1]
      elseif c[i] == 'pending' then pending = c[i + 1]
      elseif c[i] == 'idle' then idle = c[i + 1] end
    end
    if name and pending == 0 and idle and idle > stale then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    end
  end
end
return {'ok', epoch}
"#;

/// `KEYS`: log, meta. `ARGV`: group, member, min idle ms (the ack deadline), cursor, count.
///
/// Claims for the member the entries pending longer than the deadline (`XAUTOCLAIM`, which
/// counts the delivery) and returns `{next cursor, {{id, fields, deliveries}, …}, epoch}`,
/// the counts and the log's epoch read in the same step. Entries trimmed from the log while pending are dropped from
/// the pending list by `XAUTOCLAIM` and not returned.
pub(super) const CLAIM: &str = r#"
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local out = {}
for _, e in ipairs(r[2]) do
  if type(e) == 'table' and type(e[2]) == 'table' then
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)[1]
    local count = 1
    if p then count = p[4] end
    out[#out + 1] = {e[1], e[2], count}
  end
end
return {r[1], out, redis.call('HGET', KEYS[2], 'epoch')}
"#;

/// `KEYS`: log. `ARGV`: group, number of acks `k`, `k` entry ids, then `member, id, idle ms`
/// for each nack.
///
/// Acknowledges the `k` ids, and for each nack still pending with the member it names, sets
/// its idle time (`XCLAIM … IDLE … JUSTID`, which does not count a delivery) so that the
/// claim of a later read takes it once the nack's delay has passed. Returns `k`.
pub(super) const SETTLE: &str = r#"
local k = tonumber(ARGV[2])
local i = 3
while i < 3 + k do
  local last = math.min(i + 999, 2 + k)
  redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, i, last))
  i = last + 1
end
for j = 3 + k, #ARGV, 3 do
  local member, id = ARGV[j], ARGV[j + 1]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)[1]
  if p and p[2] == member then
    redis.call('XCLAIM', KEYS[1], ARGV[1], member, 0, id, 'IDLE', ARGV[j + 2], 'JUSTID')
  end
end
return k
"#;

/// `KEYS`: log. `ARGV`: group, member.
///
/// Deletes the member's consumer when it holds no pending entry (one that holds some is left
/// for the ack deadline: its entries are claimed by other members). Returns 1 when deleted.
pub(super) const LEAVE: &str = r#"
local held = redis.pcall('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if type(held) ~= 'table' or held.err or #held > 0 then
  return 0
end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
"#;
