"""The app: option objects built from `Settings` (`options`), what every component is built with (`wiring`), each
component wired in a module of its own with its checks beside it (`fetching`, `embedding`, `scheduling`,
`health`), and `App` (`application`), which starts them.

Nothing is imported here: `App` loads every component's module, which a command that only reads an option
object (`ragsync.app.options`) should not pay for.
"""
