"""Property-based tests of the form parsing, and schemathesis against the OpenAPI schema: no input
the schema admits (or nearly admits) may produce a 500."""

from __future__ import annotations

import codecs
import functools
import math
import operator
import re
import tempfile
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from matplotlib import cbook
from PIL import Image

import migrations
from app.core.errors import Invalid
from app.core.service import MAX_SEED, clean_motion, parse_seed
from app.web.errors import http_error
from app.web.main import create_app
from models.motion import CHANNEL_LIMITS, CHANNELS
from models.motion_curves import CURVES_FPS, MAX_CURVES_BYTES, MAX_SAMPLES, MIN_SAMPLES
from tests.app.api_helpers import finish_job, jpeg, make_settings, post_job

_DIR = Path(tempfile.mkdtemp(prefix="vivify-props-"))
_SETTINGS = make_settings(_DIR, free_animations_per_day=10**6, rate_limit="100000/minute")
migrations.upgrade(_SETTINGS.resolved_database_url)
APP = create_app(_SETTINGS)
CLIENT = TestClient(APP)

# 401: /metrics without the metrics token (it is private).
ALLOWED = {200, 202, 204, 307, 400, 401, 403, 404, 405, 409, 413, 415, 416, 422, 429}


@given(st.one_of(st.none(), st.text(max_size=30)))
def test_parse_seed_accepts_exactly_small_whole_numbers(raw: str | None) -> None:
    text = (raw or "").strip()
    try:
        seed = parse_seed(raw)
    except Invalid as exc:
        assert http_error(exc).status == 422 and exc.code == "invalid_seed"
        assert text and not (text.isascii() and text.isdigit() and len(text) <= 10 and int(text) <= MAX_SEED)
        return
    assert 0 <= seed <= MAX_SEED
    if text:
        assert seed == int(text)


@given(st.one_of(st.none(), st.text(max_size=260)))
def test_clean_motion_answers_text_or_a_422(raw: str | None) -> None:
    try:
        out = clean_motion(raw)
    except Invalid as exc:
        assert http_error(exc).status == 422 and exc.code in ("invalid_motion", "unknown_motion")
        return
    assert 0 < len(out) <= 200 and out == " ".join(out.split())
    if not (raw or "").split():
        assert out == "auto"  # blank is the default motion


form_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    photo=st.one_of(st.none(), st.binary(max_size=3000)),
    fields=st.dictionaries(
        st.sampled_from(["consent", "motion", "seed", "photo", "x"]), form_text, max_size=5
    ),
    filename=form_text,
)
def test_any_upload_form_gets_a_4xx_or_202_never_a_500(
    photo: bytes | None, fields: dict[str, str], filename: str
) -> None:
    files = {"photo": (filename or "f", photo, "application/octet-stream")} if photo is not None else None
    r = CLIENT.post("/api/v1/jobs", data=fields, files=files)
    assert r.status_code in ALLOWED, r.text
    if r.status_code >= 400:
        assert set(r.json()["error"]) == {"code", "message"}


schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.mark.filterwarnings("ignore")
@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_openapi_schema_no_server_errors(case: schemathesis.Case) -> None:
    response = case.call()
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])
    assert response.status_code in ALLOWED | {200}


# The second abuse round, generated: numbers of any length in the recorded curves, Range headers of
# thousands of digits, forms that declare a charset. Each gets its 4xx or its proper answer, never a 500.


@functools.cache
def _photo() -> bytes:
    """The `small_portrait_jpeg` fixture's bytes (tests/conftest.py, tests/app/conftest.py), made once here
    since function-scoped fixtures do not mix with @given."""
    with cbook.get_sample_data("grace_hopper.jpg") as file, Image.open(file) as img:
        portrait = img.convert("RGB")
    portrait.thumbnail((128, 128))
    return jpeg(portrait, quality=90)


def _digits(max_len: int) -> st.SearchStrategy[str]:
    """Digits of any length up to about max_len, cheaply: a random head, then one digit repeated (a long
    run of drawn digits would overrun Hypothesis' buffer). 4,300 is Python's limit on int() digits."""
    run = st.one_of(
        st.integers(0, 40), st.sampled_from([308, 309, 400, 4299, 4300, 4301]), st.integers(1000, max_len)
    )
    return st.builds(
        operator.add,
        st.from_regex(r"[0-9]{1,6}", fullmatch=True),
        st.builds(operator.mul, st.sampled_from("0123456789"), run),
    )


# Whole numbers of up to 6,000 digits, as the attacker sent them (past a float: 309; past int(): 4,301).
whole_numbers = st.builds(
    lambda sign, first, rest, n: sign + first + rest * n,
    st.sampled_from(["", "-"]),
    st.sampled_from("123456789"),
    st.sampled_from("0123456789"),
    st.one_of(
        st.integers(308, 4299),
        st.sampled_from([308, 309, 400, 4299, 4300]),
        st.integers(0, 20),
        st.integers(4300, 5999),
    ),
)
# Number tokens as an attacker writes them into JSON: ordinary ones, ones of thousands of digits (with a
# sign, a fraction, an exponent, or leading zeros: not all of them JSON), and named oddities.
curve_numbers = st.one_of(
    st.from_regex(r"-?(0|[1-9][0-9]{0,5})(\.[0-9]{1,8})?([eE][+-]?[0-9]{1,3})?", fullmatch=True),
    st.builds(
        lambda sign, whole, fraction, exponent: sign + whole + fraction + exponent,
        st.sampled_from(["", "-", "+", "--"]),
        _digits(6000),
        st.one_of(st.just(""), st.just("."), _digits(3000).map(lambda d: "." + d)),
        st.one_of(
            st.just(""),
            st.from_regex(r"[eE][+-]?[0-9]{1,6}", fullmatch=True),
            st.sampled_from(["e400", "E-400", "e308", "e309", "e", "e+"]),
        ),
    ),
    st.sampled_from(["1e400", "-1e400", "1e-400", "NaN", "Infinity", "-Infinity", "1.", ".5", "0x10"]),
    st.sampled_from(["-0", "0e99999", "1_0", "\u0661", "\\ud800", "true", "null", '"0"']),
)
# Long numbers that a channel may well accept (0 <= x < 1 fits every channel; -0.x and 1.x some).
fitting_numbers = st.one_of(
    st.builds(lambda sign, d: sign + "0." + d, st.sampled_from(["", "", "-"]), _digits(6000)),
    st.builds(lambda d, e: "0" + e + d, _digits(6000), st.sampled_from(["e", "E-", ".0e+"])),
    st.builds(lambda d: "1." + d + "e-" + d[:4], _digits(3000)),
)
# fps must be 24; these are 24, written long (24000…0e-N, 24.000…) or just off it.
fps_numbers = st.one_of(
    st.builds(lambda n: "24" + "0" * n + "e-" + str(n), st.integers(0, 6000)),
    st.builds(lambda n, tail: "24." + "0" * n + tail, st.integers(0, 6000), st.sampled_from(["", "0", "1"])),
    st.sampled_from(["24", "2.4e1", "24.0", "0.24E+2", "23.999999999999999999", "24e0", "-24"]),
)
_JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def _fits(token: str, lo: float, hi: float) -> bool:
    """Whether `token` is a JSON number whose value lies in [lo, hi]. float() reads it as json.loads does
    (correctly rounded); an integer past any float is inf here, and out of range there (or past 4,300
    digits, not JSON at all to Python): a refusal either way."""
    if not _JSON_NUMBER.fullmatch(token):
        return False
    value = float(token)
    return math.isfinite(value) and lo <= value <= hi


@st.composite
def hostile_curves(draw: st.DrawFn) -> tuple[str, bool]:
    """A motion_curves document written by hand as an attacker would: a whole number of up to 6,000 digits
    (one time in four, a long number that may well fit) in some channel's sample, then up to two tokens
    (any number, or a long one that may well fit) at random places (fps, any sample of any channel); and
    whether the service must accept it."""
    n = draw(st.integers(MIN_SAMPLES, MAX_SAMPLES))
    names = draw(st.lists(st.sampled_from(CHANNELS), min_size=1, max_size=3, unique=True))
    fps, samples = "24", {name: ["0"] * n for name in names}
    first = whole_numbers if draw(st.integers(0, 3)) else fitting_numbers  # now and then: all may fit
    samples[draw(st.sampled_from(names))][draw(st.integers(0, n - 1))] = draw(first)
    for _ in range(draw(st.integers(0, 2))):
        where = draw(st.sampled_from([*names, "fps"]))
        fitting = fps_numbers if where == "fps" else fitting_numbers
        number = draw(fitting if draw(st.booleans()) else curve_numbers)
        if where == "fps":
            fps = number
        else:
            samples[where][draw(st.integers(0, n - 1))] = number
    channels = ", ".join(f'"{name}": [{", ".join(values)}]' for name, values in samples.items())
    text = '{"fps": ' + fps + ', "channels": {' + channels + "}}"
    accepted = (
        len(text.encode()) <= MAX_CURVES_BYTES
        and _fits(fps, CURVES_FPS, CURVES_FPS)
        and all(_fits(v, *CHANNEL_LIMITS[name]) for name, values in samples.items() for v in values)
    )
    return text, accepted


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(curves=hostile_curves(), page=st.booleans())
def test_numbers_of_any_length_in_motion_curves_are_a_422_or_accepted(
    curves: tuple[str, bool], page: bool
) -> None:
    """Any number anywhere in the curves: 422 invalid_motion_curves, or accepted exactly when it is a
    finite JSON number within its channel's range (fps 24); from the API and from the no-JS page."""
    text, accepted = curves
    r = post_job(CLIENT, _photo(), path="/jobs" if page else "/api/v1/jobs", motion_curves=text)
    if page:  # the page redirects to the job, or shows its error page
        assert [s.status_code for s in r.history] in ([303], []), r.history
        assert r.history or r.status_code == 422, (r.status_code, r.text[:300])
        assert (not r.history) == (not accepted), (r.status_code, r.text[:300], text[:200])
        if not accepted:
            assert "We could not use the recorded motion." in r.text
        return
    assert r.status_code == (202 if accepted else 422), (r.status_code, r.text[:300], text[:200])
    if not accepted:
        assert r.json()["error"]["code"] == "invalid_motion_curves"


VIEWER = TestClient(APP)  # its own cookie jar: the finished job is this visitor's


@functools.cache
def _finished_video() -> tuple[str, bytes]:
    """A finished job of VIEWER's (made on first use, not at import) and its clip's bytes."""
    r = post_job(VIEWER, _photo())
    assert r.status_code == 202, r.text
    return r.json()["id"], finish_job(APP, r.json()["id"])


def _video_cases() -> st.SearchStrategy[schemathesis.Case]:
    """Schemathesis' GET and HEAD cases of the video route (its query, ?download), on the finished job
    and with VIEWER's cookie; the Range header is not in the schema, so it is drawn beside them."""
    job_id, _ = _finished_video()
    route = schema["/api/v1/jobs/{job_id}/video"]
    fixed = {"path_parameters": {"job_id": job_id}, "cookies": dict(VIEWER.cookies)}
    return st.one_of(route["GET"].as_strategy(**fixed), route["HEAD"].as_strategy(**fixed))


_position = st.one_of(st.integers(0, 100_000).map(str), _digits(6000))
_long = st.builds(  # past 18 digits no file is that long; past 4,300 int() refuses them
    operator.mul, st.sampled_from("123456789"), st.one_of(st.integers(4301, 6000), st.integers(19, 4300))
)
_range_spec = st.one_of(
    st.builds("{}-{}".format, _position, _position),  # reversed about half the time
    st.builds("{}-".format, _position),
    st.builds("-{}".format, _position),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=","), max_size=8),
)
range_headers = st.one_of(
    st.builds(
        lambda unit, specs, sep: unit + "=" + sep.join(specs),
        st.sampled_from(["bytes", "BYTES", "bytes ", "items", "bytes ="]),
        st.lists(_range_spec, min_size=1, max_size=4),
        st.sampled_from([",", ", ", ",,", " , "]),
    ),
    # the attacker's own: thousands of digits at the start, the end, or as a suffix length
    st.builds(
        lambda form, d: form.format(d), st.sampled_from(["bytes={}-", "bytes=0-{}", "bytes=-{}"]), _long
    ),
    st.integers(90, 130).map(lambda n: "bytes=" + ",".join(["0-0"] * n)),  # past MAX_RANGES or not
    # garbage (a header value cannot start with a space: requests refuses to send it)
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(str.lstrip),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.deferred(_video_cases), range_header=range_headers)
def test_any_range_header_on_the_video_is_a_200_206_or_416(
    case: schemathesis.Case, range_header: str
) -> None:
    """Any Range (thousands of digits, reversed, many, garbage) on GET or HEAD of a finished clip: 200
    (whole), 206 (the bytes its Content-Range names) or a JSON 416 with `bytes */<size>`; never a 500."""
    _, mp4 = _finished_video()
    size, head = len(mp4), case.method == "HEAD"
    r = case.call(headers={"Range": range_header})
    headers = {name: values[0] for name, values in r.headers.items()}  # lowercase names, value lists
    assert r.status_code in (200, 206, 416), (case.method, range_header[:200], r.status_code, r.text[:300])
    if head:
        assert r.content == b""
    if r.status_code == 416:
        assert headers["content-range"] == f"bytes */{size}"
        if not head:
            assert r.json()["error"]["code"] == "range_not_satisfiable"
    elif r.status_code == 200:
        assert "content-range" not in headers and (head or r.content == mp4)
    elif headers["content-type"].startswith("multipart/byteranges"):
        assert head or r.content.count(b"Content-Range: bytes ") >= 2
    else:
        served = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", headers["content-range"])
        assert served is not None, headers["content-range"]
        first, last, total = map(int, served.groups())
        assert total == size and 0 <= first <= last < size
        assert head or r.content == mp4[first : last + 1]


def _names_utf8(charset: str) -> bool:
    """Whether a declared charset (optionally quoted) is one of Python's names of UTF-8."""
    try:
        return codecs.lookup(charset.strip().strip('"')).name == "utf-8"
    except LookupError:
        return False


# Text that some codecs turn into lone surrogates (unicode_escape: \ud800; utf-7: +2AA-), among any text.
_escapes = ["\\ud800", "\\udfff", "\\U0010ffff", "\\x00", "\\N{", "\\", "+2AA-", "+2D3cAA-", "+-"]
_hostile_text = st.lists(
    st.one_of(
        st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20),
        st.sampled_from(_escapes),
    ),
    max_size=5,
).map("".join)
_field_values = st.one_of(
    _hostile_text.map(str.encode),
    st.sampled_from([b"true", b"nod", b"42"]),
    st.sampled_from([b"\xed\xa0\x80", b"\xff\xfe", b"\xc0\xaf", b"\x80"]),  # not UTF-8 (a surrogate, ...)
)
_field_names = st.one_of(
    st.sampled_from(["consent", "motion", "motion_text", "motion_curves", "seed", "webhook", "animator"]),
    _hostile_text.map(lambda s: s.translate(dict.fromkeys(map(ord, '"\r\n'))) or "x"),  # any other name
)
_UTF8_NAMES = st.sampled_from(["utf-8", "UTF8", "utf_8", '"utf-8"', "U8", "utf", "UTF-8 "])
charsets = st.one_of(  # UTF-8 named about as often as anything else
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters=";"), max_size=20),
    _UTF8_NAMES,
    st.sampled_from(["unicode_escape", "raw_unicode_escape", "utf-7", "latin-1", "utf-16", "utf-8-sig"]),
    _UTF8_NAMES,
    st.sampled_from(["rot13", "base64", "zlib", "punycode", "", "x"]),  # no text codecs, or none at all
)


_BOUNDARY = b"----vivify-props"


def _multipart(fields: list[tuple[bytes, bytes]], photo: bool) -> bytes:
    """A multipart/form-data body built by hand: the fields' bytes as given, then the photo if asked."""
    parts = [
        b'Content-Disposition: form-data; name="' + name + b'"\r\n\r\n' + value for name, value in fields
    ]
    if photo:
        head = b'Content-Disposition: form-data; name="photo"; filename="me.jpg"\r\nContent-Type: image/jpeg'
        parts.append(head + b"\r\n\r\n" + _photo())
    return b"".join(b"--%s\r\n%s\r\n" % (_BOUNDARY, part) for part in parts) + b"--%s--\r\n" % _BOUNDARY


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    charset=charsets,
    param=st.sampled_from(["charset", "Charset", "CHARSET"]),
    first=st.booleans(),
    fields=st.lists(st.tuples(_field_names, _field_values), max_size=5),
    photo=st.booleans(),
    page=st.booleans(),
)
def test_a_form_declaring_any_charset_is_a_415_unless_utf8_never_a_500(
    charset: str, param: str, first: bool, fields: list[tuple[str, bytes]], photo: bool, page: bool
) -> None:
    """A multipart form declaring any charset, its fields any text (surrogate escapes too): 415 unless
    the charset names UTF-8; otherwise 202/303 or a 4xx, never a 500 (API and no-JS page)."""
    body = _multipart([(b"consent", b"true")] + [(name.encode(), value) for name, value in fields], photo)
    declared = [f"boundary={_BOUNDARY.decode()}", f"{param}={charset}"]
    content_type = "multipart/form-data; " + "; ".join(declared[::-1] if first else declared)
    r = CLIENT.post(
        "/jobs" if page else "/api/v1/jobs",
        content=body,
        headers={"Content-Type": content_type},
        follow_redirects=False,
    )
    shown = (content_type, r.status_code, r.text[:300])
    refusals = {code for code in ALLOWED if code >= 400} - {415}
    if not _names_utf8(charset):
        assert r.status_code == 415, shown
    else:
        assert r.status_code in refusals | ({303} if page else {202}), shown
    if not page:
        answer = r.json()  # the API answers JSON, refusals in the error shape
        if r.status_code >= 400:
            assert set(answer["error"]) == {"code", "message"}
