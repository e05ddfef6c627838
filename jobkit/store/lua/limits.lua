-- limits: rate limits and concurrency caps shared by every worker. Times come from the Redis server's clock, so
-- workers on hosts whose clocks differ still share one window.
--
-- ARGV = command, task, ...command arguments
--
-- Keys touched (see jobkit/store/keys.py): K.rate(task), K.running(task).

local command, task = ARGV[1], ARGV[2]
local t = redis.call("time")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

if command == "rate" then
    -- args: limit, window ms, member. Returns 0 (go) or the ms until a start frees up.
    local key, limit, window = K.rate(task), tonumber(ARGV[3]), tonumber(ARGV[4])
    redis.call("zremrangebyscore", key, "-inf", now - window)
    if redis.call("zcard", key) < limit then
        redis.call("zadd", key, now, ARGV[5])
        redis.call("pexpire", key, window)
        return 0
    end
    local oldest = redis.call("zrange", key, 0, 0, "WITHSCORES")
    return math.max(1, tonumber(oldest[2]) + window - now + 1)

elseif command == "slot" then
    -- args: limit, ttl ms, holder. Returns 1 when the holder has (or now takes) one of the limit's slots.
    local key, limit, ttl = K.running(task), tonumber(ARGV[3]), tonumber(ARGV[4])
    redis.call("zremrangebyscore", key, "-inf", now)
    if redis.call("zscore", key, ARGV[5]) or redis.call("zcard", key) < limit then
        redis.call("zadd", key, now + ttl, ARGV[5])
        redis.call("pexpire", key, ttl)
        return 1
    end
    return 0

elseif command == "release" then
    -- args: holder. Gives a concurrency slot back.
    return redis.call("zrem", K.running(task), ARGV[3])

elseif command == "usage" then
    -- args: window ms. Returns {running now, starts in the last window}.
    redis.call("zremrangebyscore", K.running(task), "-inf", now)
    return {redis.call("zcard", K.running(task)), redis.call("zcount", K.rate(task), now - tonumber(ARGV[3]), "+inf")}
end
