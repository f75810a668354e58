"""The built-in demo Coordinator: a real gRPC server with deterministic synthetic records."""
