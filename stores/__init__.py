"""State behind small protocols: cache, rate-limit counters and request logs.

Empty for now: the Universal Endpoint keeps no state between requests. The
embedded (memory/SQLite) and Redis stores arrive with caching, rate limiting
and logging.
"""
