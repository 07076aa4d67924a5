"""The Redis broker's data layout, Lua scripts and channel payload format (pure, no I/O).

Keys (``P`` is the prefix, ``wsops`` by default; ``{room}`` is a literal hash tag, so a room's
keys share one slot)::

    P:{room}:meta          hash   epoch, top (the last offset given)       TTL history_ttl
    P:{room}:log           stream entry id "<offset>-0", field p = message JSON, MAXLEN ~ size
    P:{room}:pnodes        set    ids of nodes with members in the room
    P:{room}:pres:<node>   hash   user -> that node's connections of the user in the room
    P:node:<node>          hash   admin_url, version, started_at, draining, ...   TTL 3 beats
    P:node:<node>:rooms    set    rooms where the node has members (what to clean when it dies)
    P:nodes                zset   node id -> Redis time (ms) of its last heartbeat

Channel ``P:room:<room>`` carries the room's messages as
``<offset>|<epoch>|<ts>|<accepted_at>|<traceparent>|<message JSON>`` (a receiving node reads the
header without parsing JSON and frames the JSON as is), and presence events as ``J<user>`` or
``L<user>``. Pub/sub ignores the database number: fleets sharing one Redis need distinct prefixes.

On a Redis Cluster (``Keys(cluster=True)``) every script stays in one slot: the room's channel
is ``P:{room}:ch`` (sharded pub/sub, ``SPUBLISH`` from the scripts: ``sharded``), the registry's
keys share the tag ``{~nodes}`` (no room can be named so), and the presence scripts take no
node key (they cannot read another slot): they count every node in the room's ``pnodes`` as
live, and the reaper removes a dead node's members once its registry key expired; the node
adds a room to its ``rooms`` set before writing the room's presence and removes it after.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from wsops.server.core.protocol import Position

SCHEMA: Final = "1"
"""The version of what wsops keeps in Redis (keys, their types and fields, the channel and the
envelope): written under the prefix by the first node, read by every heartbeat. A node that
finds another version refuses to serve from it (PROTOCOL.md, "Versions")."""


@dataclass(frozen=True, slots=True)
class Keys:
    """Names of everything the broker keeps in Redis, under one prefix."""

    prefix: str = "wsops"
    cluster: bool = False

    def meta(self, room: str) -> str:
        return f"{self.prefix}:{{{room}}}:meta"

    def log(self, room: str) -> str:
        return f"{self.prefix}:{{{room}}}:log"

    def pnodes(self, room: str) -> str:
        return f"{self.prefix}:{{{room}}}:pnodes"

    def pres_prefix(self, room: str) -> str:
        return f"{self.prefix}:{{{room}}}:pres:"

    def pres(self, room: str, node: str) -> str:
        return self.pres_prefix(room) + node

    @property
    def node_prefix(self) -> str:
        return f"{self.prefix}:{{~nodes}}:node:" if self.cluster else f"{self.prefix}:node:"

    def node(self, node: str) -> str:
        return self.node_prefix + node

    def node_rooms(self, node: str) -> str:
        return f"{self.node_prefix}{node}:rooms"

    @property
    def schema(self) -> str:
        """The version of the layout of everything under the prefix (``SCHEMA``)."""
        return f"{self.prefix}:{{~nodes}}:schema" if self.cluster else f"{self.prefix}:schema"

    @property
    def revoked(self) -> str:
        """Revocations: field ``KIND:VALUE``, value the Unix time they end (the registry's
        slot on a cluster)."""
        return f"{self.prefix}:{{~nodes}}:revoked" if self.cluster else f"{self.prefix}:revoked"

    @property
    def nodes(self) -> str:
        return f"{self.prefix}:{{~nodes}}:nodes" if self.cluster else f"{self.prefix}:nodes"

    @property
    def channel_prefix(self) -> bytes:
        return f"{self.prefix}:{{".encode() if self.cluster else f"{self.prefix}:room:".encode()

    @property
    def channel_suffix(self) -> bytes:
        return b"}:ch" if self.cluster else b""

    def channel(self, room: str) -> bytes:
        return self.channel_prefix + room.encode() + self.channel_suffix


def sharded(script: str) -> str:
    """A script publishing with ``SPUBLISH`` (a cluster's sharded pub/sub) instead."""
    return script.replace("redis.call('PUBLISH',", "redis.call('SPUBLISH',")


# -- the channel payload ----------------------------------------------------------------------


def header_rest(ts: int, accepted_at: float, traceparent: str | None) -> bytes:
    """The header after ``<offset>|<epoch>`` (which only the publish script knows)."""
    tp = traceparent if traceparent is not None and "|" not in traceparent else ""
    return b"|%d|%r|%s|" % (ts, accepted_at, tp.encode())


@dataclass(frozen=True, slots=True)
class Header:
    """A room message as it crossed the channel: its header fields and the message JSON."""

    offset: int
    epoch: str
    ts: int
    accepted_at: float
    traceparent: str | None
    payload: bytes


def parse_message(data: bytes) -> Header:
    """Split a channel message; raises ValueError on anything malformed."""
    offset, epoch, ts, accepted, tp, payload = data.split(b"|", 5)
    return Header(int(offset), epoch.decode(), int(ts), float(accepted),
                  tp.decode() if tp else None, payload)


# -- what a watched room's live feed decides -------------------------------------------------

DELIVER: Final = 0
DUPLICATE: Final = 1
GAP: Final = 2


def classify(last: Position | None, epoch: str, offset: int) -> int:
    """How a message from the channel continues the feed whose last message is ``last``.

    A new epoch continues the feed only from offset 1 (the room's history expired while idle
    and a publish began it again), exactly as clients treat it.
    """
    if last is None:
        return DELIVER
    if epoch == last.epoch:
        if offset <= last.offset:
            return DUPLICATE
        return DELIVER if offset == last.offset + 1 else GAP
    return DELIVER if offset == 1 else GAP


def after_outage(last: Position | None, now: Position) -> tuple[int, int] | None:
    """After the feed was down: the offsets to fetch from the log ``(first, last)``, ``(0, 0)``
    when nothing was missed, or None when the gap cannot be filled (another epoch, fewer)."""
    if last is None:
        return (0, 0)  # no baseline: nobody on this node was live in the room yet
    if now.epoch != last.epoch or now.offset < last.offset:
        return None
    if now.offset == last.offset:
        return (0, 0)
    return (last.offset + 1, now.offset)


# -- Lua --------------------------------------------------------------------------------------

_NOW_MS: Final = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

_LINEAGE: Final = """
-- With check '1' (a fleet whose master can change: Sentinel), the master's replication id, new
-- after a failover (or a restart): a room last written under another one may have lost
-- messages its subscribers already got (replication is asynchronous), so it takes a new epoch
-- and every resume across the change is explicit (recovered false), while its offsets go on
-- and its log stays. ~2 us of Redis CPU per call (INFO), so only where a master can change.
local function epoch_of(meta, log, new, check)
  if check ~= '1' then
    local epoch = redis.call('HGET', meta, 'epoch')
    if epoch then return epoch, false end
    redis.call('HSET', meta, 'epoch', new)
    redis.call('DEL', log)
    return new, true
  end
  local info = redis.call('INFO', 'replication')
  local at = string.find(info, 'master_replid:', 1, true)
  local now = at and string.sub(info, at + 14, at + 53) or ''
  local epoch, was = unpack(redis.call('HMGET', meta, 'epoch', 'r'))
  if not epoch then
    redis.call('HSET', meta, 'epoch', new, 'r', now)
    redis.call('DEL', log)
    return new, true
  end
  if was ~= now then
    if was then epoch = new end
    redis.call('HSET', meta, 'epoch', epoch, 'r', now)
  end
  return epoch, false
end
"""

PUBLISH: Final = _NOW_MS + _LINEAGE + """
-- KEYS: meta, log. ARGV: channel, new epoch, maxlen, ttl ms, deadline ms (0: none),
-- payload head, payload tail, header rest, check lineage ('1' or '0').
-- Refusing past the deadline means a publish the node reported as timed out is never applied
-- later (a Redis that was paused with the command in its socket buffer).
if ARGV[5] ~= '0' and now_ms() > tonumber(ARGV[5]) then return false end
local epoch = epoch_of(KEYS[1], KEYS[2], ARGV[2], ARGV[9])
local offset = string.format('%d', redis.call('HINCRBY', KEYS[1], 'top', 1))
local payload = ARGV[6] .. offset .. ',"epoch":"' .. epoch .. '"' .. ARGV[7]
if tonumber(ARGV[3]) > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], offset .. '-0', 'p', payload)
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PUBLISH', ARGV[1], offset .. '|' .. epoch .. ARGV[8] .. payload)
return {offset, epoch}
"""

READ: Final = _LINEAGE + """
-- KEYS: meta, log. ARGV: new epoch, ttl ms, mode ('p' position, 'r' recover, 'h' history),
-- since offset or history limit, since epoch, history byte budget, check lineage.
-- A room without meta gets its epoch now, so the position a subscriber is told stays valid.
local epoch, made = epoch_of(KEYS[1], KEYS[2], ARGV[1], ARGV[7])
if made then
  redis.call('HSET', KEYS[1], 'top', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
local top = tonumber(redis.call('HGET', KEYS[1], 'top') or '0')
local mode = ARGV[3]
if mode == 'h' then
  -- Newest first, in pages, until the count or the byte budget is reached.
  local limit, budget, used, out, start = tonumber(ARGV[4]), tonumber(ARGV[6]), 0, {}, '+'
  while #out < limit do
    local want = math.min(100, limit - #out)
    local rows = redis.call('XREVRANGE', KEYS[2], start, '-', 'COUNT', want)
    for _, row in ipairs(rows) do
      used = used + string.len(row[2][2])
      if used > budget then return {epoch, top, 1, out, 1} end
      out[#out + 1] = row
    end
    if #rows < want then break end
    start = '(' .. rows[#rows][1]
  end
  return {epoch, top, 1, out, 0}
end
if mode == 'r' then
  -- Every message after 'since', oldest first, in pages of 100, until the byte budget (0: no
  -- budget) is passed: then the 5th item is 1 and the caller asks again from the last row.
  -- The log is trimmed only at its head, so rows from since + 1 on are contiguous.
  local since = tonumber(ARGV[4])
  if ARGV[5] ~= epoch or since > top then return {epoch, top, 0} end
  if since == top then return {epoch, top, 1, {}, 0} end
  local first = string.format('%d', since + 1)
  local budget, used, out, start = tonumber(ARGV[6] or '0'), 0, {}, first
  while true do
    local rows = redis.call('XRANGE', KEYS[2], start, '+', 'COUNT', 100)
    if #out == 0 and (#rows == 0 or rows[1][1] ~= first .. '-0') then return {epoch, top, 0} end
    for _, row in ipairs(rows) do
      used = used + string.len(row[2][2])
      if budget > 0 and used > budget and #out > 0 then return {epoch, top, 1, out, 1} end
      out[#out + 1] = row
    end
    if #rows < 100 then break end
    start = '(' .. rows[#rows][1]
  end
  if out[#out][1] ~= string.format('%d', top) .. '-0' then return {epoch, top, 0} end
  return {epoch, top, 1, out, 0}
end
return {epoch, top}
"""

_ELSEWHERE: Final = """
-- Is user a member through another live node? KEYS[2] is the room's pnodes set;
-- ARGV[1] this node, ARGV[2] node key prefix ('' on a cluster: every node listed counts),
-- ARGV[3] presence hash prefix.
local function live(other)
  return ARGV[2] == '' or redis.call('EXISTS', ARGV[2] .. other) == 1
end
local function elsewhere(user)
  for _, other in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    if other ~= ARGV[1] and live(other)
        and redis.call('HEXISTS', ARGV[3] .. other, user) == 1 then
      return true
    end
  end
  return false
end
"""

PRESENCE_SET: Final = _ELSEWHERE + """
-- KEYS: this node's presence hash, pnodes, this node's rooms set (not on a cluster: the node
-- keeps it). ARGV: node, node prefix, presence prefix, channel, room, replace ('1': users not
-- listed leave), then user, count pairs (count 0: the user has no connection here any more).
-- join is published when a user becomes a member fleet-wide, leave when they stop being one.
-- Returns whether the node still has members in the room.
local want = {}
for i = 7, #ARGV, 2 do want[ARGV[i]] = tonumber(ARGV[i + 1]) end
if ARGV[6] == '1' then
  for _, user in ipairs(redis.call('HKEYS', KEYS[1])) do
    if want[user] == nil then want[user] = 0 end
  end
end
for user, count in pairs(want) do
  local had = redis.call('HEXISTS', KEYS[1], user) == 1
  if count > 0 then
    redis.call('HSET', KEYS[1], user, count)
    if not had and not elsewhere(user) then redis.call('PUBLISH', ARGV[4], 'J' .. user) end
  elseif had then
    redis.call('HDEL', KEYS[1], user)
    if not elsewhere(user) then redis.call('PUBLISH', ARGV[4], 'L' .. user) end
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('SADD', KEYS[2], ARGV[1])
  if KEYS[3] then redis.call('SADD', KEYS[3], ARGV[5]) end
  return 1
end
redis.call('SREM', KEYS[2], ARGV[1])
if KEYS[3] then redis.call('SREM', KEYS[3], ARGV[5]) end
return 0
"""

PRESENCE_READ: Final = """
-- KEYS: the room's pnodes set. ARGV: this node (its members are known locally), node key
-- prefix ('' on a cluster: every node listed), presence hash prefix. Members through live
-- nodes only.
local out = {}
for _, other in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if other ~= ARGV[1] and (ARGV[2] == '' or redis.call('EXISTS', ARGV[2] .. other) == 1) then
    for _, user in ipairs(redis.call('HKEYS', ARGV[3] .. other)) do out[#out + 1] = user end
  end
end
return out
"""

REAP_ROOM: Final = _ELSEWHERE + """
-- KEYS: the dead node's presence hash, pnodes, the dead node's rooms set (not on a cluster).
-- ARGV: dead node, node prefix ('' on a cluster: the caller checked), presence prefix,
-- channel, room. A node whose key came back (it was only slow) is left alone.
if ARGV[2] ~= '' and redis.call('EXISTS', ARGV[2] .. ARGV[1]) == 1 then return -1 end
local users = redis.call('HKEYS', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
if KEYS[3] then redis.call('SREM', KEYS[3], ARGV[5]) end
for _, user in ipairs(users) do
  if not elsewhere(user) then redis.call('PUBLISH', ARGV[4], 'L' .. user) end
end
return #users
"""

REAP_NODE: Final = """
-- KEYS: node key, node rooms set, nodes zset. ARGV: node id. Forget a dead node once all its
-- rooms are cleaned.
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('SCARD', KEYS[2]) > 0 then return 0 end
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""

HEARTBEAT: Final = _NOW_MS + """
-- KEYS: node key, nodes zset, schema key. ARGV: node id, ttl ms, this node's schema version,
-- then field, value pairs. Returns whether the key still existed (if not, the fleet may have
-- reaped this node's presence: it must write it again), Redis time in ms (to estimate the
-- clock skew) and the schema version of what the prefix holds (written by the first node).
-- A node of another schema does not join the fleet.
local schema = redis.call('GET', KEYS[3])
if not schema then
  redis.call('SET', KEYS[3], ARGV[3])
  schema = ARGV[3]
end
local now = now_ms()
if schema ~= ARGV[3] then
  return {0, now, schema}
end
local existed = redis.call('EXISTS', KEYS[1])
redis.call('HSET', KEYS[1], 'heartbeat_ms', now, unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[1])
return {existed, now, schema}
"""
