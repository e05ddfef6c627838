-- queues: stats and task operations for the inspection service, each one atomic step.
--
-- ARGV = command, now_ms, queue, ...command arguments
--
-- Never rewrites a message with cjson.encode (it would round big numbers in payloads): changed messages come from
-- Python, or get an option written into their JSON text (with_option).
--
-- Keys touched (see jobkit/store/keys.py): K.paused, K.pending(queue), K.messages(queue), K.ids(queue),
-- K.active(queue), K.scheduled(queue), K.retry(queue), K.dead(queue), K.dead_messages(queue), K.done(queue),
-- K.done_messages(queue), K.processed_day(queue, day), K.failed_day(queue, day), K.processed_total(queue),
-- K.failed_total(queue), K.delayed(queue) (stats count a stock producer's delayed messages not yet taken over); the
-- unique locks named in messages' options (released or taken again); the claim keys a "run" is given (a re-run
-- archived task takes its unique lock again); K.canceled(id) and the channels K.cancel and K.finished(id).

local command = ARGV[1]
local now = tonumber(ARGV[2])
local queue = ARGV[3]
local A = 4

local Q = queue_keys(queue)

-- Where a task is now: state, rid, score (due or archived time), message.
local function locate(message_id)
    local rid = redis.call("hget", Q.ids, message_id)
    if not rid then
        local data = redis.call("hget", Q.done_messages, message_id)
        local kept_until = data and redis.call("zscore", Q.done, message_id)
        if kept_until and tonumber(kept_until) > now then -- past its retention it is gone, trimmed or not
            return {"completed", "", kept_until, data}
        end
        return {"missing"}
    end
    if redis.call("hexists", Q.active, rid) == 1 then
        return {"active", rid, redis.call("hget", Q.active, rid), redis.call("hget", Q.messages, rid)}
    end
    local score = redis.call("zscore", Q.scheduled, rid)
    if score then
        return {"scheduled", rid, score, redis.call("hget", Q.messages, rid)}
    end
    score = redis.call("zscore", Q.retry, rid)
    if score then
        return {"retry", rid, score, redis.call("hget", Q.messages, rid)}
    end
    score = redis.call("zscore", Q.dead, rid)
    if score then
        return {"archived", rid, score, redis.call("hget", Q.dead_messages, rid)}
    end
    local data = redis.call("hget", Q.messages, rid)
    if data then
        return {"pending", rid, "", data}
    end
    return {"missing"}
end

-- Remove the pending rids from the message store (and the id index), ending the unique locks they held.
local function drop_pending(rids)
    for i = 1, #rids do
        local data = redis.call("hget", Q.messages, rids[i])
        if data then
            local message_id = message_id_of(data)
            release_unique(unique_lock_of(data), message_id)
            if message_id and redis.call("hget", Q.ids, message_id) == rids[i] then
                redis.call("hdel", Q.ids, message_id)
            end
            redis.call("hdel", Q.messages, rids[i])
        end
    end
end

-- Move the rids' messages to the dead-letter set, archived now like a final failure (each unique lock ends; the
-- message stays inspectable). The caller removes the rids from where they were.
local function archive_all(rids)
    for i = 1, #rids do
        local data = redis.call("hget", Q.messages, rids[i])
        if data then
            release_unique(unique_lock_of(data), message_id_of(data))
            redis.call("zadd", Q.dead, now, rids[i])
            redis.call("hset", Q.dead_messages, rids[i], data)
            redis.call("hdel", Q.messages, rids[i])
        end
    end
end

-- Append (rid, score, message) rows to `result` for flat (rid, score) pairs whose messages are in `store`.
local function add_rows(result, flat, store)
    for i = 1, #flat, 2 do
        table.insert(result, flat[i])
        table.insert(result, flat[i + 1])
        table.insert(result, redis.call("hget", store, flat[i]) or "")
    end
end

if command == "stats" then
    -- args: day number. Returns the raw numbers of one queue; Python derives the rest.
    local day = ARGV[A]
    -- The oldest waiting task's times, read straight from its JSON (no decode of the whole message).
    local head = redis.call("lindex", Q.pending, 0)
    local enqueued, due = "", ""
    if head then
        local data = redis.call("hget", Q.messages, head)
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
            -- jobkit_due: when a delayed task or retry became due; eta: the same, for a stock producer's message
            due = string.match(tail, '"jobkit_due":%s*(%d+)') or string.match(tail, '"eta":%s*(%d+)') or ""
        end
    end
    return {
        redis.call("llen", Q.pending),
        redis.call("hlen", Q.messages),
        redis.call("hlen", Q.active),
        redis.call("zcard", Q.scheduled),
        redis.call("zcard", Q.retry),
        redis.call("zcard", Q.dead),
        redis.call("zcount", Q.done, now, "+inf"),
        redis.call("sismember", K.paused, queue),
        redis.call("get", K.processed_day(queue, day)) or "0",
        redis.call("get", K.failed_day(queue, day)) or "0",
        redis.call("get", K.processed_total(queue)) or "0",
        redis.call("get", K.failed_total(queue)) or "0",
        enqueued,
        due,
        redis.call("llen", K.delayed(queue)),
    }

elseif command == "task" then
    return locate(ARGV[A])

elseif command == "delete" then
    -- Returns {state, deleted (1|0)}; a running task, or one a worker already holds, is not deleted.
    local message_id = ARGV[A]
    local found = locate(message_id)
    local state, rid = found[1], found[2]
    if state == "pending" then
        if redis.call("lrem", Q.pending, 1, rid) == 0 then
            return {"held", 0}
        end
        redis.call("hdel", Q.messages, rid)
        redis.call("hdel", Q.ids, message_id)
    elseif state == "scheduled" or state == "retry" then
        redis.call("zrem", state == "scheduled" and Q.scheduled or Q.retry, rid)
        redis.call("hdel", Q.messages, rid)
        redis.call("hdel", Q.ids, message_id)
    elseif state == "archived" then
        redis.call("zrem", Q.dead, rid)
        redis.call("hdel", Q.dead_messages, rid)
        redis.call("hdel", Q.ids, message_id)
    elseif state == "completed" then
        redis.call("zrem", Q.done, message_id)
        redis.call("hdel", Q.done_messages, message_id)
    else
        return {state, 0}
    end
    -- A deleted unique task gives its lock back in the same step (if it still holds it).
    release_unique(unique_lock_of(found[4]), message_id)
    return {state, 1}

elseif command == "run" then
    -- args: message id, expected state, rid, message to run (for archived tasks: with a fresh retry budget), claims.
    -- Returns {state, 1} when it runs now, {state, 0} when the task changed state, or {"held", 0, holder} when its
    -- unique lock is held by another task.
    local message_id, expected, rid, data = ARGV[A], ARGV[A + 1], ARGV[A + 2], ARGV[A + 3]
    local found = locate(message_id)
    if found[1] ~= expected or found[2] ~= rid then
        return {found[1], 0}
    end
    if expected ~= "scheduled" and expected ~= "retry" and expected ~= "archived" then
        return {found[1], 0}
    end
    local conflict = claim_all(A + 4, message_id)
    if conflict then
        return {"held", 0, conflict[2]}
    end
    if expected == "scheduled" or expected == "retry" then
        redis.call("zrem", expected == "scheduled" and Q.scheduled or Q.retry, rid)
    else
        redis.call("zrem", Q.dead, rid)
        redis.call("hdel", Q.dead_messages, rid)
    end
    redis.call("hset", Q.messages, rid, data)
    redis.call("rpush", Q.pending, rid)
    return {expected, 1}

elseif command == "list" then
    -- args: state, start, stop. Returns {total, rid, score, message, rid, score, message, ...}.
    local state, start, stop = ARGV[A], tonumber(ARGV[A + 1]), tonumber(ARGV[A + 2])
    local result = {}
    if state == "pending" then
        result[1] = redis.call("llen", Q.pending)
        local rids = redis.call("lrange", Q.pending, start, stop)
        for i = 1, #rids do
            table.insert(result, rids[i])
            table.insert(result, "")
            table.insert(result, redis.call("hget", Q.messages, rids[i]) or "")
        end
    elseif state == "active" then
        local entries = redis.call("hgetall", Q.active)
        result[1] = #entries / 2
        add_rows(result, entries, Q.messages)
    else
        local zset, store, reverse = Q.scheduled, Q.messages, false
        if state == "retry" then
            zset = Q.retry
        elseif state == "archived" then
            zset, store, reverse = Q.dead, Q.dead_messages, true
        elseif state == "completed" then
            zset, store, reverse = Q.done, Q.done_messages, true
        end
        result[1] = redis.call("zcard", zset)
        local entries
        if reverse then
            entries = redis.call("zrevrange", zset, start, stop, "WITHSCORES")
        else
            entries = redis.call("zrange", zset, start, stop, "WITHSCORES")
        end
        add_rows(result, entries, store)
    end
    return result

elseif command == "cancel" or command == "archive" then
    -- args: message id, who asks. A pending, scheduled or retry task is archived at once ("cancel" marks it canceled
    -- by who asked): returns {state it was in, "done", archived message}. A cancel of a task a worker holds (running,
    -- or fetched and about to start) is told to the workers (K.cancel) and remembered for 10 minutes (K.canceled, so
    -- the task is not run again if it is handed back): {state, "told"}. Otherwise {state, "no"}, where the state is
    -- "held" for an archive of a task a worker holds.
    local message_id, by = ARGV[A], ARGV[A + 1]
    local found = locate(message_id)
    local state, rid, data = found[1], found[2], found[4]
    local taken = false
    if state == "pending" then
        taken = redis.call("lrem", Q.pending, 1, rid) == 1
        if not taken then
            state = "held" -- fetched by a worker: it starts shortly
        end
    elseif state == "scheduled" or state == "retry" then
        taken = redis.call("zrem", state == "scheduled" and Q.scheduled or Q.retry, rid) == 1
    end
    if taken then
        if command == "cancel" then
            return {state, "done", archive_canceled(queue, rid, message_id, data, by, now)}
        end
        local stored = with_option(with_option(data, "jobkit_archived_by", by), "jobkit_archived_at", now)
        redis.call("hdel", Q.messages, rid)
        redis.call("zadd", Q.dead, now, rid)
        redis.call("hset", Q.dead_messages, rid, stored)
        release_unique(unique_lock_of(data), message_id)
        redis.call("publish", K.finished(message_id), "archived")
        return {state, "done", stored}
    end
    if command == "cancel" and (state == "active" or state == "held") then
        redis.call("set", K.canceled(message_id), by, "PX", 600000)
        redis.call("publish", K.cancel, message_id .. "\t" .. by)
        return {state, "told"}
    end
    return {state, "no"}

elseif command == "delete_all_pending" then
    local rids = redis.call("lrange", Q.pending, 0, -1)
    drop_pending(rids)
    redis.call("del", Q.pending)
    return #rids

elseif command == "archive_all_pending" then
    -- Archived like a final failure: each unique lock ends, the message stays inspectable in the dead-letter set.
    local rids = redis.call("lrange", Q.pending, 0, -1)
    archive_all(rids)
    redis.call("del", Q.pending)
    return #rids

elseif command == "run_all" then
    -- args: "scheduled" | "retry". Archived tasks go through "run" (their retry budget is reset in Python).
    local zset = ARGV[A] == "retry" and Q.retry or Q.scheduled
    local rids = redis.call("zrange", zset, 0, -1)
    for i = 1, #rids do
        redis.call("rpush", Q.pending, rids[i])
    end
    redis.call("del", zset)
    return #rids

elseif command == "delete_state" then
    -- args: "scheduled" | "retry" | "completed", batch. Deletes up to `batch` tasks of that state (the caller calls
    -- again until 0), so Redis is never held long by a large set. Returns how many.
    local state, batch = ARGV[A], tonumber(ARGV[A + 1])
    if state == "completed" then
        local ids = redis.call("zrange", Q.done, 0, batch - 1)
        if #ids > 0 then
            redis.call("hdel", Q.done_messages, unpack(ids))
            redis.call("zrem", Q.done, unpack(ids))
        end
        return #ids
    end
    local zset = state == "retry" and Q.retry or Q.scheduled
    local rids = redis.call("zrange", zset, 0, batch - 1)
    drop_pending(rids) -- scheduled and retry rids live in the same message store as pending ones
    if #rids > 0 then
        redis.call("zrem", zset, unpack(rids))
    end
    return #rids

elseif command == "archive_state" then
    -- args: "scheduled" | "retry", batch. Archives up to `batch` tasks of that state like "archive"; returns how many.
    local zset = ARGV[A] == "retry" and Q.retry or Q.scheduled
    local rids = redis.call("zrange", zset, 0, tonumber(ARGV[A + 1]) - 1)
    archive_all(rids)
    if #rids > 0 then
        redis.call("zrem", zset, unpack(rids))
    end
    return #rids

elseif command == "delete_all_archived" then
    local rids = redis.call("zrange", Q.dead, 0, -1)
    forget_ids(queue, rids, Q.dead_messages)
    redis.call("del", Q.dead, Q.dead_messages)
    return #rids
end
