"""schemathesis against the live server's own ``/openapi.json``, with real credentials.

Two complementary runs, both against a real uvicorn socket:

- a generated-request loop (schemathesis' Python API): every operation fuzzed with schema-valid and
  schema-violating requests, once with a clinician's access token and once with a client's invite token.
  Half of the generated path parameters are swapped for ids that exist (the clinician's room, a spare
  invite) so requests reach the handlers' deeper checks instead of stopping at 404; each logout gets a
  fresh token (it revokes the one it presents);
- the schemathesis CLI (examples, coverage and fuzzing phases), once per credential, with the conformance
  checks plus ``negative_data_rejection``, ``ignored_auth``, ``missing_required_header`` and
  ``unsupported_method``.

Every response is checked: no status >= 500, the status is one the document lists, the body matches the
documented schema, content type and headers conform; and the server logged no fault meanwhile. Each run
first proves on a doctored document that its checks do fail when the document and the server disagree.

schemathesis is synchronous while the server runs on this test's event loop: the loop runs in a worker
thread (asking the event loop for fresh tokens when needed), the CLI in a subprocess.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.support import Api
from tests.hostile.support import captured_server_logs
from vIOP.auth.permissions import Role

EXAMPLES_PER_OPERATION = 25
CLI_EXAMPLES = "25"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
CLI_CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "missing_required_header",
        "unsupported_method",
        "ignored_auth",
    ]
)


@dataclass
class Tally:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: dict[tuple[str, str, str], str] = field(default_factory=dict)


@dataclass(frozen=True)
class Identity:
    name: str
    bearer: Callable[[str], str]  # operation id -> the credential to present


@dataclass(frozen=True)
class Target:
    base_url: str
    session: requests.Session
    real_ids: dict[str, str]
    rng: random.Random


def doctored(doc: dict[str, Any]) -> dict[str, Any]:
    """The same document, except that ``/healthz`` promises a field the server never sends."""
    wrong = copy.deepcopy(doc)
    schema = wrong["paths"]["/healthz"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    if "$ref" in schema:  # the body's Struct, in the components (vIOP/api/openapi.py)
        schema = wrong["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    schema["required"] = [*schema["required"], "never_sent"]
    return wrong


def fuzz_operations(schema: Any, target: Target, identities: list[Identity], tally: Tally) -> None:
    for result in schema.get_all_operations():
        operation = result.ok()
        anonymous = operation.definition.raw.get("security") == []
        for identity in identities[:1] if anonymous else identities:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                fuzz_one(operation, mode, identity, target, tally)


def fuzz_one(operation: Any, mode: GenerationMode, identity: Identity, target: Target, tally: Tally) -> None:
    op_id = operation.definition.raw.get("operationId", operation.label)
    anonymous = operation.definition.raw.get("security") == []

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        for name in case.path_parameters or {}:
            if name in target.real_ids and target.rng.random() < 0.5:
                case.path_parameters[name] = target.real_ids[name]
        headers = {} if anonymous else {"Authorization": f"Bearer {identity.bearer(op_id)}"}
        response = case.call(base_url=target.base_url, session=target.session, headers=headers, timeout=30)
        tally.requests += 1
        tally.statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (Exception, FailureGroup) as exc:
            key = (op_id, identity.name, f"{mode.value} {response.status_code}")
            tally.failures.setdefault(key, f"{exc}"[:3000])

    try:
        run()
    except Unsatisfiable:
        # Nothing to violate (no parameters, no body): only the positive mode applies.
        assert mode is GenerationMode.NEGATIVE, op_id


def new_target(base_url: str, real_ids: dict[str, str]) -> Target:
    session = requests.Session()
    session.trust_env = False  # loopback only: never an environment proxy
    return Target(base_url, session, real_ids, random.Random(8))


async def test_generated_requests_get_no_server_error_and_match_the_document(api: Api) -> None:
    clinician = await api.user(Role.CLINICIAN)
    room = await api.create_room(clinician)
    invite = await api.create_invite(clinician, room["id"], display_name="Sam")
    spare = await api.create_invite(clinician, room["id"], display_name="Kim")
    doc = (await api.http.get("/openapi.json")).json()
    loop = asyncio.get_running_loop()

    def clinician_bearer(op_id: str) -> str:
        if op_id != "logout":
            return clinician.token
        # A logout revokes the token it presents: each gets its own.
        issued = asyncio.run_coroutine_threadsafe(
            api.services.tokens.issue(clinician.account.id, Role.CLINICIAN), loop
        )
        return issued.result(30).token

    identities = [
        Identity("clinician", clinician_bearer),
        Identity("invite", lambda _op: invite["invite_token"]),
    ]
    target = new_target(api.live.base_url, {"room_id": room["id"], "invite_id": spare["id"]})

    # The checks bite: against a document that promises a field the server never sends, they fail.
    control = Tally()
    wrong = schemathesis.openapi.from_dict(doctored(doc)).include(operation_id="healthz")
    await asyncio.to_thread(fuzz_operations, wrong, target, identities, control)
    assert control.requests >= 1
    assert control.failures
    assert {(op, outcome) for op, _who, outcome in control.failures} == {("healthz", "positive 200")}

    tally = Tally()
    started = time.monotonic()
    with captured_server_logs() as logs:
        schema = schemathesis.openapi.from_dict(doc)
        await asyncio.to_thread(fuzz_operations, schema, target, identities, tally)
    elapsed = time.monotonic() - started
    print(f"schemathesis loop: {tally.requests} requests in {elapsed:.1f} s, statuses {dict(tally.statuses)}")
    assert tally.failures == {}, "\n\n".join(f"{k}: {v}" for k, v in tally.failures.items())
    assert not any(status >= 500 for status in tally.statuses)
    assert logs.faults() == []
    # The fuzzing reached the handlers, not only the door: successes and refusals of several kinds.
    assert tally.statuses[200] + tally.statuses[201] + tally.statuses[204] >= 50, tally.statuses
    assert {400, 401, 403, 404} <= set(tally.statuses), tally.statuses
    assert tally.requests >= 700


async def run_schemathesis_cli(location: str, credential: str, workdir: Path, *extra: str) -> tuple[int, str]:
    """The schemathesis CLI (examples, coverage and fuzzing phases) against the live server."""
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        location,
        "--checks",
        CLI_CHECKS,
        "--header",
        f"Authorization: Bearer {credential}",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        CLI_EXAMPLES,
        "--workers",
        "1",
        "--generation-deterministic",
        "--suppress-health-check",
        "all",
        "--request-timeout",
        "30",
        "--no-color",
        "--warnings",
        "off",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "NO_PROXY": "*"},
        cwd=workdir,  # its example database goes there, not into the repository
    )
    output, _ = await asyncio.wait_for(process.communicate(), 600)
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


def generated(output: str) -> int:
    found = re.search(r"(\d+) generated", output)
    assert found, output[-5_000:]
    return int(found.group(1))


async def test_schemathesis_cli_with_each_credential(api: Api, tmp_path: Path) -> None:
    clinician = await api.user(Role.CLINICIAN)
    room = await api.create_room(clinician)
    invite = await api.create_invite(clinician, room["id"], display_name="Sam")
    base = api.live.base_url

    # The CLI's checks bite too: a doctored copy of the document makes it fail.
    wrong = tmp_path / "wrong-openapi.json"
    wrong.write_text(json.dumps(doctored((await api.http.get("/openapi.json")).json())))
    code, out = await run_schemathesis_cli(
        str(wrong), clinician.token, tmp_path, "--url", base, "--include-operation-id", "healthz"
    )
    assert code != 0 and "never_sent" in out, out[-5_000:]

    cases = 0
    started = time.monotonic()
    with captured_server_logs() as logs:
        # The clinician's run leaves logout out (it would revoke the token the run uses; the loop above
        # fuzzes logout with a fresh token each time).
        code, out = await run_schemathesis_cli(
            f"{base}/openapi.json", clinician.token, tmp_path, "--exclude-operation-id", "logout"
        )
        assert code == 0, out[-20_000:]
        cases += generated(out)
        code, out = await run_schemathesis_cli(f"{base}/openapi.json", invite["invite_token"], tmp_path)
        assert code == 0, out[-20_000:]
        cases += generated(out)
    print(f"schemathesis CLI: {cases} generated cases in {time.monotonic() - started:.1f} s")
    assert logs.faults() == []
    assert cases >= 500
