"""The consumers of the data path: the fetcher agent and the embedding consumer group, and what they share."""
