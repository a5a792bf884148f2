"""gradcheck: adcli's derivatives against numeric ones (see check/run.py)."""
from .numeric import estimate
from .render import to_json, to_plain, to_rich
from .rows import Report, Row
from .run import check

__all__ = ["check", "estimate", "Report", "Row", "to_json", "to_plain", "to_rich"]
