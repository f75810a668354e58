"""The local broker's output goes to a file, never to a pipe nobody reads: a broker that writes a lot still
starts and keeps running. A stand-in broker binary (a script) writes 2 MB before it listens."""

from __future__ import annotations

import sys
from pathlib import Path

from ragsync.messaging.local_broker import LocalBroker

NOISY = """#!{python}
import socket, sys, time
url = sys.argv[sys.argv.index("--listener-url") + 1]
port = int(url.rsplit(":", 1)[1])
for _ in range(2048):
    sys.stderr.write("x" * 1023 + "\\n")
sys.stderr.flush()
server = socket.create_server(("127.0.0.1", port))
time.sleep(60)
"""


def test_a_broker_that_writes_more_than_a_megabyte_starts_and_its_output_is_kept(tmp_path: Path) -> None:
    binary = tmp_path / "noisy-broker"
    binary.write_text(NOISY.format(python=sys.executable))
    binary.chmod(0o755)
    log = tmp_path / "data" / "broker.log"
    broker = LocalBroker(log=log, binary=binary)
    broker.start(ready_timeout=20)  # with its output on a pipe it stopped at 64 KB and never listened
    try:
        assert broker.is_running()
        assert log.stat().st_size >= 2048 * 1024 and broker.output(100).endswith("x" * 99 + "\n")
    finally:
        broker.stop()


def test_a_broker_that_exits_at_start_says_what_it_wrote(tmp_path: Path) -> None:
    binary = tmp_path / "failing-broker"
    binary.write_text(f"#!{sys.executable}\nimport sys\nsys.stderr.write('cannot bind: address in use')\nsys.exit(3)\n")
    binary.chmod(0o755)
    broker = LocalBroker(binary=binary)
    try:
        broker.start(ready_timeout=10)
    except RuntimeError as error:
        assert str(error) == "the local broker exited with code 3: cannot bind: address in use"
    else:
        raise AssertionError("a broker that exits must not look started")
    finally:
        broker.stop()
