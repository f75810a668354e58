"""Kafka as ragsync uses it: clients from settings, topics, keyed delivery, dead letters, sync requests and the
local broker."""
