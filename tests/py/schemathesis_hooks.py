"""Schemathesis hooks for the OpenAPI run (loaded through SCHEMATHESIS_HOOKS).

One rule of the API is not expressible in JSON Schema: when an event gives both an `id`
and an `Idempotency-Key` header they must be equal (a `422` otherwise). Positive cases
that give both are made to agree; nothing else is changed.
"""

import schemathesis
from schemathesis.generation.modes import GenerationMode


@schemathesis.hook
def before_call(ctx, case, kwargs):  # noqa: ARG001 (the hook's signature)
    meta = getattr(case, "meta", None)
    if meta is None or meta.generation.mode != GenerationMode.POSITIVE:
        return
    headers = case.headers or {}
    name = next((k for k in headers if k.lower() == "idempotency-key"), None)
    if name and isinstance(case.body, dict) and case.body.get("id") is not None:
        case.body["id"] = headers[name].strip(" \t")
