"""What only publishes: the scheduler (cron, start-up) and the manual trigger."""
