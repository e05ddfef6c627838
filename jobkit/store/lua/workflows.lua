-- workflows: the state of one workflow run, a hash of fields named <kind>:<step>:<member>
-- (t = task id, q = queue, m = member state, r = result JSON, n:<step> = members completed).
--
-- ARGV = command, workflow id, ...command arguments
--
-- Keys touched (see jobkit/store/keys.py): K.workflow(id).

local command, key = ARGV[1], K.workflow(ARGV[2])

if command == "start" then
    -- args: step, member, message id. A member starts. The run is "running" again only if nothing failed, or if
    -- this is the failed task being retried (that resumes the run); a sibling starting after another member failed
    -- must not wipe out that failure.
    local step, member, message_id = ARGV[3], ARGV[4], ARGV[5]
    redis.call("hset", key, "m:" .. step .. ":" .. member, "running", "t:" .. step .. ":" .. member, message_id)
    local failed = redis.call("hget", key, "failed_task")
    if not failed or failed == message_id then
        redis.call("hset", key, "status", "running", "step", step)
        redis.call("hdel", key, "failed_step", "error", "failed_task", "failed_queue")
    end
    return 1

elseif command == "complete" then
    -- args: step, member, result JSON. Records a member's result once (a redelivered message does not count twice)
    -- and returns how many members of the step have completed, or -1 if it was recorded already.
    local step, member = ARGV[3], ARGV[4]
    if redis.call("hsetnx", key, "r:" .. step .. ":" .. member, ARGV[5]) == 0 then
        return -1
    end
    redis.call("hset", key, "m:" .. step .. ":" .. member, "completed")
    return redis.call("hincrby", key, "n:" .. step, 1)
end
