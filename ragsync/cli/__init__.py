"""The command line: the commands, what a person sees, and the one-shot runner behind `demo` and `sync`."""
