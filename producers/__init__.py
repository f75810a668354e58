"""What publishes on a clock: the scheduler (cron, start-up) and run retention (tombstones for expired runs)."""
