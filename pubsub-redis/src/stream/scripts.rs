//! The two Lua scripts of a stream: append-and-publish, and read. Each touches only the
//! stream's two keys (one hash slot, see `Keys`), so it runs as one atomic step on a single
//! server and on a cluster alike.
//!
//! Entries get the ids `<n>-<ms>`: `n` counts the stream's appends from 1 (kept in the meta
//! hash), `ms` is the server's clock. Ids therefore have no holes, so a reader that resumes
//! after `n` knows exactly how many entries it lost to trimming, and the clock part still
//! finds entries by time.

/// `KEYS`: log, meta. `ARGV`: topic, frame (stored), max_len, max_age in ms, epoch candidate,
/// tag, head (the published frame's bytes before the position header's value length), cut
/// (bytes of the stored frame the head replaces).
///
/// Appends the message to the log (trimmed by count on every append, by age on every 64th),
/// and publishes it on its topic's channel with a `pubsub-position` header
/// (`<tag>-<epoch>-<n>`) spliced into its envelope: `n` exists only once the script ran, so
/// only the server can write it. A log whose meta hash is gone (a flush, a restart without
/// persistence) starts a new life: a new epoch, the old entries dropped. Returns `n`.
pub(super) const APPEND: &str = r#"
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = ARGV[5]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'seq', 0)
end
local n = redis.call('HINCRBY', KEYS[2], 'seq', 1)
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local nt = string.format('%.0f', n)
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], nt .. '-' .. string.format('%.0f', ms),
  't', ARGV[1], 'm', ARGV[2])
if n % 64 == 0 then
  local cutoff = ms - tonumber(ARGV[4])
  local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
  if first and tonumber(string.match(first[1], '%-(%d+)$')) < cutoff then
    local lo, hi = tonumber(string.match(first[1], '^(%d+)')), n
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      local e = redis.call('XRANGE', KEYS[1], string.format('%.0f', mid) .. '-0', '+', 'COUNT', 1)[1]
      if tonumber(string.match(e[1], '%-(%d+)$')) < cutoff then lo = mid + 1 else hi = mid end
    end
    redis.call('XTRIM', KEYS[1], 'MINID', string.format('%.0f', lo) .. '-0')
  end
end
local value = ARGV[6] .. '-' .. epoch .. '-' .. nt
local frame = ARGV[7] .. string.char(#value) .. value .. string.sub(ARGV[2], tonumber(ARGV[8]) + 1)
redis.call('PUBLISH', ARGV[1], frame)
return n
"#;

/// `KEYS`: log, meta. `ARGV`: mode (`start`, `after`, `last`, `time`, `end`), its argument
/// (`n` for `after`, a count for `last`, milliseconds for `time`), limit, epoch candidate.
///
/// Returns `{epoch, last n, first n held (0: none), entries}`; entries as `XRANGE` gives them.
/// A log whose meta hash is gone gets a new epoch here, so that a reader's old positions are
/// seen to be from another life of it.
pub(super) const READ: &str = r#"
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = ARGV[4]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'seq', 0)
end
local last = tonumber(redis.call('HGET', KEYS[2], 'seq'))
local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
local first = 0
if head then first = tonumber(string.match(head[1], '^(%d+)')) end
local mode, limit = ARGV[1], tonumber(ARGV[3])
local from = nil
if mode == 'start' then
  from = '-'
elseif mode == 'after' then
  from = ARGV[2] .. '-0'
elseif mode == 'last' then
  from = string.format('%.0f', math.max(last - tonumber(ARGV[2]) + 1, 0)) .. '-0'
elseif mode == 'time' and first > 0 then
  local at = tonumber(ARGV[2])
  local lo, hi = first, last + 1
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    local e = redis.call('XRANGE', KEYS[1], string.format('%.0f', mid) .. '-0', '+', 'COUNT', 1)[1]
    if e and tonumber(string.match(e[1], '%-(%d+)$')) < at then lo = mid + 1 else hi = mid end
  end
  from = string.format('%.0f', lo) .. '-0'
end
local entries = {}
if from then
  entries = redis.call('XRANGE', KEYS[1], from, '+', 'COUNT', limit)
end
return {epoch, string.format('%.0f', last), string.format('%.0f', first), entries}
"#;
