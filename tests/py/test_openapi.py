"""The OpenAPI document served at /api/v1/openapi.json: valid OpenAPI 3.1 (checked by
openapi-spec-validator), and true of the running server (checked by schemathesis, with
every check on, seeded and bounded: answers that violate the document, schema-valid
bodies refused, schema-violating bodies accepted, and any 5xx all fail the run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from helpers import API_TOKEN, start_server

HERE = Path(__file__).resolve().parent
# Bounded: a few hundred cases per operation at most; the seed makes a failure replayable.
SEED = os.environ.get("SCHEMATHESIS_SEED", "20261201")
MAX_EXAMPLES = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "60")


def fetch_document(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/api/v1/openapi.json", timeout=10) as res:
        assert res.status == 200
        assert res.headers["content-type"].startswith("application/json")
        return json.load(res)


def test_the_served_document_is_valid_openapi_3_1():
    srv = start_server()
    try:
        doc = fetch_document(srv.url)
        validate(doc)
        assert doc["openapi"] == "3.1.0"
        assert set(doc["components"]["securitySchemes"]) == {"bearer"}
    finally:
        srv.stop()
        srv.cleanup()


@pytest.mark.timeout(900)
def test_schemathesis_finds_nothing_against_the_running_server():
    # The per-token and per-address limits would turn fuzzing into 429s: off for this run.
    srv = start_server({"API_RATE_LIMIT": "0", "HANDSHAKES_PER_IP_PER_SEC": "0"})
    try:
        env = {**os.environ, "PYTHONPATH": str(HERE), "SCHEMATHESIS_HOOKS": "schemathesis_hooks"}
        cmd = [
            str(Path(sys.executable).with_name("st")), "run", f"{srv.url}/api/v1/openapi.json",
            "--header", f"Authorization: Bearer {API_TOKEN}",
            "--checks", "all", "--seed", SEED, "--max-examples", MAX_EXAMPLES,
            "--no-color",
        ]
        run = subprocess.run(cmd, cwd=HERE, env=env, capture_output=True, text=True, timeout=600)
        summary = run.stdout[-3000:]
        print(summary)
        assert run.returncode == 0, f"schemathesis found problems:\n{run.stdout[-20000:]}\n{run.stderr[-2000:]}"
        assert "No issues found" in run.stdout, summary
    finally:
        srv.stop()
        srv.cleanup()
