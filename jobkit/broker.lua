-- jobkit's dispatch script: every per-message step of the broker in one round trip.
--
-- dispatch(keys=[namespace],
--          args=[command, now_ms, queue, worker_id, heartbeat_timeout_ms, dead_ttl_ms, dead_max, maintenance,
--                started, ...command arguments])
--
-- "started" carries the start markers that ride along: "<queue>\t<rid>\n..." for messages this worker began
-- running since its last call (no extra round trip per message).
--
-- Keys (ns = namespace, q = queue; a "rid" names one enqueue of a message, its message id stays across retries):
--   ns:__heartbeats__         zset  worker id -> last heartbeat (ms); written by worker commands only
--   ns:__acks__.<worker>      set   queues that worker fetched from
--   ns:__acks__.<worker>.<q>  set   rids fetched by that worker and not yet acked (running or prefetched)
--   ns:__paused__             set   paused queues
--   ns:<q>                    list  pending rids, oldest first
--   ns:<q>.msgs               hash  rid -> message, for every live rid (pending, fetched, scheduled, retry)
--   ns:<q>.ids                hash  message id -> its current rid (live or archived)
--   ns:<q>.active             hash  rid -> started at (ms): running now
--   ns:<q>.scheduled          zset  rid -> due time (ms): delayed and `at=` tasks
--   ns:<q>.retry              zset  rid -> due time (ms): failed attempts waiting for their next one
--   ns:<q>.XQ / .XQ.msgs      zset  rid -> archived at (ms) / hash rid -> message as its final attempt ended
--   ns:<q>.done / .done.msgs  zset  message id -> kept until (ms) / hash message id -> completed message
--   ns:<q>.processed:<day> / .failed:<day>, .processed_total / .failed_total   counters (day = ms // 86400000)

local namespace = KEYS[1]
local command = ARGV[1]
local now = tonumber(ARGV[2])
local queue = ARGV[3]
local worker_id = ARGV[4]
local heartbeat_timeout = tonumber(ARGV[5])
local dead_ttl = tonumber(ARGV[6])
local dead_max = tonumber(ARGV[7])
local maintenance = ARGV[8]
local started = ARGV[9]
local A = 10 -- first command argument

-- Enqueues come first and touch only what they need: they are the one command clients send, once per task.
-- A claim makes an enqueue conditional: SET claim_key message_id NX PX ttl, in the same step as the enqueue. The
-- scheduler fires each nominal time exactly once this way, and a unique task refuses a duplicate. A claimed
-- enqueue returns the id that holds the claim instead of 1.
if command == "enqueue" or command == "schedule" then
    local pending = namespace .. ":" .. queue
    local rid, message_id = ARGV[A], ARGV[A + 2]
    local claim_at = A + 3
    if command == "schedule" then
        claim_at = A + 5
    end
    local claim_key = ARGV[claim_at]
    if claim_key and claim_key ~= "" then
        if not redis.call("set", claim_key, message_id, "NX", "PX", tonumber(ARGV[claim_at + 1])) then
            return redis.call("get", claim_key) or ""
        end
    end
    redis.call("hset", pending .. ".msgs", rid, ARGV[A + 1])
    redis.call("hset", pending .. ".ids", message_id, rid)
    if command == "enqueue" then
        -- args: rid, data, message id[, claim key, claim ttl ms]
        redis.call("rpush", pending, rid)
    else
        -- args: rid, data, message id, due ms, "scheduled" | "retry"[, claim key, claim ttl ms]
        local target = pending .. ".scheduled"
        if ARGV[A + 4] == "retry" then
            target = pending .. ".retry"
        end
        redis.call("zadd", target, tonumber(ARGV[A + 3]), rid)
    end
    return 1
end

local heartbeats = namespace .. ":__heartbeats__"
local acks_prefix = namespace .. ":__acks__."
local paused_set = namespace .. ":__paused__"
local queue_acks = acks_prefix .. worker_id .. "." .. queue
local pending = namespace .. ":" .. queue
local messages = pending .. ".msgs"
local ids = pending .. ".ids"
local active = pending .. ".active"
local scheduled = pending .. ".scheduled"
local retry = pending .. ".retry"
local dead = pending .. ".XQ"
local dead_messages = dead .. ".msgs"
local done = pending .. ".done"
local done_messages = done .. ".msgs"
local FORWARD_BATCH = 1000
local COUNTER_TTL = 91 * 86400 -- seconds: 90 days of history

local function heartbeat()
    redis.call("zadd", heartbeats, now, worker_id)
end

local function mark_started()
    if started == "" then
        return
    end
    for q, rid in string.gmatch(started, "([^\t\n]+)\t([^\t\n]+)") do
        -- Only while still held: a marker arriving after its ack must not leave a stale "running" behind.
        if redis.call("sismember", acks_prefix .. worker_id .. "." .. q, rid) == 1 then
            redis.call("hset", namespace .. ":" .. q .. ".active", rid, now)
        end
    end
end

local function count(outcome_failed)
    local day = math.floor(now / 86400000)
    local processed = pending .. ".processed:" .. day
    if redis.call("incr", processed) == 1 then
        redis.call("expire", processed, COUNTER_TTL)
    end
    redis.call("incr", pending .. ".processed_total")
    if outcome_failed then
        local failed = pending .. ".failed:" .. day
        if redis.call("incr", failed) == 1 then
            redis.call("expire", failed, COUNTER_TTL)
        end
        redis.call("incr", pending .. ".failed_total")
    end
end

-- Move due rids of one sorted set to the end of the pending list.
local function forward(zset)
    local due = redis.call("zrangebyscore", zset, "-inf", now, "LIMIT", 0, FORWARD_BATCH)
    for i = 1, #due do
        redis.call("rpush", pending, due[i])
    end
    if #due > 0 then
        redis.call("zremrangebyrank", zset, 0, #due - 1)
    end
end

local function next_due()
    local best = nil
    for _, zset in ipairs({scheduled, retry}) do
        local first = redis.call("zrange", zset, 0, 0, "WITHSCORES")
        if first[2] and (best == nil or tonumber(first[2]) < best) then
            best = tonumber(first[2])
        end
    end
    return best
end

-- Forget the id index entry of an archived message that is being dropped.
local function forget_archived(rid)
    local data = redis.call("hget", dead_messages, rid)
    if data then
        local ok, decoded = pcall(cjson.decode, data)
        if ok and decoded["message_id"] and redis.call("hget", ids, decoded["message_id"]) == rid then
            redis.call("hdel", ids, decoded["message_id"])
        end
    end
    redis.call("hdel", dead_messages, rid)
end

-- Drop archived messages past their age, then the oldest beyond the size cap; completed ones past retention.
local function trim()
    local expired = redis.call("zrangebyscore", dead, "-inf", now - dead_ttl, "LIMIT", 0, 1000)
    for i = 1, #expired do
        forget_archived(expired[i])
    end
    if #expired > 0 then
        redis.call("zremrangebyrank", dead, 0, #expired - 1)
    end
    local excess = redis.call("zcard", dead) - dead_max
    if excess > 0 then
        local oldest = redis.call("zrange", dead, 0, excess - 1)
        for i = 1, #oldest do
            forget_archived(oldest[i])
        end
        redis.call("zremrangebyrank", dead, 0, excess - 1)
    end
    local finished = redis.call("zrangebyscore", done, "-inf", now, "LIMIT", 0, 1000)
    if #finished > 0 then
        redis.call("hdel", done_messages, unpack(finished))
        redis.call("zremrangebyrank", done, 0, #finished - 1)
    end
end

-- Hand back every rid a worker held (on any queue) and forget the worker. ns:__acks__.<worker> lists the queues
-- it fetched from, so nothing needs KEYS or SCAN.
local function release_worker(worker)
    local queues_index = acks_prefix .. worker
    local queues = redis.call("smembers", queues_index)
    local released = 0
    for i = 1, #queues do
        local worker_acks = queues_index .. "." .. queues[i]
        local queue_pending = namespace .. ":" .. queues[i]
        local rids = redis.call("smembers", worker_acks)
        for j = #rids, 1, -1 do
            redis.call("hdel", queue_pending .. ".active", rids[j])
            if redis.call("hexists", queue_pending .. ".msgs", rids[j]) == 1 then
                redis.call("lpush", queue_pending, rids[j])
                released = released + 1
            end
        end
        redis.call("del", worker_acks)
    end
    redis.call("del", queues_index)
    redis.call("zrem", heartbeats, worker)
    return released
end

-- Workers whose heartbeat stopped: their unfinished tasks run again elsewhere.
local function recover_orphans()
    local dead_workers = redis.call("zrangebyscore", heartbeats, "-inf", now - heartbeat_timeout)
    for i = 1, #dead_workers do
        release_worker(dead_workers[i])
    end
end

-- A unique task's lock ends with it (completed or archived), if it still holds it.
local function release_unique(key, message_id)
    if key and key ~= "" and redis.call("get", key) == message_id then
        redis.call("del", key)
    end
end

mark_started()
if maintenance == "1" then
    heartbeat()
    recover_orphans()
    trim()
end

if command == "fetch" then
    -- args: how many. Returns {next due time or -1, 1 if paused else 0, message, message, ...}.
    heartbeat()
    forward(scheduled)
    forward(retry)
    local result = {next_due() or -1, 0}
    if redis.call("sismember", paused_set, queue) == 1 then
        result[2] = 1
        return result
    end
    local wanted = tonumber(ARGV[A])
    local rids = {}
    for i = 1, wanted do
        local rid = redis.call("lpop", pending)
        if not rid then
            break
        end
        rids[#rids + 1] = rid
    end
    if #rids > 0 then
        redis.call("sadd", queue_acks, unpack(rids))
        redis.call("sadd", acks_prefix .. worker_id, queue)
        local data = redis.call("hmget", messages, unpack(rids))
        for i = 1, #data do
            result[#result + 1] = data[i]
        end
    end
    return result

elseif command == "heartbeat" then
    -- Returns 1 if the queue is paused.
    heartbeat()
    return redis.call("sismember", paused_set, queue)

elseif command == "ack" then
    -- args: rid, message id, "ok" | "retry" | "deferred", retention ms, completed message, unique lock key
    -- ("deferred": a rate or concurrency limit put the message back with a delay before it ran; not counted)
    heartbeat()
    local rid = ARGV[A]
    if redis.call("srem", queue_acks, rid) == 1 then
        redis.call("hdel", messages, rid)
        redis.call("hdel", active, rid)
        local outcome = ARGV[A + 2]
        if outcome ~= "deferred" then
            count(outcome == "retry")
        end
        if outcome == "ok" then
            local message_id = ARGV[A + 1]
            if redis.call("hget", ids, message_id) == rid then
                redis.call("hdel", ids, message_id)
            end
            release_unique(ARGV[A + 5], message_id)
            local retention = tonumber(ARGV[A + 3])
            if retention > 0 then
                redis.call("zadd", done, now + retention, message_id)
                redis.call("hset", done_messages, message_id, ARGV[A + 4])
            end
        end
    end

elseif command == "nack" then
    -- args: rid, message as it ended (with its final error), unique lock key, message id
    heartbeat()
    local rid = ARGV[A]
    if redis.call("srem", queue_acks, rid) == 1 then
        redis.call("hdel", messages, rid)
        redis.call("hdel", active, rid)
        redis.call("zadd", dead, now, rid)
        redis.call("hset", dead_messages, rid, ARGV[A + 1])
        count(true)
        release_unique(ARGV[A + 2], ARGV[A + 3])
        trim()
    end

elseif command == "requeue" then
    -- Put fetched-but-unprocessed rids back at the head of the queue, keeping their order.
    for i = #ARGV, A, -1 do
        if redis.call("srem", queue_acks, ARGV[i]) == 1 then
            redis.call("hdel", active, ARGV[i])
            if redis.call("hexists", messages, ARGV[i]) == 1 then
                redis.call("lpush", pending, ARGV[i])
            end
        end
    end

elseif command == "release" then
    -- A worker stopping at once: everything it still holds goes back to its queue and it stops looking alive.
    return release_worker(worker_id)

elseif command == "qsize" then
    return redis.call("hlen", messages)
end
