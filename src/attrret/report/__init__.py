"""The HTML retrieval report: one self-contained page per submission (``attrret report``).

Public API: :func:`build_report` and its :class:`ReportSummary`. Heavy work (parsing every
caption, decoding every returned image) happens inside ``build_report``; importing this
package is cheap.
"""

from attrret.report.build import ReportSummary, build_report

__all__ = ["ReportSummary", "build_report"]
