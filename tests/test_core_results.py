"""The stored first answer of a request decodes to the same answer (replays are exact)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from switch.core.model import AuthResult, ResponseCode
from switch.core.results import decode_result, encode_result

opt_int = st.none() | st.integers(-(10**15), 10**15)
opt_text = st.none() | st.text(alphabet="0123456789ABCDEF", min_size=1, max_size=12)


@given(
    code=st.sampled_from(list(ResponseCode)),
    message=st.text(max_size=60).filter(lambda m: "\t" not in m),
    auth=opt_text,
    txn=opt_text,
    avail=opt_int,
    ledger=opt_int,
    cur=st.none() | st.integers(0, 999),
    appr=opt_int,
    script=st.none() | st.binary(max_size=40),
)
def test_roundtrip(
    code: ResponseCode,
    message: str,
    auth: str | None,
    txn: str | None,
    avail: int | None,
    ledger: int | None,
    cur: int | None,
    appr: int | None,
    script: bytes | None,
) -> None:
    r = AuthResult(code, message, auth, txn, avail, ledger, cur, appr, script)
    back = decode_result(encode_result(r))
    assert back.replayed
    assert back == AuthResult(code, message, auth, txn, avail, ledger, cur, appr, script, True)


def test_tabs_in_messages_do_not_break_the_record() -> None:
    r = AuthResult(ResponseCode.DO_NOT_HONOUR, "a\tb")
    assert decode_result(encode_result(r)).message == "a b"
