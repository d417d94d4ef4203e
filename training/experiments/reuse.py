"""Reports of earlier training runs that may stand in for a new run with the very same configuration.

Training on cpu is deterministic for a given configuration (``tests/training/test_resume.py``), so a
comparison or a tuning search can take an earlier run's report instead of training again.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from arcsearch.training.config import RESULT_NEUTRAL_FIELDS, TrainConfig
from arcsearch.training.run import report_path

logger = logging.getLogger(__name__)

# config fields added after reports were first written -> the value a report without the field was run with
IMPLIED_BY_OLD_REPORTS = {"closed_set_fraction": 0.0}


def reusable_report(earlier_dir: Path, config: TrainConfig, *, with_baselines: bool = False) -> dict[str, Any] | None:
    """The report of the run ``earlier_dir/runs/<config.out_dir's name>`` if it was trained with the same
    configuration (all but ``RESULT_NEUTRAL_FIELDS``; a field an older report lacks counts as its
    ``IMPLIED_BY_OLD_REPORTS`` value) and, when ``with_baselines``, scored the baselines; else None."""
    path = report_path(Path(earlier_dir) / "runs" / Path(config.out_dir).name)
    if not path.exists():
        return None
    report = json.loads(path.read_text(encoding="utf-8"))
    wanted = {key: value for key, value in config.to_dict().items() if key not in RESULT_NEUTRAL_FIELDS}
    earlier = {key: value for key, value in {**IMPLIED_BY_OLD_REPORTS, **report.get("config", {})}.items()
               if key not in RESULT_NEUTRAL_FIELDS}
    if json.loads(json.dumps(wanted)) != earlier or (with_baselines and len(report.get("methods", {})) < 2):
        return None
    logger.info("reusing %s (same configuration)", path)
    return report
