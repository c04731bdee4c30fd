"""The API routes document themselves truthfully: security, request bodies and error responses."""

from __future__ import annotations

from typing import Any

from tests.api.support import Api

ERROR_REF = {"$ref": "#/components/schemas/Error"}
API_PATHS = {
    "/api/v1/auth/login": {"post"},
    "/api/v1/auth/logout": {"post"},
    "/api/v1/rooms": {"get", "post"},
    "/api/v1/rooms/{room_id}": {"get"},
    "/api/v1/rooms/{room_id}/invites": {"post"},
    "/api/v1/invites/{invite_id}": {"delete"},
    "/api/v1/invites/exchange": {"post"},  # issue 11: the link's token travels in the body
    "/api/v1/signal-tickets": {"post"},
    "/api/v1/presence": {"get"},
    "/api/v1/attendance": {"get"},
    "/api/v1/turn-credentials": {"get"},
    "/api/v1/break-glass": {"get", "post"},
    "/api/v1/break-glass/{grant_id}/sign-off": {"post"},
    "/api/v1/clients/{client_id}/consents": {"get", "post"},
    "/api/v1/consents/{consent_id}": {"delete"},
    # issue 15: co-hosts
    "/api/v1/rooms/{room_id}/cohosts": {"post"},
    "/api/v1/rooms/{room_id}/cohosts/{user_id}": {"delete"},
    "/api/v1/rooms/{room_id}/chat-transcript": {"get", "post"},
    "/api/v1/account/display-name": {"put"},
    # issue 16: webhook subscriptions
    "/api/v1/webhooks": {"get", "post"},
    "/api/v1/webhooks/{webhook_id}": {"delete"},
    # issue 16: tracks, enrollments (the link's token travels in the body), calendar feeds
    "/api/v1/tracks": {"get", "post"},
    "/api/v1/tracks/{track_id}": {"get", "delete"},
    "/api/v1/tracks/{track_id}/exceptions": {"put"},
    "/api/v1/tracks/{track_id}/occurrences": {"get"},
    "/api/v1/tracks/{track_id}/enrollments": {"get", "post"},
    "/api/v1/enrollments/{enrollment_id}": {"delete"},
    "/api/v1/enrollments/next": {"post"},
    "/api/v1/enrollments/knock": {"post"},
    "/api/v1/calendar-feeds": {"post"},
    "/api/v1/calendar-feeds/{feed_id}": {"delete"},
}
UNAUTHENTICATED = (
    "/api/v1/auth/login",
    "/api/v1/invites/exchange",
    "/api/v1/enrollments/next",
    "/api/v1/enrollments/knock",
)


async def test_every_api_operation_documents_security_bodies_and_errors(api: Api) -> None:
    doc: dict[str, Any] = (await api.http.get("/openapi.json")).json()
    documented = {path: set(ops) for path, ops in doc["paths"].items() if path.startswith("/api/v1/")}
    assert documented == API_PATHS
    operation_ids = set()
    for path, methods in API_PATHS.items():
        for method in methods:
            operation = doc["paths"][path][method]
            operation_ids.add(operation["operationId"])
            unauthenticated = path in UNAUTHENTICATED
            expected_security = [] if unauthenticated else [{"bearer": []}]
            assert operation["security"] == expected_security, (method, path)
            errors = {status: r for status, r in operation["responses"].items() if status >= "400"}
            assert "503" in errors
            if path != "/api/v1/auth/login":
                assert "401" in errors, (method, path)
            for response in errors.values():
                assert response["content"]["application/json"]["schema"] == ERROR_REF
            if method == "post":
                assert "application/json" in operation["requestBody"]["content"], path
                assert {"413", "415"} <= set(errors), path
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    assert "{" + parameter["name"] + "}" in path
    assert len(operation_ids) == sum(len(m) for m in API_PATHS.values())
