-- jobkit's inspection and operator script: stats and task operations, each one atomic step.
-- Same keys as broker.lua (see there). Never rewrites a message with cjson.encode (it would round big numbers in
-- payloads): changed messages come from Python.
--
-- queues(keys=[namespace], args=[command, now_ms, queue, ...])

local namespace = KEYS[1]
local command = ARGV[1]
local now = tonumber(ARGV[2])
local queue = ARGV[3]
local A = 4

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
local paused_set = namespace .. ":__paused__"

local function message_id_of(data)
    local ok, decoded = pcall(cjson.decode, data)
    if ok and type(decoded) == "table" then
        return decoded["message_id"]
    end
    return nil
end

-- Drop the id index entries that still point at these rids (their messages are in ``store``).
local function forget_ids(rids, store)
    for i = 1, #rids do
        local data = redis.call("hget", store, rids[i])
        local message_id = data and message_id_of(data)
        if message_id and redis.call("hget", ids, message_id) == rids[i] then
            redis.call("hdel", ids, message_id)
        end
    end
end

-- Where a task is now: state, rid, score (due or archived time), message.
local function locate(message_id)
    local rid = redis.call("hget", ids, message_id)
    if not rid then
        local data = redis.call("hget", done_messages, message_id)
        if data then
            return {"completed", "", redis.call("zscore", done, message_id) or "", data}
        end
        return {"missing"}
    end
    if redis.call("hexists", active, rid) == 1 then
        return {"active", rid, redis.call("hget", active, rid), redis.call("hget", messages, rid)}
    end
    local score = redis.call("zscore", scheduled, rid)
    if score then
        return {"scheduled", rid, score, redis.call("hget", messages, rid)}
    end
    score = redis.call("zscore", retry, rid)
    if score then
        return {"retry", rid, score, redis.call("hget", messages, rid)}
    end
    score = redis.call("zscore", dead, rid)
    if score then
        return {"archived", rid, score, redis.call("hget", dead_messages, rid)}
    end
    local data = redis.call("hget", messages, rid)
    if data then
        return {"pending", rid, "", data}
    end
    return {"missing"}
end

if command == "stats" then
    -- args: day number. Returns the raw numbers of one queue; Python derives the rest.
    local day = ARGV[A]
    -- The oldest waiting task's times, read straight from its JSON (no decode of the whole message).
    local head = redis.call("lindex", pending, 0)
    local enqueued, due = "", ""
    if head then
        local data = redis.call("hget", messages, head)
        if data then
            -- Dramatiq writes kwargs before options and message_timestamp last: look after the last "options"
            -- key, so a payload field of the same name cannot be mistaken for them.
            local options_at, search_from = 1, 1
            while true do
                local found = string.find(data, '"options":', search_from, true)
                if not found then
                    break
                end
                options_at, search_from = found, found + 1
            end
            local tail = string.sub(data, options_at)
            enqueued = string.match(tail, '"message_timestamp":%s*(%d+)%s*}%s*$') or ""
            due = string.match(tail, '"jobkit_due":%s*(%d+)') or ""
        end
    end
    return {
        redis.call("llen", pending),
        redis.call("hlen", messages),
        redis.call("hlen", active),
        redis.call("zcard", scheduled),
        redis.call("zcard", retry),
        redis.call("zcard", dead),
        redis.call("zcount", done, now, "+inf"),
        redis.call("sismember", paused_set, queue),
        redis.call("get", pending .. ".processed:" .. day) or "0",
        redis.call("get", pending .. ".failed:" .. day) or "0",
        redis.call("get", pending .. ".processed_total") or "0",
        redis.call("get", pending .. ".failed_total") or "0",
        enqueued,
        due,
    }

elseif command == "task" then
    return locate(ARGV[A])

elseif command == "delete" then
    -- Returns {state, deleted (1|0)}; a running task, or one a worker already holds, is not deleted.
    local message_id = ARGV[A]
    local found = locate(message_id)
    local state, rid = found[1], found[2]
    if state == "pending" then
        if redis.call("lrem", pending, 1, rid) == 0 then
            return {"held", 0}
        end
        redis.call("hdel", messages, rid)
        redis.call("hdel", ids, message_id)
    elseif state == "scheduled" or state == "retry" then
        redis.call("zrem", state == "scheduled" and scheduled or retry, rid)
        redis.call("hdel", messages, rid)
        redis.call("hdel", ids, message_id)
    elseif state == "archived" then
        redis.call("zrem", dead, rid)
        redis.call("hdel", dead_messages, rid)
        redis.call("hdel", ids, message_id)
    elseif state == "completed" then
        redis.call("zrem", done, message_id)
        redis.call("hdel", done_messages, message_id)
    else
        return {state, 0}
    end
    -- A deleted unique task gives its lock back in the same step (if it still holds it).
    local ok, decoded = pcall(cjson.decode, found[4])
    local lock = ok and type(decoded) == "table" and type(decoded["options"]) == "table" and decoded["options"]["jobkit_unique"]
    if type(lock) == "string" and redis.call("get", lock) == message_id then
        redis.call("del", lock)
    end
    return {state, 1}

elseif command == "run" then
    -- args: message id, expected state, rid, message to run (for archived tasks: with a fresh retry budget)
    local message_id, expected, rid, data = ARGV[A], ARGV[A + 1], ARGV[A + 2], ARGV[A + 3]
    local found = locate(message_id)
    if found[1] ~= expected or found[2] ~= rid then
        return {found[1], 0}
    end
    if expected == "scheduled" or expected == "retry" then
        redis.call("zrem", expected == "scheduled" and scheduled or retry, rid)
    elseif expected == "archived" then
        redis.call("zrem", dead, rid)
        redis.call("hdel", dead_messages, rid)
    else
        return {found[1], 0}
    end
    redis.call("hset", messages, rid, data)
    redis.call("rpush", pending, rid)
    return {expected, 1}

elseif command == "list" then
    -- args: state, start, stop. Returns {total, rid, score, message, rid, score, message, ...}.
    local state, start, stop = ARGV[A], tonumber(ARGV[A + 1]), tonumber(ARGV[A + 2])
    local result = {}
    if state == "pending" then
        result[1] = redis.call("llen", pending)
        local rids = redis.call("lrange", pending, start, stop)
        for i = 1, #rids do
            table.insert(result, rids[i])
            table.insert(result, "")
            table.insert(result, redis.call("hget", messages, rids[i]) or "")
        end
    elseif state == "active" then
        local entries = redis.call("hgetall", active)
        result[1] = #entries / 2
        for i = 1, #entries, 2 do
            table.insert(result, entries[i])
            table.insert(result, entries[i + 1])
            table.insert(result, redis.call("hget", messages, entries[i]) or "")
        end
    else
        local zset, store, reverse = scheduled, messages, false
        if state == "retry" then
            zset = retry
        elseif state == "archived" then
            zset, store, reverse = dead, dead_messages, true
        elseif state == "completed" then
            zset, store, reverse = done, done_messages, true
        end
        result[1] = redis.call("zcard", zset)
        local entries
        if reverse then
            entries = redis.call("zrevrange", zset, start, stop, "WITHSCORES")
        else
            entries = redis.call("zrange", zset, start, stop, "WITHSCORES")
        end
        for i = 1, #entries, 2 do
            table.insert(result, entries[i])
            table.insert(result, entries[i + 1])
            table.insert(result, redis.call("hget", store, entries[i]) or "")
        end
    end
    return result

elseif command == "delete_all_pending" then
    local rids = redis.call("lrange", pending, 0, -1)
    forget_ids(rids, messages)
    redis.call("del", pending)
    for i = 1, #rids do
        redis.call("hdel", messages, rids[i])
    end
    return #rids

elseif command == "archive_all_pending" then
    local rids = redis.call("lrange", pending, 0, -1)
    for i = 1, #rids do
        local data = redis.call("hget", messages, rids[i])
        if data then
            redis.call("zadd", dead, now, rids[i])
            redis.call("hset", dead_messages, rids[i], data)
            redis.call("hdel", messages, rids[i])
        end
    end
    redis.call("del", pending)
    return #rids

elseif command == "run_all" then
    -- args: "scheduled" | "retry". Archived tasks go through "run" (their retry budget is reset in Python).
    local zset = ARGV[A] == "retry" and retry or scheduled
    local rids = redis.call("zrange", zset, 0, -1)
    for i = 1, #rids do
        redis.call("rpush", pending, rids[i])
    end
    redis.call("del", zset)
    return #rids

elseif command == "delete_all_archived" then
    local rids = redis.call("zrange", dead, 0, -1)
    forget_ids(rids, dead_messages)
    redis.call("del", dead, dead_messages)
    return #rids
end
