"""bench/RESULTS.md and the plot: the figures of one run, rendered.

RESULTS.md has a generated block between two markers; whatever lies outside it (the
hand-written analysis of what stands in the way) is kept when the block is rewritten.
"""

from __future__ import annotations

from pathlib import Path

BEGIN = "<!-- bench:generated:begin (python -m bench.run rewrites this block) -->"
END = "<!-- bench:generated:end -->"
TEMPLATE = f"""# Benchmark results

{BEGIN}
{END}

## What stands in the way

(Hand-written: kept when the generated block above is rewritten.)
"""


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(s: dict | None, suffix: str = "") -> str:
    """`median (min-max)` of a spread, or the single reading."""
    if not s or s.get("median") is None:
        return "-"
    if s["n"] == 1:
        return f"{_num(s['median'])}{suffix}"
    return f"{_num(s['median'])}{suffix} ({_num(s['min'])}-{_num(s['max'])})"


def figures_table(rows: list[dict]) -> str:
    """Every figure beside its baseline and their ratio: median (min-max) over repetitions."""
    lines = [
        "| section | figure | unit | Orchestra | baseline | ratio | note |",
        "| --- | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['section']} | {r['name']} | {r['unit']} | {_cell(r['figure'])} | "
            f"{_cell(r.get('baseline'))} | {_cell(r.get('ratio'), 'x')} | {r['note']} |"
        )
    return "\n".join(lines)


def peers_table(peers: dict) -> str:
    """The peers section: one line per system, median (min-max) over repetitions."""
    from bench.figures import PEER_COLUMNS

    headings = [h for h, _ in PEER_COLUMNS]
    lines = [
        "| system | " + " | ".join(headings) + " | drain vs raw Celery | note |",
        "| --- | " + " | ".join("---:" for _ in headings) + " | ---: | --- |",
    ]
    for line in peers["lines"]:
        cells = " | ".join(_cell(line["cells"][h]) for h in headings)
        lines.append(
            f"| {line['system']} | {cells} | {_cell(line['drain_vs_raw'], 'x')} | {line['note']} |"
        )
    for why in peers["missing"]:
        lines.append(f"\nNot measured: {why}.")
    return "\n".join(lines)


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "not measured"}[met]


def targets_table(targets: list[dict]) -> str:
    """The issue's targets: figure, baseline, the ratio or value held against the limit."""
    lines = [
        "| target | figure | baseline | ratio | limit | verdict | note |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for t in targets:
        unit = f" {t['unit']}" if t["unit"] else ""
        limit = f"{t['op']} {_num(t['limit'])}{'x' if t['ratio'] else unit}"
        lines.append(
            f"| {t['name']} | {_cell(t['figure'])}{unit} | {_cell(t['baseline'])} | "
            f"{_cell(t['ratio'], 'x')} | {limit} | {_verdict(t['met'])} | {t['note']} |"
        )
    return "\n".join(lines)


def generated_block(doc: dict) -> str:
    """The block of RESULTS.md that each run rewrites."""
    m = doc["machine"]
    sizes = ", ".join(f"{k} {v}" for k, v in doc["sizes"].items())
    parts = [
        BEGIN,
        f"Run of {doc['when']} ({'quick' if doc['quick'] else 'default'} mode, "
        f"{doc['elapsed_s']:.0f} s in all) on {m['cpus']} CPUs shared with other work "
        f"(load average {m['load_before']} before the run), Python {m['python']}. "
        f"Sizes: {sizes}.",
        "",
        f"Raw Celery and Orchestra end to end alternate, {doc['repeats']} repetition(s): each "
        "cell is the median over repetitions, (min-max) beside it, and a ratio is taken within "
        "each repetition, Orchestra over its baseline measured moments before. The relay, "
        "retention and large-table sections run once (each figure a quantile of many samples; "
        "a large-table baseline is the same call on the small table, before the fill).",
        "",
        "### Targets",
        "",
        targets_table(doc["targets"]),
        "",
        "### Figures",
        "",
        figures_table(doc["rows"]),
        "",
        *(
            [
                "### Peers: one method for every system",
                "",
                f"A backlog of {doc['peers']['jobs']:,} no-op jobs (half enqueued one by one, "
                "half in the library's bulk call, by its client in a process of its own), then "
                "two worker processes started on it; the drain from the jobs' own timestamps; "
                "CPU from /proc over the drain (workers and their children, the Postgres "
                "backends of the system's database, the whole Redis server); "
                f"{doc['peers']['trips']} idle round trips waited for the library's own way. "
                "How each system is run: docs/bench.md.",
                "",
                peers_table(doc["peers"]),
                "",
            ]
            if doc.get("peers")
            else []
        ),
        "![throughput and latency over time](throughput_latency.png)",
        "",
        f"Raw readings, EXPLAIN ANALYZE plans and logs: `bench/results/` ({doc['results']}).",
        END,
    ]
    return "\n".join(parts)


def write_results_md(path: Path, doc: dict) -> None:
    """Rewrite the generated block of `path`, keeping what is written around it."""
    text = path.read_text() if path.exists() else TEMPLATE
    if BEGIN not in text or END not in text:
        text = TEMPLATE + "\n" + text
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    path.write_text(head + generated_block(doc) + tail)


def plot(path: Path, series: dict) -> None:
    """Completions/s and latencies per second of the end-to-end run (Agg, no screen)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    top.plot(series["t"], series["completed_per_s"], label="completed events received /s")
    top.plot(series["t"], series["submitted_per_s"], label="jobs submitted /s", alpha=0.7)
    top.set_ylabel("jobs/s")
    for t, label in series.get("phases", []):
        for ax in (top, bottom):
            ax.axvline(t, color="grey", linestyle=":", linewidth=1)
        top.annotate(label, (t, 0), textcoords="offset points", xytext=(3, 3), fontsize=8)
    top.legend(loc="upper right", fontsize=8)
    bottom.plot(series["t"], series["status_p50_ms"], label="status latency p50")
    bottom.plot(series["t"], series["status_p99_ms"], label="status latency p99")
    bottom.plot(series["t"], series["submit_p50_ms"], label="submit latency p50", alpha=0.7)
    bottom.set_yscale("log")
    bottom.set_ylabel("ms (log)")
    bottom.set_xlabel("seconds into the end-to-end run")
    bottom.legend(loc="upper right", fontsize=8)
    fig.suptitle(series["title"], fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
