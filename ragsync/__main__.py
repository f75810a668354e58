"""`python -m ragsync` is the `ragsync` command."""

from ragsync.cli import app

app(prog_name="ragsync")
