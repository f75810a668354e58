"""The Coordinator wire contract (`coordinator.proto`) and its generated Python stubs.

Regenerate the stubs with `make proto`; a test fails when they drift from the `.proto`.
"""
