"""The OpenAPI document at /api/openapi.json, checked against the live API by
schemathesis: no generated request gets a 5xx or a response outside the schema."""

import subprocess
import sys
from pathlib import Path

from support import ADMIN_KEY

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def test_every_generated_request_gets_a_documented_answer_and_never_a_5xx(server, tmp_path):
    # The CLI rather than schemathesis' pytest plugin, which does not load under pytest 9.
    run = subprocess.run(
        [SCHEMATHESIS, "run", server.url + "/api/openapi.json",
         "--header", f"Authorization: Bearer {ADMIN_KEY}",
         "--checks", "not_a_server_error,response_schema_conformance",
         "--max-examples", "15", "--no-color"],
        cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "passed" in run.stdout
