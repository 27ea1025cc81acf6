from __future__ import annotations

import pytest

from oscar_langchain.demo.__main__ import main
from tests._support.backends import require_local_extra


@pytest.mark.local_model
def test_demo_main_with_local_model(capsys: pytest.CaptureFixture[str]) -> None:
    require_local_extra()
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "A: " in out and "usage:" in out and "demo finished" in out
