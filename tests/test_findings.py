from mlcourse.findings import report_findings

import pytest


def test_reports_without_raising(capsys):
    out = report_findings({"a beats b": 0.8 > 0.7, "c beats d": 0.1 > 0.2})
    assert out == {"a beats b": True, "c beats d": False}
    text = capsys.readouterr().out
    assert "[seen] a beats b" in text and "[not seen] c beats d" in text


def test_rejects_empty():
    with pytest.raises(ValueError, match="non-empty"):
        report_findings({})
