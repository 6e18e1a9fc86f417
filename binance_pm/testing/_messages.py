"""What the simulated exchange says: its error texts and the bodies that carry them."""

from __future__ import annotations

import msgspec

HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)
HTML_500 = b"<html><head><title>500 Internal Server Error</title></head></html>"
MSG = {
    -1003: "Too much request weight used; current limit is {limit} request weight per 1 MINUTE. "
    "Please use WebSocket Streams for live updates to avoid polling the API.",
    -1008: "Request throttled by system-level protection. Reduce-only/close-position orders are "
    "exempt. Please try again.",
    -1021: "Timestamp for this request is outside of the recvWindow.",
    -1022: "Signature for this request is not valid.",
    -1102: "Mandatory parameter '{name}' was not sent, was empty/null, or malformed.",
    -1131: "recvWindow must be less than 60000.",
    -2014: "API-key format invalid.",
    -2015: "Invalid API-key, IP, or permissions for action.",
}


class Answer(Exception):
    """Raised inside request handling to answer at once with an exchange error."""

    def __init__(self, status: int, code: int, msg: str, headers: dict[str, str] | None = None):
        super().__init__(msg)
        self.status = status
        self.code = code
        self.msg = msg
        self.headers = headers or {}


def error_body(code: int, msg: str) -> bytes:
    return msgspec.json.encode({"code": code, "msg": msg})


def ban_text(until_ms: float) -> str:
    return (
        f"Way too much request weight used; IP banned until {int(until_ms)}. "
        "Please use WebSocket Streams for live updates to avoid bans."
    )


def server_time_body(now_ms: float) -> bytes:
    return b'{"serverTime":%d}' % int(now_ms)
