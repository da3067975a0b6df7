"""One grading job in its own process: ``python -m mlcourse.grading.worker SPEC.json OUT.json``.

The batch grader (:mod:`mlcourse.grading.batch`) runs every submission in a process of its
own, so that nothing a submission does to the grading process can stop the batch.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .autograde import grade
from .execute import Limits


def main(spec_path: str, out_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    result = grade(spec["notebook"], Path(spec["course"]), assignment=spec.get("assignment"),
                   solutions=Path(spec["solutions"]),
                   feedback_dir=Path(spec["feedback_dir"]), limits=Limits(**spec["limits"]),
                   student=spec["student"], feedback_name=spec["feedback_name"])
    tmp = Path(out_path + ".tmp")
    tmp.write_text(result.to_json())
    tmp.replace(out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
