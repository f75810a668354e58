"""What consumes: the fetcher agent, the embedding consumer group and the stages that follow run state (the
pruner, the completion check, the model migration, the stall watchdog)."""
