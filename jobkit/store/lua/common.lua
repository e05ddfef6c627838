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
