"""The report as one self-contained HTML page: inline styles, inline SVG, no script.

Nothing in the page refers to anything outside it (no script, stylesheet, font or image
to fetch), so it opens offline, from a file, anywhere. Light and dark colour schemes
follow the reader's system (``prefers-color-scheme``). The header's numbers carry their
value in ``data-value`` and the timeline's bars their attempt count in ``data-count``,
so that tests (and scripts) can read them from the page as a browser shows it.
"""

from __future__ import annotations

from collections import Counter
from html import escape

from mapwise.domain.usage import compact
from mapwise.report import layout, svg
from mapwise.report.model import OUTCOMES, ReportData
from mapwise.reports import human_seconds, iso

TIMELINE_WIDTH = 1000
CHART_WIDTH = 640

STYLE = """
:root { --bg: #ffffff; --fg: #1b1f24; --muted: #5b6570; --panel: #f4f6f8; --grid: #d0d5db;
  --run-a: rgba(0, 114, 178, 0.11); --run-b: rgba(230, 159, 0, 0.14); --hist: #0072B2;
  --cost: #D55E00; color-scheme: light dark; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #15181c; --fg: #e6e8eb; --muted: #9aa4ae; --panel: #1f242a; --grid: #3a424b;
    --run-a: rgba(86, 180, 233, 0.14); --run-b: rgba(230, 159, 0, 0.14); --hist: #56B4E9;
    --cost: #E69F00; } }
body { background: var(--bg); color: var(--fg); margin: 0 auto; padding: 1.2rem 1.6rem;
  max-width: 1240px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; }
h1 { font-size: 1.4rem; margin: 0 0 0.4rem; } h2 { font-size: 1.1rem; margin: 1.6rem 0 0.5rem; }
.muted { color: var(--muted); }
dl.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr));
  gap: 0.5rem 1rem; margin: 0.6rem 0; padding: 0.8rem 1rem; background: var(--panel);
  border-radius: 6px; }
dl.facts div { display: flex; flex-direction: column; } dt { color: var(--muted);
  font-size: 0.8rem; } dd { margin: 0; font-size: 1.05rem; font-variant-numeric: tabular-nums; }
.resume { background: var(--panel); padding: 0.5rem 1rem; border-radius: 6px; }
code { font: 13px ui-monospace, SFMono-Regular, Menlo, monospace; }
.scroll { overflow-x: auto; }
svg.chart text { fill: var(--fg); font-size: 11px; } svg.chart text.axis { fill: var(--muted); }
svg.chart .grid { stroke: var(--grid); stroke-width: 1; }
svg.chart .run-a { fill: var(--run-a); } svg.chart .run-b { fill: var(--run-b); }
svg.chart .run-start { stroke: var(--muted); stroke-dasharray: 3 3; }
svg.chart rect.hist { fill: var(--hist); }
svg.chart rect.bar[data-count="1"] { stroke: var(--bg); stroke-width: 0.6; }
svg.chart polyline.cost { fill: none;
  stroke: var(--cost); stroke-width: 2; }
ul.legend { list-style: none; display: flex; flex-wrap: wrap; gap: 0.4rem 1.2rem;
  padding: 0; margin: 0.3rem 0 0.6rem; } ul.legend li { display: flex; align-items: center;
  gap: 0.35rem; } ul.legend svg { border: 1px solid var(--grid); }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 0.25rem 0.7rem 0.25rem 0; border-bottom: 1px solid
  var(--grid); vertical-align: top; } th { color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; } td.error { max-width: 40rem; overflow-wrap: anywhere; }
.status-dlq { color: #D55E00; font-weight: 600; }
"""


def _fact(key: str, label: str, shown: str, value: object | None = None) -> str:
    data = f' data-value="{escape(str(value))}"' if value is not None else ""
    return f'<div><dt>{escape(label)}</dt><dd id="{key}"{data}>{escape(shown)}</dd></div>'


def _header(data: ReportData) -> str:
    report = data.status
    job, p, d = report.job, report.job.progress, report.durations
    facts = [
        _fact(
            "status", "status", f"{job.status}{' (resumable)' if job.resumable else ''}", job.status
        ),
        _fact("phase", "phase", report.phase, report.phase),
        _fact("succeeded", "succeeded", f"{p.completed_items:,}", p.completed_items),
        _fact("dlq", "in the DLQ", f"{p.failed_items:,}", p.failed_items),
        _fact("pending", "pending", f"{p.pending_items:,}", p.pending_items),
        _fact("total", "items", f"{p.total_items:,}", p.total_items),
        _fact("runs", "runs", str(len(report.runs)), len(report.runs)),
        _fact("wall", "wall time", human_seconds(d.wall_seconds), d.wall_seconds),
        _fact("compute", "compute time", human_seconds(d.compute_seconds), d.compute_seconds),
    ]
    cost = job.cost
    if cost.any:
        tokens = cost.input_tokens + cost.cache_read_tokens + cost.cache_creation_tokens
        facts += [
            _fact("cost", "cost", f"${cost.usd:,.2f}", round(cost.usd, 6)),
            _fact(
                "tokens",
                "tokens in / out",
                f"{compact(tokens)} / {compact(cost.output_tokens)}",
                tokens,
            ),
            _fact(
                "sessions", "agent runs / sessions", f"{cost.runs:,} / {cost.sessions:,}", cost.runs
            ),
        ]
    resume = ""
    if data.resume_command:
        what = (
            "Retry its failed items with"
            if " dlq retry " in data.resume_command
            else ("Resume it with")
        )
        resume = (
            f'<p class="resume" id="resume">{what} <code>{escape(data.resume_command)}</code></p>'
        )
    reason = f'<p class="muted">reason: {escape(report.reason)}</p>' if report.reason else ""
    return (
        f'<header><h1>{escape(job.workflow_name)} <span class="muted">· job '
        f'{escape(job.job_id)}</span></h1><p class="muted">started {iso(job.started_at)}, '
        f'updated {iso(job.updated_at)}</p><dl class="facts">{"".join(facts)}</dl>'
        f"{reason}{resume}</header>"
    )


def _timeline(data: ReportData, shape: layout.Timeline) -> str:
    counts = Counter(a.outcome for a in data.attempts)
    note = ""
    gathered = sum(1 for bar in shape.bars if bar.count > 1)
    if gathered:
        note = (
            f'<p class="muted">{len(data.attempts):,} attempts in {len(shape.bars):,} bars: '
            "attempts shorter than a pixel are gathered into one bar, coloured by the outcome "
            "most of them had, with a mark along its top for the most serious other one among "
            "them (hover for the counts).</p>"
        )
    if not data.attempts:
        return (
            '<section id="timeline"><h2>Timeline</h2><p class="muted">no attempt yet</p></section>'
        )
    return (
        f'<section id="timeline" data-attempts="{len(data.attempts)}"><h2>Timeline</h2>'
        f'<p class="muted">one row per slot, one bar per attempt; runs shaded, times in '
        f'UTC.</p>{svg.legend(dict(counts))}{note}<div class="scroll">{svg.timeline(shape)}'
        "</div></section>"
    )


def _durations(data: ReportData) -> str:
    bins, log = layout.histogram(data.item_durations)
    rows = "".join(
        f"<tr><td>{s.index + 1}</td><td><code>{escape(s.label)}</code></td>"
        f'<td class="num">{s.count:,}</td><td class="num">{human_seconds(s.median)}</td>'
        f'<td class="num">{human_seconds(s.p95)}</td><td class="num">{human_seconds(s.max)}</td>'
        "</tr>"
        for s in data.steps
    )
    steps = ""
    if rows:
        steps = (
            '<h3>Template steps</h3><table id="steps"><tr><th>step</th><th>command</th>'
            '<th class="num">runs</th><th class="num">median</th><th class="num">p95</th>'
            f'<th class="num">max</th></tr>{rows}</table>'
        )
    scale = " (log scale)" if log else ""
    return (
        f'<section id="durations"><h2>Item durations{scale}</h2>'
        f"{svg.histogram(bins, log, CHART_WIDTH)}{steps}</section>"
    )


def _cost(data: ReportData) -> str:
    if not data.status.job.cost.any:
        return ""
    rows = "".join(
        f'<tr><td>{escape(item)}</td><td class="num">${usd:,.4f}</td></tr>'
        for item, usd in data.costliest
    )
    return (
        '<section id="cost"><h2>Cost over time</h2>'
        f"{svg.cost_line(layout.thin(data.cost_points), CHART_WIDTH)}"
        '<h3>Costliest items</h3><table id="costliest"><tr><th>item</th>'
        f'<th class="num">cost</th></tr>{rows}</table></section>'
    )


def _items(data: ReportData) -> str:
    costs = data.status.job.cost.any  # no cost column for a job of shell steps
    branches = any(item.branch for item in data.items)  # nor a branch one outside worktrees
    head = ["<th>item</th><th>status</th>", '<th class="num">attempts</th>']
    head += ['<th class="num">duration</th>', '<th class="num">cost</th>' if costs else ""]
    head += ["<th>last error</th>", "<th>branch</th>" if branches else ""]
    rows = []
    for item in data.items:
        cells = [
            f"<td>{escape(item.item_id)}</td>",
            f'<td class="status-{item.status}">{escape(item.status)}</td>',
            f'<td class="num">{item.attempts}</td>',
            f'<td class="num">{human_seconds(item.duration)}</td>',
        ]
        if costs:
            cells.append(
                f'<td class="num">{"" if item.cost is None else f"${item.cost:,.4f}"}</td>'
            )
        cells.append(f'<td class="error">{escape(item.last_error or "")}</td>')
        if branches:
            cells.append(f"<td>{escape(item.branch or '')}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    more = ""
    if data.items_left_out:
        job = data.status.job.job_id
        more = (
            f'<p class="muted" id="left-out" data-value="{data.items_left_out}">'
            f"{data.items_left_out:,} more items are not shown here; "
            f"<code>mapwise status {escape(job)} --items</code> lists every one.</p>"
        )
    return (
        '<section id="items"><h2>Items</h2><p class="muted">every item in the DLQ first, then '
        'the others in the order they were frozen.</p><div class="scroll"><table id="item-table">'
        f"<tr>{''.join(head)}</tr>{''.join(rows)}</table></div>{more}</section>"
    )


def render(data: ReportData, version: str) -> tuple[str, int]:
    """The whole page, and how many bars its timeline has."""
    shape = layout.timeline(data.attempts, data.runs, TIMELINE_WIDTH)
    job = data.status.job
    title = f"mapwise report: {job.workflow_name} ({job.job_id})"
    outcomes = ", ".join(label for label, _, _ in OUTCOMES.values())
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"{svg.patterns()}{_header(data)}{_timeline(data, shape)}{_durations(data)}{_cost(data)}"
        f'{_items(data)}<footer><p class="muted">Written by mapwise {escape(version)} at '
        f"{iso(data.now)} from the job's database. Outcomes: {escape(outcomes)}.</p></footer>"
        "</body></html>\n"
    )
    return page, len(shape.bars)
