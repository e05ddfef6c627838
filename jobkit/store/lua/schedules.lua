-- schedules: bookkeeping of the scheduler's fires.
--
-- ARGV = command, entry id, ...command arguments
--
-- Keys touched (see jobkit/store/keys.py): K.schedules_last.

local command, entry = ARGV[1], ARGV[2]

if command == "fired" then
    -- args: nominal ms. The latest nominal fire time only moves forward (schedulers may report out of order).
    local current = redis.call("hget", K.schedules_last, entry)
    if not current or tonumber(current) < tonumber(ARGV[3]) then
        redis.call("hset", K.schedules_last, entry, ARGV[3])
    end
    return 1
end
