"""The roll report: after every patch, roll or replace, `reports/<verb>-<UTC time>.json` (the plan, the result or the
error, and the timeline: every action with its time and hosts, each host's phases, each drain's evictions and
refusals, the capacity at each look) and a self-contained HTML page beside it with three charts drawn by plotly
(its JavaScript inlined, so the page opens offline): capacity over time (desired, InService, Ready and schedulable),
one bar per host showing where its time went, and evictions and budget refusals over time."""

from __future__ import annotations

import html
import itertools
import json
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from provision.roll.timeline import Entered, Timeline

FORMAT = 1
# What a host's time between two phases was spent on, named by the phase it ended in.
SEGMENTS = {
    "launched": "replacement asked",
    "ready": "boot",
    "cordoned": "cordon",
    "drained": "drain",
    "migrated": "pods back elsewhere",
    "terminated": "terminate",
}
COLOURS = {
    "replacement asked": "#9e9e9e",
    "boot": "#4c78a8",
    "cordon": "#f58518",
    "drain": "#e45756",
    "pods back elsewhere": "#72b7b2",
    "terminate": "#54a24b",
}


def write(folder: Path, verb: str, document: dict[str, Any], timeline: Timeline) -> Path:
    """Write the JSON and the HTML page of one run into ``folder``; returns the page's path."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"{verb}-{timeline.started:%Y%m%dT%H%M%SZ}"
    data = {"format": FORMAT, "verb": verb, "started": timeline.started.isoformat(), **document}
    data["timeline"] = {
        "samples": [asdict(sample) for sample in timeline.samples],
        "steps": [asdict(step) for step in timeline.steps],
        "entered": [asdict(entered) for entered in timeline.entered],
        "drains": [asdict(drain) for drain in timeline.drains],
    }
    stem.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    page = stem.with_suffix(".html")
    page.write_text(_page(verb, document, timeline))
    return page


def _page(verb: str, document: dict[str, Any], timeline: Timeline) -> str:
    import plotly.graph_objects as go

    def when(seconds: float) -> datetime:
        return timeline.started + timedelta(seconds=seconds)

    capacity = go.Figure(
        [
            go.Scatter(
                x=[when(sample.at) for sample in timeline.samples],
                y=[getattr(sample, key) for sample in timeline.samples],
                name=name,
                mode="lines",
                line_shape="hv",
            )
            for key, name in (("desired", "desired"), ("in_service", "InService"), ("ready", "Ready and schedulable"))
        ],
        layout={"title": "Capacity", "yaxis": {"title": "hosts", "rangemode": "tozero"}},
    )
    phases = go.Figure(layout={"title": "Where each host's time went", "barmode": "overlay", "xaxis": {"type": "date"}})
    for segment, bars in _segments(timeline.entered).items():
        phases.add_trace(
            go.Bar(
                name=segment,
                orientation="h",
                y=[host for host, _, _ in bars],
                base=[when(start) for _, start, _ in bars],
                x=[(end - start) * 1000 for _, start, end in bars],  # a date axis counts in milliseconds
                marker_color=COLOURS.get(segment, "#bab0ac"),
            )
        )
    phases.update_layout(yaxis={"autorange": "reversed"})  # the first host taken at the top
    evictions = go.Figure(
        [
            go.Bar(x=[when(d.at) for d in timeline.drains], y=[d.evicted for d in timeline.drains], name="evicted"),
            go.Bar(x=[when(d.at) for d in timeline.drains], y=[d.refused for d in timeline.drains], name="refused"),
            go.Bar(x=[when(d.at) for d in timeline.drains], y=[d.forced for d in timeline.drains], name="forced"),
        ],
        layout={"title": "Evictions and budget refusals, at each drain's end", "yaxis": {"title": "pods"}},
    )
    charts = [
        figure.to_html(full_html=False, include_plotlyjs=index == 0, div_id=name)
        for index, (name, figure) in enumerate((("capacity", capacity), ("phases", phases), ("evictions", evictions)))
    ]
    result, error = document.get("result") or {}, document.get("error")
    outcome = f"stopped: {error['message']}" if error else f"{len(result.get('replaced', []))} host(s) replaced"
    rows = "".join(
        f"<tr><td>{html.escape(item['instance_id'])}</td><td>{html.escape(item['replacement'])}</td>"
        f"<td>{item['seconds']:.0f}s</td></tr>"
        for item in result.get("replaced", [])
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>cluster {html.escape(verb)} {timeline.started:%Y-%m-%d %H:%M:%SZ}</title></head><body>"
        f"<h1>cluster {html.escape(verb)}, {timeline.started:%Y-%m-%d %H:%M:%S} UTC</h1>"
        f"<p>{html.escape(outcome)}; lowest ready capacity {result.get('lowest_ready', '?')}</p>"
        + "".join(charts)
        + f"<table><tr><th>replaced</th><th>by</th><th>took</th></tr>{rows}</table></body></html>"
    )


def _segments(entered: list[Entered]) -> dict[str, list[tuple[str, float, float]]]:
    """Segment name -> (host, start, end) for each stretch between two phases a host entered."""
    by_host: dict[str, list[Entered]] = {}
    for entry in entered:
        by_host.setdefault(entry.host, []).append(entry)
    segments: dict[str, list[tuple[str, float, float]]] = {name: [] for name in COLOURS}
    for host, entries in by_host.items():
        for before, after in itertools.pairwise(entries):
            segments.setdefault(SEGMENTS.get(after.phase, after.phase), []).append((host, before.at, after.at))
    return {name: bars for name, bars in segments.items() if bars}
