"""What operators see and what keeps components alive: the ops endpoints, metrics, logs, supervision, processes."""
