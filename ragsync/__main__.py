"""`python -m ragsync` is the `ragsync` command."""

from ragsync.cli.commands import app

app(prog_name="ragsync")
