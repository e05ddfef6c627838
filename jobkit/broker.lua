-- jobkit's dispatch script: every per-message step of the broker in one round trip.
--
-- dispatch(keys=[namespace],
--          args=[command, now_ms, queue, worker_id, heartbeat_timeout_ms, dead_ttl_ms, dead_max, maintenance, ...])
--
-- Keys (ns = namespace, q = queue; "rid" is the id of one enqueue of a message):
--   ns:__heartbeats__         zset  worker id -> last heartbeat (ms); written by worker commands only
--   ns:__acks__.<worker>.<q>  set   rids fetched by that worker and not yet acked (running or prefetched)
--   ns:<q>                    list  pending rids, oldest first
--   ns:<q>.msgs               hash  rid -> message for every live rid (pending, fetched, scheduled, retry)
--   ns:<q>.scheduled          zset  rid -> due time (ms): delayed and `at=` tasks
--   ns:<q>.retry              zset  rid -> due time (ms): failed attempts waiting for their next one
--   ns:<q>.XQ / .XQ.msgs      zset  rid -> archived at (ms) / hash rid -> message with its final error

local namespace = KEYS[1]
local command = ARGV[1]
local now = tonumber(ARGV[2])
local queue = ARGV[3]
local worker_id = ARGV[4]
local heartbeat_timeout = tonumber(ARGV[5])
local dead_ttl = tonumber(ARGV[6])
local dead_max = tonumber(ARGV[7])
local maintenance = ARGV[8]

local heartbeats = namespace .. ":__heartbeats__"
local acks_prefix = namespace .. ":__acks__."
local queue_acks = acks_prefix .. worker_id .. "." .. queue
local pending = namespace .. ":" .. queue
local messages = pending .. ".msgs"
local scheduled = pending .. ".scheduled"
local retry = pending .. ".retry"
local dead = pending .. ".XQ"
local dead_messages = dead .. ".msgs"
local FORWARD_BATCH = 1000

local function heartbeat()
    redis.call("zadd", heartbeats, now, worker_id)
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

-- Drop archived messages past their age, then the oldest beyond the size cap.
local function trim_dead()
    local expired = redis.call("zrangebyscore", dead, "-inf", now - dead_ttl, "LIMIT", 0, 1000)
    for i = 1, #expired do
        redis.call("hdel", dead_messages, expired[i])
    end
    if #expired > 0 then
        redis.call("zremrangebyrank", dead, 0, #expired - 1)
    end
    local excess = redis.call("zcard", dead) - dead_max
    if excess > 0 then
        local oldest = redis.call("zrange", dead, 0, excess - 1)
        for i = 1, #oldest do
            redis.call("hdel", dead_messages, oldest[i])
        end
        redis.call("zremrangebyrank", dead, 0, excess - 1)
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

if maintenance == "1" then
    recover_orphans()
    trim_dead()
end

if command == "enqueue" then
    -- ARGV: rid, data[, claim key, claim ttl ms]. With a claim key, enqueue only if nobody claimed it before:
    -- claim and enqueue are one atomic step (the scheduler fires each nominal time exactly once this way).
    if ARGV[11] and ARGV[11] ~= "" then
        if not redis.call("set", ARGV[11], ARGV[9], "NX", "PX", tonumber(ARGV[12])) then
            return 0
        end
    end
    redis.call("hset", messages, ARGV[9], ARGV[10])
    redis.call("rpush", pending, ARGV[9])
    return 1

elseif command == "schedule" then
    -- ARGV: rid, data, due_ms, "scheduled" | "retry"
    redis.call("hset", messages, ARGV[9], ARGV[10])
    local target = scheduled
    if ARGV[12] == "retry" then
        target = retry
    end
    redis.call("zadd", target, tonumber(ARGV[11]), ARGV[9])

elseif command == "fetch" then
    -- Returns {next due time or -1, message, message, ...}.
    heartbeat()
    forward(scheduled)
    forward(retry)
    local result = {next_due() or -1}
    local wanted = tonumber(ARGV[9])
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
    heartbeat()

elseif command == "ack" then
    heartbeat()
    if redis.call("srem", queue_acks, ARGV[9]) == 1 then
        redis.call("hdel", messages, ARGV[9])
    end

elseif command == "nack" then
    -- ARGV: rid, message as it ended (with its final error)
    heartbeat()
    if redis.call("srem", queue_acks, ARGV[9]) == 1 then
        redis.call("hdel", messages, ARGV[9])
        redis.call("zadd", dead, now, ARGV[9])
        redis.call("hset", dead_messages, ARGV[9], ARGV[10])
        trim_dead()
    end

elseif command == "requeue" then
    -- Put fetched-but-unprocessed rids back at the head of the queue, keeping their order.
    for i = #ARGV, 9, -1 do
        if redis.call("srem", queue_acks, ARGV[i]) == 1 and redis.call("hexists", messages, ARGV[i]) == 1 then
            redis.call("lpush", pending, ARGV[i])
        end
    end

elseif command == "release" then
    -- A worker stopping at once: everything it still holds goes back to its queue and it stops looking alive.
    return release_worker(worker_id)

elseif command == "purge" then
    redis.call("del", pending, messages, scheduled, retry, dead, dead_messages, queue_acks)

elseif command == "qsize" then
    return redis.call("hlen", messages)
end
