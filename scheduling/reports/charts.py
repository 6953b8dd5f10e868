"""Server-side SVG charts: no JavaScript, no CDN, readable printed (patterns and labels, not colour alone).
Every bar is a link to the rows behind it."""

import datetime as dt

from django.utils.html import escape
from django.utils.safestring import mark_safe

# Fill and pattern per cause, so black-and-white prints still tell the causes apart.
CAUSE_STYLES = {
    "dna": ("#d5281b", None, "Did not attend (3, 7)"),
    "late_cancellation": ("#ffb81c", "hatch", "Late patient cancellation"),
    "service_cancellation": ("#005eb8", "dots", "Late service cancellation"),
    "failed_calls": ("#505a5f", "cross", "Failed calls"),
}

_PATTERNS = """<defs>
<pattern id="pp-hatch" width="6" height="6" patternUnits="userSpaceOnUse"><rect width="6" height="6" fill="#ffb81c"/><path d="M0 6L6 0" stroke="#0b0c0c" stroke-width="1"/></pattern>
<pattern id="pp-dots" width="6" height="6" patternUnits="userSpaceOnUse"><rect width="6" height="6" fill="#005eb8"/><circle cx="3" cy="3" r="1.2" fill="#ffffff"/></pattern>
<pattern id="pp-cross" width="6" height="6" patternUnits="userSpaceOnUse"><rect width="6" height="6" fill="#aeb7bb"/><path d="M0 0L6 6M6 0L0 6" stroke="#0b0c0c" stroke-width="0.8"/></pattern>
</defs>"""


def uk_day(iso_date: str, *, year: bool = False) -> str:
    """'2026-09-07' as UK readers write it: '7 Sep' (or '7 Sep 2026'), never the ambiguous '09-07'."""
    day = dt.date.fromisoformat(iso_date)
    return f"{day.day} {day:%b}" + (f" {day.year}" if year else "")


def _fill(cause: str) -> str:
    colour, pattern, _ = CAUSE_STYLES[cause]
    return f"url(#pp-{pattern})" if pattern else colour


def _nice_max(value: float) -> int:
    if value <= 0:
        return 1
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        top = step * magnitude
        if top >= value:
            return int(top) if top >= 1 else 1
    return int(value)


def _axis(ticks_top: int, *, left: int, top: int, width: int, height: int, unit: str) -> list[str]:
    parts = []
    for i in range(5):
        value = ticks_top * i / 4
        y = top + height - height * i / 4
        parts.append(f'<line x1="{left}" x2="{left + width}" y1="{y:.1f}" y2="{y:.1f}" stroke="#b1b4b6" stroke-width="1"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{value:g}{unit}</text>')
    return parts


def weekly_lost_chart(weeks: list[dict], link_for) -> str:
    """Stacked bars of lost minutes per week, one segment per cause. link_for(week, cause) -> URL."""
    left, top, plot_w, plot_h = 56, 24, 640, 200
    width, height = left + plot_w + 10, top + plot_h + 60
    n = max(len(weeks), 1)
    slot = plot_w / n
    bar_w = max(min(slot * 0.7, 40), 2)
    top_value = _nice_max(max((w["total"] for w in weeks), default=0))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" class="chart" '
        f'aria-labelledby="weekly-title"><title id="weekly-title">Lost minutes by cause per week</title>',
        _PATTERNS,
        *_axis(top_value, left=left, top=top, width=plot_w, height=plot_h, unit=""),
    ]
    label_every = max(1, n // 12)
    for i, week in enumerate(weeks):
        x = left + i * slot + (slot - bar_w) / 2
        y = top + plot_h
        for cause in CAUSE_STYLES:
            minutes = week[cause]
            if not minutes:
                continue
            h = plot_h * minutes / top_value
            y -= h
            label = f"Week of {uk_day(week['week_starting'], year=True)}: {CAUSE_STYLES[cause][2]}, {minutes} minutes"
            parts.append(
                f'<a href="{escape(link_for(week, cause))}"><rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" fill="{_fill(cause)}" stroke="#0b0c0c" stroke-width="0.5"><title>{escape(label)}</title></rect></a>'
            )
        if i % label_every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h + 14}" text-anchor="middle" font-size="10">'
                f'{escape(uk_day(week["week_starting"]))}</text>'
            )
    # Legend
    lx = left
    for cause, (_, _, label) in CAUSE_STYLES.items():
        parts.append(f'<rect x="{lx}" y="{height - 22}" width="12" height="12" fill="{_fill(cause)}" stroke="#0b0c0c" stroke-width="0.5"/>')
        parts.append(f'<text x="{lx + 16}" y="{height - 12}" font-size="11">{escape(label)}</text>')
        lx += 30 + len(label) * 6
    parts.append('<text x="4" y="11" font-size="11">minutes</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))


def bar_chart(bars: list[tuple[str, int, str]], *, title: str, unit: str = "") -> str:
    """Vertical bars: (label, value, url)."""
    left, top, plot_w, plot_h = 44, 12, 360, 160
    width, height = left + plot_w + 10, top + plot_h + 30
    n = max(len(bars), 1)
    slot = plot_w / n
    bar_w = slot * 0.6
    top_value = _nice_max(max((v for _, v, _ in bars), default=0))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" class="chart chart-small">'
        f"<title>{escape(title)}</title>",
        *_axis(top_value, left=left, top=top, width=plot_w, height=plot_h, unit=unit),
    ]
    for i, (label, value, url) in enumerate(bars):
        x = left + i * slot + (slot - bar_w) / 2
        h = plot_h * value / top_value
        y = top + plot_h - h
        parts.append(
            f'<a href="{escape(url)}"><rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{max(h, 0.5):.1f}" '
            f'fill="#005eb8" stroke="#0b0c0c" stroke-width="0.5"><title>{escape(label)}: {value}</title></rect>'
            f'<text x="{x + bar_w / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle" font-size="11">{value}</text></a>'
        )
        parts.append(
            f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h + 16}" text-anchor="middle" font-size="12">{escape(label)}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))


def waits_chart(waits: list[tuple[str, float | None, str]], *, standards=((42, "6 weeks"), (126, "18 weeks"))) -> str:
    """Horizontal bars of median waits in days, with vertical lines at the 6- and 18-week standards."""
    left, top, plot_w, row_h = 190, 20, 440, 34
    height = top + row_h * len(waits) + 28
    width = left + plot_w + 20
    top_value = _nice_max(max([v or 0 for _, v, _ in waits] + [standards[-1][0] * 1.1]))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" class="chart">'
        "<title>Median waits in days against the 6- and 18-week standards</title>"
    ]
    for i, (label, value, url) in enumerate(waits):
        y = top + i * row_h
        parts.append(f'<text x="{left - 8}" y="{y + 18}" text-anchor="end" font-size="12">{escape(label)}</text>')
        if value is None:
            parts.append(f'<text x="{left + 4}" y="{y + 18}" font-size="12">no data in this period</text>')
            continue
        w = plot_w * value / top_value
        parts.append(
            f'<a href="{escape(url)}"><rect x="{left}" y="{y + 4}" width="{max(w, 0.5):.1f}" height="{row_h - 12}" '
            f'fill="#007f3b" stroke="#0b0c0c" stroke-width="0.5"><title>{escape(label)}: median {value:g} days</title></rect>'
            f'<text x="{left + w + 4:.1f}" y="{y + 18}" font-size="12">{value:g} days</text></a>'
        )
    bottom = top + row_h * len(waits)
    for days, label in standards:
        x = left + plot_w * days / top_value
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 6}" y2="{bottom}" stroke="#0b0c0c" stroke-width="1.5" stroke-dasharray="5 3"/>'
        )
        parts.append(f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle" font-size="11">{escape(label)} ({days} d)</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))
