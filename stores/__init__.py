"""State behind small protocols: cache, rate-limit counters and request logs.

Each kind of state has one protocol and two implementations, chosen at
start-up: an embedded one (memory or SQLite) and a Redis one, used when
`[server] redis_url` is set. `ratelimit` holds the rate-limit counters;
`redis` the one shared client.
"""
