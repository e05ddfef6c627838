-- search: one bounded step of a text search over the stored tasks of some queues, resumable by a cursor.
--
-- ARGV = now_ms, text, text_as_json, task, task_as_json, states, sensitive, entries_budget, ms_budget, limit,
--        source, hscan_cursor, skip, bytes_budget, largest, count, batch_bytes, max_count, first_count,
--        (queue, store)...
--
--   text          the query, ASCII-lowercased ("" matches every task the other filters let through)
--   text_as_json  the same text as it appears inside a JSON string (escaped the way Python's json.dumps does), for
--                 the cheap first look at a stored message before it is decoded
--   task          only tasks of this type ("" = any); task_as_json is json.dumps(task)
--   states        comma-separated states wanted among pending, active, scheduled, retry ("" = none of them: the
--                 "live" stores are then not listed as sources at all)
--   sensitive     JSON {task: [payload path, ...]}: the values at those paths never match (nor does any sealed value)
--   entries_budget / ms_budget / bytes_budget
--                 stop after examining this many stored messages, or after this long (the clock is read every few
--                 messages or every few hundred KiB, before each message), or once HSCAN copied this many bytes
--   count, batch_bytes, max_count, first_count
--                 the HSCAN COUNT to go on with, and how each next one is chosen: about batch_bytes of messages, as
--                 large as the last batch's were, at most 4 times the last COUNT and at most max_count (HSCAN copies
--                 every value of its batch before a single one is looked at: 500 messages of 900 KB held Redis for
--                 seconds); each hash starts again from first_count, since its messages may be larger. A batch
--                 resumed with a skip is asked with the same COUNT, so it is the same batch again
--   largest       a message longer than this many bytes is skipped unread (never lowered, searched or decoded): it
--                 costs only its HSCAN copy, counted in the bytes budget
--   limit         stop after this many matches
--   source, hscan_cursor, skip
--                 where to resume: the 1-based index of the (queue, store) pair, the HSCAN cursor of its hash, and how
--                 many entries of that HSCAN batch were already examined
--   store         "live" (K.messages: pending, active, scheduled, retry), "archived" (K.dead_messages) or
--                 "completed" (K.done_messages)
--
-- A task matches when the text is a prefix of its id, or occurs (plain, never as a pattern) in its type, its last
-- error, or a key or scalar value of its payload outside the sensitive paths.
--
-- Returns {next source, next hscan cursor, next skip, examined, done (1 | 0), next count, queue, state, score,
-- message, ...}:
-- score is the due time (scheduled, retry), the start time (active), the archived time or the keep-until time
-- (completed), "" for pending.
--
-- Keys touched (see jobkit/store/keys.py), read only: K.messages(queue), K.active(queue), K.scheduled(queue),
-- K.retry(queue), K.dead(queue), K.dead_messages(queue), K.done(queue), K.done_messages(queue).

local now = tonumber(ARGV[1])
local text, text_json, task, task_json = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local entries_budget, ms_budget, limit = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local source, cursor, skip = tonumber(ARGV[11]), ARGV[12], tonumber(ARGV[13])
local bytes_budget, largest = tonumber(ARGV[14]), tonumber(ARGV[15])
local count, batch_bytes, max_count = tonumber(ARGV[16]), tonumber(ARGV[17]), tonumber(ARGV[18])
local first_count = tonumber(ARGV[19])
local FIRST_SOURCE = 20
-- Read the clock after this many messages, or this many bytes, since the last reading (TIME costs a call of its own).
local CLOCK_EVERY_ENTRIES, CLOCK_EVERY_BYTES = 32, 256 * 1024
local SEALED = "jobkit:sealed:v1:"

local wanted = {}
for state in string.gmatch(ARGV[6], "[^,]+") do
    wanted[state] = true
end

local sensitive = {}
do
    local ok, decoded = pcall(cjson.decode, ARGV[7])
    if ok and type(decoded) == "table" then
        for name, paths in pairs(decoded) do
            local set = {}
            for _, path in ipairs(paths) do
                set[path] = true
            end
            sensitive[name] = set
        end
    end
end

-- How the task filter appears in a stored message (Dramatiq writes compact JSON), for the cheap first look.
local task_marker = ""
if task ~= "" then
    task_marker = '"actor_name":' .. task_json
end

-- Lowercasing costs a copy of each message: only when the text has letters to fold.
local fold = string.find(text, "%a") ~= nil

local function lower(value)
    return fold and string.lower(value) or value
end

local function contains(value)
    return string.find(lower(value), text, 1, true) ~= nil
end

-- True when the text occurs in a key or scalar value of `node` (at `path`), skipping the sensitive paths.
local function payload_matches(node, path, hidden)
    if hidden[path] then
        return false
    end
    local kind = type(node)
    if kind == "string" then
        if string.sub(node, 1, #SEALED) == SEALED then
            return false
        end
        if hidden[path .. ".query"] then -- `url.query`: the query string (and anything after it) is hidden
            node = string.match(node, "^[^?]*")
        end
        return contains(node)
    elseif kind == "number" then
        return contains(tostring(node))
    elseif kind == "table" then
        local prefix = path == "" and "" or path .. "."
        if #node > 0 then
            for index, child in ipairs(node) do
                if payload_matches(child, prefix .. tostring(index - 1), hidden) then
                    return true
                end
            end
            return false
        end
        for key, child in pairs(node) do
            if type(key) == "string" then
                local child_path = prefix .. key
                if not hidden[child_path] and contains(key) then
                    return true
                end
                if payload_matches(child, child_path, hidden) then
                    return true
                end
            end
        end
    end
    return false
end

-- Where the JSON string value that starts at `from` (just after its opening quote) ends: its closing quote.
local function string_end(body, from)
    local at = from
    while true do
        local quote = string.find(body, '"', at, true)
        if not quote then
            return #body + 1
        end
        local backslashes = 0
        while string.byte(body, quote - 1 - backslashes) == 92 do -- a quote after an odd number of \ is escaped
            backslashes = backslashes + 1
        end
        if backslashes % 2 == 0 then
            return quote
        end
        at = quote + 1
    end
end

-- The cheap look at a stored message, before it is decoded: can the text be in one of the parts that match (its
-- type, its payload, its last error, the start of its id)? Dramatiq writes compact JSON in a fixed order (queue_name,
-- actor_name, args, kwargs, options, message_id, message_timestamp), so each part is found without decoding, and the
-- rest (the queue name, option names, timestamps, the rid) never makes a number or a common word look like a hit.
local function may_match(body)
    local first = string.find(body, text_json, 1, true)
    if not first then
        return false -- most messages: the text is nowhere in them
    end
    local kwargs = string.find(body, '"kwargs":', 1, true)
    local options
    if kwargs then
        local from = kwargs
        while true do
            local found = string.find(body, ',"options":', from, true)
            if not found then
                break
            end
            options, from = found, found + 1
        end
    end
    if not options then
        return true -- not the usual layout: decode and see
    end
    local hit = string.find(body, text_json, kwargs, true)
    if hit and hit < options then
        return true
    end
    local actor = string.find(body, '"actor_name":"', 1, true)
    if actor and actor < kwargs then
        hit = string.find(body, text_json, actor + 14, true)
        if hit and hit + #text_json <= string_end(body, actor + 14) then
            return true
        end
    end
    local error_at = string.find(body, '"last_error":"', options, true)
    if error_at then
        hit = string.find(body, text_json, error_at + 14, true)
        if hit and hit + #text_json <= string_end(body, error_at + 14) then
            return true
        end
    end
    return string.find(body, '"message_id":"' .. text_json, options, true) ~= nil
end

-- The decoded message when it matches, else nil.
local function match(data)
    if task_marker ~= "" and not string.find(data, task_marker, 1, true) then
        return nil
    end
    if text ~= "" and not may_match(lower(data)) then
        return nil
    end
    local ok, message = pcall(cjson.decode, data)
    if not ok or type(message) ~= "table" then
        return nil
    end
    local name = message["actor_name"]
    if type(name) ~= "string" or (task ~= "" and name ~= task) then
        return nil
    end
    if text == "" then
        return message
    end
    local id = message["message_id"]
    if type(id) == "string" and string.sub(lower(id), 1, #text) == text then
        return message
    end
    if contains(name) then
        return message
    end
    local options = message["options"]
    if type(options) == "table" and type(options["last_error"]) == "string" and contains(options["last_error"]) then
        return message
    end
    if type(message["kwargs"]) == "table" and payload_matches(message["kwargs"], "", sensitive[name] or {}) then
        return message
    end
    return nil
end

-- The state and score of a live rid, or nil when it is in none of the wanted states.
local function live_state(queue, rid)
    local started = redis.call("hget", K.active(queue), rid)
    if started then
        return wanted["active"] and "active" or nil, started
    end
    local due = redis.call("zscore", K.scheduled(queue), rid)
    if due then
        return wanted["scheduled"] and "scheduled" or nil, due
    end
    due = redis.call("zscore", K.retry(queue), rid)
    if due then
        return wanted["retry"] and "retry" or nil, due
    end
    return wanted["pending"] and "pending" or nil, ""
end

local function clock_ms()
    local t = redis.call("time")
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local started_at = clock_ms()
local sources = (#ARGV - FIRST_SOURCE + 1) / 2
local examined, found, copied = 0, 0, 0
local since_clock_entries, since_clock_bytes = 0, 0
local out_of_time = false
local result = {0, "0", 0, 0, 0, 0}

-- Whether this call has spent its budget: messages, or (read every few messages or KiB) time.
local function spent()
    if examined >= entries_budget or out_of_time then
        return true
    end
    if since_clock_entries >= CLOCK_EVERY_ENTRIES or since_clock_bytes >= CLOCK_EVERY_BYTES then
        since_clock_entries, since_clock_bytes = 0, 0
        out_of_time = clock_ms() - started_at >= ms_budget
    end
    return out_of_time
end

local batches = 0
while source <= sources do
    if found >= limit or (batches > 0 and (copied >= bytes_budget or spent())) then
        break
    end
    batches = batches + 1
    since_clock_entries = since_clock_entries + 1 -- an empty batch (a sparse hash) costs a call too
    local queue, store = ARGV[FIRST_SOURCE + 2 * (source - 1)], ARGV[FIRST_SOURCE + 2 * (source - 1) + 1]
    local hash = K.messages(queue)
    if store == "archived" then
        hash = K.dead_messages(queue)
    elseif store == "completed" then
        hash = K.done_messages(queue)
    end
    local reply = redis.call("hscan", hash, cursor, "COUNT", count)
    local entries = reply[2]
    local reply_bytes = 0 -- what HSCAN copied: the messages skipped (a resumed batch), then each one looked at
    for i = 2, 2 * skip, 2 do
        reply_bytes = reply_bytes + #entries[i]
    end
    local position = skip
    local stopped = false
    for i = 2 * skip + 1, #entries, 2 do
        -- (spent() only when a budget may be reached: a function call per message costs a few percent of a search)
        local due = since_clock_entries >= CLOCK_EVERY_ENTRIES or since_clock_bytes >= CLOCK_EVERY_BYTES
        if (due or examined >= entries_budget) and examined > 0 and spent() then
            stopped = true -- resume at this message of this batch: same cursor, skipping what was examined
            break
        end
        local field, data = entries[i], entries[i + 1]
        position = position + 1
        examined = examined + 1
        local size = #data
        reply_bytes = reply_bytes + size
        since_clock_entries, since_clock_bytes = since_clock_entries + 1, since_clock_bytes + size
        local message = nil
        if size <= largest then
            message = match(data)
        end
        if message then
            local state, score = nil, nil
            if store == "live" then
                state, score = live_state(queue, field)
            elseif store == "archived" then
                state, score = "archived", redis.call("zscore", K.dead(queue), field)
            else
                score = redis.call("zscore", K.done(queue), field)
                if score and tonumber(score) >= now then
                    state = "completed"
                end
            end
            if state and score then
                table.insert(result, queue)
                table.insert(result, state)
                table.insert(result, score)
                table.insert(result, data)
                found = found + 1
                if found >= limit and i + 1 < #entries then
                    stopped = true -- resume inside this batch: same cursor, skipping what was examined
                    break
                end
            end
        end
    end
    copied = copied + reply_bytes -- (a stopped batch counts only what was looked at: the call ends anyway)
    if stopped then
        skip = position
    else
        skip = 0
        cursor = reply[1]
        if cursor == "0" then
            source = source + 1
            count = first_count
        elseif #entries > 0 then -- the next batch: about batch_bytes of messages the size of these
            local sized = math.floor(batch_bytes * (#entries / 2) / math.max(1, reply_bytes))
            count = math.max(1, math.min(max_count, 4 * count, sized))
        end
    end
end

result[1], result[2], result[3], result[4] = source, cursor, skip, examined
result[5], result[6] = source > sources and 1 or 0, count
return result
