-- Helpers every script shares (after the key prelude, before the script's own body).

-- The message id inside a stored message, or nil when it cannot be read.
local function message_id_of(data)
    local ok, decoded = pcall(cjson.decode, data)
    if ok and type(decoded) == "table" then
        return decoded["message_id"]
    end
    return nil
end

-- The unique lock a stored message holds (its options' jobkit_unique), or nil.
local function unique_lock_of(data)
    local ok, decoded = pcall(cjson.decode, data)
    if ok and type(decoded) == "table" and type(decoded["options"]) == "table" then
        local lock = decoded["options"]["jobkit_unique"]
        if type(lock) == "string" and lock ~= "" then
            return lock
        end
    end
    return nil
end

-- Drop the id index entries (K.ids(queue)) that still point at these rids; their messages are in `store`.
local function forget_ids(queue, rids, store)
    local ids = K.ids(queue)
    for i = 1, #rids do
        local data = redis.call("hget", store, rids[i])
        local message_id = data and message_id_of(data)
        if message_id and redis.call("hget", ids, message_id) == rids[i] then
            redis.call("hdel", ids, message_id)
        end
    end
end

-- A unique task's lock ends with it (completed, archived or deleted), if it still holds it.
local function release_unique(lock, message_id)
    if lock and lock ~= "" and redis.call("get", lock) == message_id then
        redis.call("del", lock)
    end
end

-- Take claims in order: ARGV[from] is how many, then (key, ttl ms) pairs; each is SET key holder NX PX ttl.
-- Returns nil when all were taken, else {index, holder} of the first one already held by someone else (the claims
-- before it stay taken: a scheduler's fire claim must hold even when the task's unique lock refuses the fire).
local function claim_all(from, holder)
    local count = tonumber(ARGV[from]) or 0
    for i = 1, count do
        local key, ttl = ARGV[from + 2 * i - 1], tonumber(ARGV[from + 2 * i])
        if not redis.call("set", key, holder, "NX", "PX", ttl) then
            return {i, redis.call("get", key) or ""}
        end
    end
    return nil
end

-- The keys of one queue, by name: Q.pending, Q.messages, Q.ids, Q.active, Q.scheduled, Q.retry, Q.dead,
-- Q.dead_messages, Q.done, Q.done_messages (see K for their layout).
local function queue_keys(q)
    return {
        pending = K.pending(q), messages = K.messages(q), ids = K.ids(q), active = K.active(q),
        scheduled = K.scheduled(q), retry = K.retry(q), dead = K.dead(q), dead_messages = K.dead_messages(q),
        done = K.done(q), done_messages = K.done_messages(q),
    }
end

-- `data` (a stored message) with one more option, `key` = `value` (a string or an integer), written into the JSON
-- text after the message's last `"options":{` (Dramatiq writes options after the payload, so a payload field of
-- that name cannot be mistaken for them). The message is not decoded and encoded again: cjson would round big
-- numbers in payloads. Unchanged when it has no options object.
local function with_option(data, key, value)
    local at, stop, from = nil, nil, 1
    while true do
        local found, found_end = string.find(data, '"options":%s*{', from)
        if not found then
            break
        end
        at, stop, from = found, found_end, found + 1
    end
    if not at then
        return data
    end
    local rest = string.sub(data, stop + 1)
    local separator = ","
    if string.match(rest, "^%s*}") then
        separator = ""
    end
    return string.sub(data, 1, stop) .. cjson.encode(key) .. ":" .. cjson.encode(value) .. separator .. rest
end

-- Archive the live rid of queue q as canceled by `by` (its message `data` gets jobkit_canceled_by and
-- jobkit_canceled_at), ending its unique lock, and tell whoever waits for the task. The caller has taken the rid out
-- of the pending list or its sorted set. Returns the archived message.
local function archive_canceled(q, rid, message_id, data, by, now)
    local stored = with_option(with_option(data, "jobkit_canceled_by", by), "jobkit_canceled_at", now)
    redis.call("hdel", K.messages(q), rid)
    redis.call("zadd", K.dead(q), now, rid)
    redis.call("hset", K.dead_messages(q), rid, stored)
    release_unique(unique_lock_of(data), message_id)
    redis.call("del", K.canceled(message_id))
    redis.call("publish", K.finished(message_id), "canceled")
    return stored
end

-- A rid a worker held (fetched, not finished) goes back to the head of queue q, unless its task was canceled while
-- held (K.canceled names who asked): then it is archived as canceled. Returns 1 when it went back.
local function hand_back_one(q, rid, now)
    local data = redis.call("hget", K.messages(q), rid)
    if not data then
        return 0
    end
    local message_id = message_id_of(data)
    local by = message_id and redis.call("get", K.canceled(message_id))
    if by then
        archive_canceled(q, rid, message_id, data, by, now)
        return 0
    end
    redis.call("lpush", K.pending(q), rid)
    return 1
end
