-- broker: every per-message step of the broker in one round trip.
--
-- ARGV = command, now_ms, queue, worker_id, heartbeat_timeout_ms, dead_ttl_ms, dead_max, maintenance, started, beat,
--        ...command arguments
-- "maintenance" is "" (none this call) or the queues the calling worker knows, "\t<queue>\t<queue>...": orphan
-- recovery looks there for what a dead stock Dramatiq worker held, since Dramatiq keeps no index of a worker's queues.
-- except for the enqueue commands clients send (enqueue, schedule, enqueue_many), which take the short path:
-- ARGV = command, "", queue, ...arguments.
--
-- "started" carries the start markers that ride along: "<queue>\t<rid>\n..." for messages this worker began running
-- since its last call (no extra round trip per message).
--
-- "beat" is "1" when this call carries the consumer's heartbeat (its first call, then at most one a second, and
-- every maintenance call: see JobkitConsumer._call), "" otherwise: a heartbeat a call is not worth a ZADD and an
-- SADD per call when the timeout is 15 s.
--
-- Keys touched (see jobkit/store/keys.py): K.heartbeats, K.worker_acks(worker), K.worker_queue_acks(worker, queue),
-- K.paused, K.pending(queue), K.messages(queue), K.ids(queue), K.active(queue), K.scheduled(queue), K.retry(queue),
-- K.delayed(queue), K.delayed_messages(queue) (Dramatiq's delay queue, which stock producers write: read and emptied),
-- K.wakeup(queue) (idle consumers' wake-up tokens), K.dead(queue), K.dead_messages(queue), K.done(queue),
-- K.done_messages(queue), K.processed_day(queue, day), K.failed_day(queue, day), K.processed_total(queue),
-- K.failed_total(queue); K.canceled(id) (read as a held task is handed back, deleted as a canceled one is archived)
-- and the channel K.finished(id) (published to as a task settles: archived or canceled, and completed when K.waiters
-- says a TaskRef.result() waits for it); and the claim
-- keys an enqueue is given (unique locks, scheduler fire claims), which the caller builds with the same layout.

local command = ARGV[1]
local queue = ARGV[3]

-- Wake-ups: an idle consumer blocks on K.wakeup(queue) (BLPOP, bounded by its idle wait) instead of polling. A token
-- is pushed when the pending list goes from empty to not (free: RPUSH answers the new length), when a delayed task
-- is stored, and by a fetch that leaves work behind; a fetch that empties the pending list drops the tokens. So the
-- list holds about one token, only while there is work no blocked consumer was told about.
local function wake_once()
    if redis.call("llen", K.wakeup(queue)) == 0 then
        redis.call("rpush", K.wakeup(queue), 1)
    end
end

-- Enqueues come first and touch only what they need: they are the one command clients send, once per task.
-- Claims make an enqueue conditional (see claim_all): a unique task refuses a duplicate, and a scheduler fires each
-- nominal time exactly once.

if command == "enqueue" or command == "schedule" or command == "enqueue_many" then
    local function wake_on_first(pending_length)
        if pending_length == 1 then
            redis.call("rpush", K.wakeup(queue), 1)
        end
    end

    -- Store one message whose arguments start at ARGV[at]: rid, data, message id, then for "schedule" due ms and
    -- "scheduled" | "retry", then the claims (count, key, ttl...; absent means none). Returns 1, or {claim index,
    -- holder} when a claim was held (nothing is enqueued).
    local function store(kind, at)
        local rid, message_id = ARGV[at], ARGV[at + 2]
        local claims_at = at + 3
        if kind == "schedule" then
            claims_at = at + 5
        end
        local conflict = claim_all(claims_at, message_id)
        if conflict then
            return conflict
        end
        redis.call("hset", K.messages(queue), rid, ARGV[at + 1])
        redis.call("hset", K.ids(queue), message_id, rid)
        if kind == "enqueue" then
            wake_on_first(redis.call("rpush", K.pending(queue), rid))
        else
            local target = K.scheduled(queue)
            if ARGV[at + 4] == "retry" then
                target = K.retry(queue)
            end
            redis.call("zadd", target, tonumber(ARGV[at + 3]), rid)
            wake_once() -- an idle consumer may be waiting past this due time: it looks again and waits less
        end
        return 1
    end

    if command == "enqueue_many" then
        -- One batch of dispatch_many, all or each refused alone: args are, per message, "enqueue" | "schedule", the
        -- number of arguments that follow, then that command's arguments (claims always with their count). Returns one
        -- entry per message: 1, or "<claim index>\t<holder>" when a claim refused it.
        local results, at = {}, 4
        while at <= #ARGV do
            local kind, count = ARGV[at], tonumber(ARGV[at + 1])
            local outcome = store(kind, at + 2)
            if outcome == 1 then
                results[#results + 1] = 1
            else
                results[#results + 1] = outcome[1] .. "\t" .. outcome[2]
            end
            at = at + 2 + count
        end
        return results
    end

    return store(command, 4) -- ARGV[4] is the first argument of the short path
end

local now = tonumber(ARGV[2])
-- The same time as text, for the commands that take it as an argument: Redis 6.2 formats each number a script passes
-- with snprintf("%.17g"), a cost per argument that ARGV's own text does not have.
local now_text = ARGV[2]
local worker_id = ARGV[4]
local heartbeat_timeout = tonumber(ARGV[5])
local dead_ttl = tonumber(ARGV[6])
local dead_max = tonumber(ARGV[7])
local maintenance = ARGV[8]
local started = ARGV[9]
local beat = ARGV[10] == "1"
local A = 11 -- first command argument
local ACK_ARGS = 8 -- arguments per message of "ack"

local queue_acks = K.worker_queue_acks(worker_id, queue)
local Q = queue_keys(queue)
local FORWARD_BATCH = 1000
local TRIM_BATCH = 1000
local COUNTER_TTL = 91 * 86400 -- seconds: 90 days of history

-- Each call defines only the steps it takes: Redis runs a script's whole body on every call, and each `local
-- function` makes a closure as it runs (about 0.15 us apiece, the largest fixed cost of a call), so a fetch does
-- not pay for the steps of an ack, nor an ack for orphan recovery. Steps several commands share are declared
-- first and defined under the condition that needs them.

-- The heartbeat, and this queue in the index of the queues the worker fetches from (K.worker_acks(worker), which
-- orphan recovery reads). A consumer's first call beats, so its queue is in the index before its first fetch takes
-- anything; a worker whose ack sets recovery released (its heartbeat was older than the timeout) beats again with
-- its next call, which puts the queue back.
local function heartbeat()
    if beat then
        redis.call("zadd", K.heartbeats, now_text, worker_id)
        redis.call("sadd", K.worker_acks(worker_id), queue)
    end
end

-- Start markers, one HSET per queue. A marker for a rid this same call acks is dropped: it would be deleted again
-- before the call ends.
local function mark_started()
    if started == "" then
        return
    end
    local acked = {}
    if command == "ack" then
        for at = A, #ARGV, ACK_ARGS do
            acked[ARGV[at]] = true
        end
    end
    local by_queue = {}
    for q, rid in string.gmatch(started, "([^\t\n]+)\t([^\t\n]+)") do
        if not acked[rid] then
            by_queue[q] = by_queue[q] or {}
            by_queue[q][#by_queue[q] + 1] = rid
        end
    end
    for q, rids in pairs(by_queue) do
        -- Only while still held: a marker arriving after its ack must not leave a stale "running" behind.
        local held = redis.call("smismember", K.worker_queue_acks(worker_id, q), unpack(rids))
        local fields = {}
        for i = 1, #rids do
            if held[i] == 1 then
                fields[#fields + 1] = rids[i]
                fields[#fields + 1] = now_text
            end
        end
        if #fields > 0 then
            redis.call("hset", K.active(q), unpack(fields))
        end
    end
end

-- Settling (ack, nack, wait_unknown): letting go of fetched rids, the id index of completed tasks, the counters; all
-- written by finish_settled at the end of the call.
local settled, count, write_counts, settle, forget_id, finish_settled
if command == "ack" or command == "nack" or command == "wait_unknown" then
    -- The counters move once per call, however many tasks it settles (one INCRBY each; see write_counts).
    local tally = {processed = 0, failed = 0}
    function count(outcome_failed)
        tally.processed = tally.processed + 1
        if outcome_failed then
            tally.failed = tally.failed + 1
        end
    end

    local function add_to(key, n, ttl)
        if redis.call("incrby", key, n) == n and ttl then -- created by this call
            redis.call("expire", key, ttl)
        end
    end

    function write_counts()
        if tally.processed == 0 then
            return
        end
        local day = math.floor(now / 86400000)
        add_to(K.processed_day(queue, day), tally.processed, COUNTER_TTL)
        add_to(K.processed_total(queue), tally.processed)
        if tally.failed > 0 then
            add_to(K.failed_day(queue, day), tally.failed, COUNTER_TTL)
            add_to(K.failed_total(queue), tally.failed)
        end
    end

    -- This worker lets go of a rid it fetched (acked or archived): true when it still held it; the rid is then neither
    -- live nor running any more (its message and start marker go at the end of the call, one HDEL each for all rids).
    settled = {}
    function settle(rid)
        if redis.call("srem", queue_acks, rid) == 0 then
            return false
        end
        settled[#settled + 1] = rid
        return true
    end

    -- Id index entries of completed tasks, dropped at the end of the call where they still point at the rid.
    local done_ids, done_rids = {}, {}
    function forget_id(message_id, rid)
        done_ids[#done_ids + 1] = message_id
        done_rids[#done_rids + 1] = rid
    end

    function finish_settled()
        if #settled > 0 then
            redis.call("hdel", Q.messages, unpack(settled))
            redis.call("hdel", Q.active, unpack(settled))
        end
        if #done_ids > 0 then
            local current = redis.call("hmget", Q.ids, unpack(done_ids))
            local stale = {}
            for i = 1, #done_ids do
                if current[i] == done_rids[i] then
                    stale[#stale + 1] = done_ids[i]
                end
            end
            if #stale > 0 then
                redis.call("hdel", Q.ids, unpack(stale))
            end
        end
        write_counts()
    end
end

-- Trimming (ack, nack and maintenance calls): the archive and the completed records, by age and by count.
local TRIM_PER_ACK = 4 -- records dropped per completion at most (see trim_completed)
local trim_archived, trim_completed, trim
if command == "ack" or command == "nack" or maintenance ~= "" then
    -- Drop the oldest archived rids (ranks 0..n-1) with their messages and id index entries.
    local function drop_archived(n)
        if n <= 0 then
            return
        end
        local oldest = redis.call("zrange", Q.dead, 0, n - 1)
        forget_ids(queue, oldest, Q.dead_messages)
        if #oldest > 0 then
            redis.call("hdel", Q.dead_messages, unpack(oldest))
            redis.call("zremrangebyrank", Q.dead, 0, #oldest - 1)
        end
    end

    -- Drop up to `budget` of the archived messages beyond the size cap and (unless `cap_only`, as on an ack, which
    -- leaves age to the maintenance pass) past their age: the oldest first (both are the lowest scores), so even a set
    -- an operator filled far past the cap shrinks a batch at a time.
    function trim_archived(budget, cap_only)
        local surplus = redis.call("zcard", Q.dead) - dead_max
        if not cap_only then
            surplus = math.max(surplus, redis.call("zcount", Q.dead, "-inf", now - dead_ttl))
        end
        drop_archived(math.min(surplus, budget))
    end

    -- Completed records are bounded by age and by count as they are written, so trimming keeps pace with any throughput
    -- without a timed pass: each completion that keeps a record drops up to TRIM_PER_ACK of the records that are past
    -- their retention or beyond the queue's cap (one in, up to a few out), the lowest scores first (they expire first;
    -- with one retention per queue, the oldest). The record's two keys expire with the record kept longest, so a queue
    -- that goes quiet leaves nothing behind once its last retention ends, whether a maintenance pass runs or not.

    function trim_completed(cap, budget)
        local n = math.min(math.max(redis.call("zcount", Q.done, "-inf", now_text), redis.call("zcard", Q.done) - cap),
            budget)
        if n > 0 then
            local oldest = redis.call("zrange", Q.done, 0, n - 1)
            redis.call("hdel", Q.done_messages, unpack(oldest))
            redis.call("zremrangebyrank", Q.done, 0, #oldest - 1)
        end
    end

    -- The archived and completed messages past their age or beyond their cap, a batch of each, and the waiters that
    -- gave up.
    function trim()
        trim_archived(TRIM_BATCH)
        trim_completed(math.huge, TRIM_BATCH)
        redis.call("zremrangebyscore", K.waiters, "-inf", now_text)
    end
end

-- Recovery (maintenance calls and a worker's own release): handing back what a worker held.
local release_worker, recover_orphans
if command == "release" or maintenance ~= "" then
    -- Hand back the rids a worker held on queue q (to the head of the queue; canceled ones to the archive) and forget
    -- them; returns how many went back.
    local function hand_back(worker, q)
        local worker_acks = K.worker_queue_acks(worker, q)
        local queue_active = K.active(q)
        local rids = redis.call("smembers", worker_acks)
        local released = 0
        for j = #rids, 1, -1 do
            redis.call("hdel", queue_active, rids[j])
            released = released + hand_back_one(q, rids[j], now)
        end
        redis.call("del", worker_acks)
        return released
    end

    -- Hand back every rid a worker held (on any queue) and forget the worker. K.worker_acks(worker) lists the queues a
    -- jobkit worker fetched from, so nothing needs KEYS or SCAN. A stock Dramatiq worker keeps no such index: for it,
    -- the queues in `known` (tab-separated) are searched, with their delay queues, whose rids go back to Dramatiq's
    -- delay list (the next fetch moves them to the scheduled set).
    function release_worker(worker, known)
        local queues_index = K.worker_acks(worker)
        local queues = redis.call("smembers", queues_index)
        local released = 0
        for i = 1, #queues do
            released = released + hand_back(worker, queues[i])
        end
        for q in string.gmatch(known or "", "[^\t]+") do
            released = released + hand_back(worker, q)
            local delay_acks = K.worker_queue_acks(worker, q .. ".DQ")
            local rids = redis.call("smembers", delay_acks)
            for j = 1, #rids do
                if redis.call("hexists", K.delayed_messages(q), rids[j]) == 1 then
                    redis.call("rpush", K.delayed(q), rids[j])
                    released = released + 1
                end
            end
            redis.call("del", delay_acks)
        end
        redis.call("del", queues_index)
        redis.call("zrem", K.heartbeats, worker)
        return released
    end

    -- Workers whose heartbeat stopped: their unfinished tasks run again elsewhere.
    function recover_orphans()
        local dead_workers = redis.call("zrangebyscore", K.heartbeats, "-inf", now - heartbeat_timeout)
        for i = 1, #dead_workers do
            release_worker(dead_workers[i], maintenance)
        end
    end
end

if command ~= "release" and command ~= "qsize" then
    heartbeat()
end
mark_started()
if maintenance ~= "" then
    recover_orphans()
    trim()
end

if command == "fetch" then
    -- args: how many. Returns {next due time or -1, 1 if paused else 0, message, message, ...}.
    -- Move due rids of one sorted set to the end of the pending list.
    local function forward(zset)
        local due = redis.call("zrangebyscore", zset, "-inf", now_text, "LIMIT", 0, FORWARD_BATCH)
        for i = 1, #due do
            redis.call("rpush", Q.pending, due[i])
        end
        if #due > 0 then
            redis.call("zremrangebyrank", zset, 0, #due - 1)
        end
    end

    -- A stock Dramatiq producer's delayed messages wait in K.delayed(queue) (rids, oldest first) and
    -- K.delayed_messages(queue) (rid -> message, with its due time in options.eta), which Dramatiq's own workers read.
    -- Move them, rid and message unchanged, into this queue's scheduled set, due at their eta: from then on they are
    -- jobkit's delayed tasks (in Redis, in stats, by id). The worker that runs one drops its eta and its ".DQ" queue
    -- name. Rids a stock worker has fetched are no longer in the list, so only unclaimed messages move. One LLEN when
    -- there are none.
    local function forward_delayed()
        local delayed = K.delayed(queue)
        if redis.call("llen", delayed) == 0 then
            return
        end
        local delayed_messages = K.delayed_messages(queue)
        local rids = redis.call("lrange", delayed, 0, FORWARD_BATCH - 1)
        local data = redis.call("hmget", delayed_messages, unpack(rids))
        for i = 1, #rids do
            if data[i] then
                local due, message_id = now, nil
                local ok, decoded = pcall(cjson.decode, data[i])
                if ok and type(decoded) == "table" then
                    message_id = decoded["message_id"]
                    if type(decoded["options"]) == "table" and tonumber(decoded["options"]["eta"]) then
                        due = tonumber(decoded["options"]["eta"])
                    end
                end
                redis.call("hset", Q.messages, rids[i], data[i])
                if type(message_id) == "string" then
                    redis.call("hset", Q.ids, message_id, rids[i])
                end
                redis.call("zadd", Q.scheduled, due, rids[i])
            end
        end
        redis.call("ltrim", delayed, #rids, -1)
        redis.call("hdel", delayed_messages, unpack(rids))
    end

    -- After a fetch: no tokens when it emptied the pending list; one, for another idle consumer, when work may be left
    -- behind. A fetch that got all it asked for does not look (an LLEN per busy fetch): if it took the last rid, the
    -- token wakes one idle consumer for one empty fetch, which drops it.
    local function settle_wakeups(emptied)
        if emptied then
            redis.call("del", K.wakeup(queue))
        else
            wake_once()
        end
    end

    -- The due time of a sorted set's first rid, or nil when it is empty.
    local function first_due(zset)
        return tonumber(redis.call("zrange", zset, 0, 0, "WITHSCORES")[2])
    end

    -- Forward the due rids of the scheduled and retry sets, and return the earliest due time left (nil: none). One
    -- ZRANGE per set when nothing is due, which is most fetches.
    local function forward_due()
        local best = nil
        for _, zset in ipairs({Q.scheduled, Q.retry}) do
            local first = first_due(zset)
            if first and first <= now then
                forward(zset)
                first = first_due(zset)
            end
            if first and (best == nil or first < best) then
                best = first
            end
        end
        return best
    end

    forward_delayed()
    local result = {forward_due() or -1, 0}
    if redis.call("sismember", K.paused, queue) == 1 then
        result[2] = 1
        redis.call("del", K.wakeup(queue)) -- a paused queue's tokens would only wake its consumers again and again
        return result
    end
    local wanted = tonumber(ARGV[A])
    local rids = redis.call("lpop", Q.pending, wanted) or {} -- one LPOP with a count (Redis 6.2) for the batch
    settle_wakeups(#rids < wanted)
    if #rids > 0 then
        redis.call("sadd", queue_acks, unpack(rids))
        -- The queue is in the worker's index since its first beat, unless something released the worker since (its
        -- own exit finalizer while a consumer thread still fetches): then the index and the heartbeat come back, so
        -- orphan recovery finds these rids once the worker is gone.
        if redis.call("sadd", K.worker_acks(worker_id), queue) == 1 then
            redis.call("zadd", K.heartbeats, "NX", now_text, worker_id)
        end
        local data = redis.call("hmget", Q.messages, unpack(rids))
        for i = 1, #data do
            result[#result + 1] = data[i]
        end
    end
    return result

elseif command == "heartbeat" then
    -- Returns 1 if the queue is paused.
    return redis.call("sismember", K.paused, queue)

elseif command == "ack" then
    -- args, ACK_ARGS per message (a consumer sends the acks that gathered while its previous call was out in one):
    -- rid, message id, "ok" | "retry" | "deferred", retention ms, completed message, unique lock key ("" for none),
    -- how many completed records the queue keeps at most (retention.max), when the record's retention ends (ms with a
    -- fraction: completion time + retention, "" for now + retention)
    -- ("deferred": a rate or concurrency limit put the message back with a delay before it ran; not counted)

    -- The completions of this call: how many, the queue's cap, the longest retention kept, and the records to write
    -- (ZADD and HSET arguments), written with one command each (see finish_completions).
    local completions = {n = 0, cap = math.huge, longest = 0, scores = {}, records = {}}

    -- Keep a completed task's record (message id -> data) for `retention` ms, until `kept_until` (ms with a fraction:
    -- the caller's text, passed on as it is), among at most `cap` of its queue. The records, the keys' expiry and the
    -- trimming are written once per call, in finish_completions.
    local function keep_completed(message_id, data, retention, cap, kept_until)
        completions.n = completions.n + 1
        if retention <= 0 or cap <= 0 then
            return -- nothing kept: only what has expired goes
        end
        local scores, records = completions.scores, completions.records
        scores[#scores + 1] = kept_until
        scores[#scores + 1] = message_id
        records[#records + 1] = message_id
        records[#records + 1] = data
        completions.cap = math.min(completions.cap, cap)
        completions.longest = math.max(completions.longest, retention)
    end

    -- A records key whose expiry is extended is given a tenth more than the longest retention it must cover (a minute
    -- at most), so the extension (PEXPIRE) is needed about once a minute for a day's retention, not on every call (each
    -- call only reads the PTTL), and a short retention's keys still go soon after it ends.
    local EXPIRY_MARGIN = 60000

    -- After the completions of one call: the records (one ZADD, one HSET), the keys living at least as long as the
    -- record kept longest, and up to TRIM_PER_ACK records per completion that are past their retention or beyond the
    -- cap go. The two keys are written together and trimmed together, so the set's PTTL speaks for both; the hash's own
    -- is read on the calls that beat (once a second), should anything have deleted the one and not the other.
    local function finish_completions()
        if completions.n == 0 then
            return
        end
        if #completions.scores > 0 then
            redis.call("zadd", Q.done, unpack(completions.scores))
            redis.call("hset", Q.done_messages, unpack(completions.records))
            local longest = completions.longest
            local keys = {Q.done}
            if beat then
                keys[2] = Q.done_messages
            end
            local extend = false
            for _, key in ipairs(keys) do
                extend = extend or redis.call("pttl", key) < longest
            end
            if extend then
                local ttl = longest + math.min(EXPIRY_MARGIN, math.floor(longest / 10))
                redis.call("pexpire", Q.done, ttl)
                redis.call("pexpire", Q.done_messages, ttl)
            end
        end
        trim_completed(completions.cap, TRIM_PER_ACK * completions.n)
    end

    -- TaskRef.result() callers register the message id they wait for in K.waiters (until when, ms) before they read the
    -- task, so a completion publishes K.finished(id) only for those: one ZMSCORE per call instead of a PUBLISH per
    -- task. A waiter that registered after this call reads the task completed; one that gave up leaves an entry that
    -- expires.
    local function publish_completed(message_ids)
        if #message_ids == 0 then
            return
        end
        local waited = redis.call("zmscore", K.waiters, unpack(message_ids))
        local heard = {}
        for i = 1, #message_ids do
            if waited[i] then
                redis.call("publish", K.finished(message_ids[i]), "completed")
                heard[#heard + 1] = message_ids[i]
            end
        end
        if #heard > 0 then
            redis.call("zrem", K.waiters, unpack(heard))
        end
    end

    -- The rids of an "ack" call this worker still held, let go of with one SMISMEMBER and one SREM for all (settle's
    -- work for a batch): a set of rid -> true.
    local function settle_acked()
        local rids = {}
        for at = A, #ARGV, ACK_ARGS do
            rids[#rids + 1] = ARGV[at]
        end
        local held = redis.call("smismember", queue_acks, unpack(rids))
        local found, taken = {}, {}
        for i = 1, #rids do
            if held[i] == 1 and not found[rids[i]] then
                found[rids[i]] = true
                taken[#taken + 1] = rids[i]
                settled[#settled + 1] = rids[i]
            end
        end
        if #taken > 0 then
            redis.call("srem", queue_acks, unpack(taken))
        end
        return found
    end

    -- One acked message whose arguments start at ARGV[at] (see the "ack" command), if this worker held it; a completed
    -- one's message id is added to `completed`.
    local function ack_one(at, held, completed)
        local rid = ARGV[at]
        if held[rid] then
            local outcome = ARGV[at + 2]
            if outcome ~= "deferred" then
                count(outcome == "retry")
            end
            if outcome == "ok" then
                local message_id = ARGV[at + 1]
                forget_id(message_id, rid)
                release_unique(ARGV[at + 5], message_id)
                local retention = tonumber(ARGV[at + 3])
                local kept_until = ARGV[at + 7]
                if kept_until == "" then
                    kept_until = now + retention
                end
                keep_completed(message_id, ARGV[at + 4], retention, tonumber(ARGV[at + 6]), kept_until)
                completed[#completed + 1] = message_id
            end
        end
    end

    local held, completed = settle_acked(), {}
    for at = A, #ARGV, ACK_ARGS do
        ack_one(at, held, completed)
    end
    finish_completions()
    publish_completed(completed)
    -- What an operator archived in bulk beyond the cap goes too, a few per acknowledged task (one ZCARD).
    trim_archived(TRIM_PER_ACK * math.floor((#ARGV - A + 1) / ACK_ARGS), true)

elseif command == "nack" then
    -- args: rid, message as it ended (with its final error), unique lock key, message id, "archived" | "canceled"
    -- (a canceled task counts as processed, not failed)
    local rid, message_id, state = ARGV[A], ARGV[A + 3], ARGV[A + 4]
    if settle(rid) then
        redis.call("zadd", Q.dead, now_text, rid)
        redis.call("hset", Q.dead_messages, rid, ARGV[A + 1])
        count(state ~= "canceled")
        release_unique(ARGV[A + 2], message_id)
        if state == "canceled" then
            redis.call("del", K.canceled(message_id))
        end
        redis.call("publish", K.finished(message_id), state)
        trim()
    end

elseif command == "wait_unknown" then
    -- args: rid, new rid, message with its last_error, message id, due ms. A task this worker has no actor for goes
    -- to the retry set as a new rid, in the same step that lets go of the fetched one (never both, never neither);
    -- not counted.
    local rid, new_rid, data, message_id, due = ARGV[A], ARGV[A + 1], ARGV[A + 2], ARGV[A + 3], tonumber(ARGV[A + 4])
    if settle(rid) then
        redis.call("hset", Q.messages, new_rid, data)
        redis.call("hset", Q.ids, message_id, new_rid)
        redis.call("zadd", Q.retry, due, new_rid)
    end

elseif command == "requeue" then
    -- Put fetched-but-unprocessed rids back at the head of the queue, keeping their order (canceled ones are
    -- archived instead).
    for i = #ARGV, A, -1 do
        if redis.call("srem", queue_acks, ARGV[i]) == 1 then
            redis.call("hdel", Q.active, ARGV[i])
            hand_back_one(queue, ARGV[i], now)
        end
    end

elseif command == "release" then
    -- A worker stopping at once: everything it still holds goes back to its queue and it stops looking alive.
    return release_worker(worker_id)

elseif command == "qsize" then
    return redis.call("hlen", Q.messages)
end
if finish_settled then -- defined for the commands that settle (see above)
    finish_settled()
end
