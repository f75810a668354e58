"""The app: option objects built from `Settings` (`options`), each component wired in a module of its own with
its checks beside it (`fetching`, `embedding`, `scheduling`, `health`), and `App` (`application`), which starts
them against one broker.

Nothing is imported here: `App` loads every component's module, which a command that only reads an option
object (`ragsync.app.options`) should not pay for.
"""
