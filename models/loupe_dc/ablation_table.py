"""One table from the ablation's evaluation reports (models/ablation_eval.sh writes runs/ablation-*.eval.md).

    python -m loupe_dc.ablation_table runs/ablation-none.eval.md runs/ablation-sti.eval.md ...

Each report holds three tables in order: image QA on single stills, on sets of 8 stills (the frames path),
and zero-shot video QA. Prints a markdown table: accuracy per question type and overall, per connector.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

SECTIONS = ("image", "8 stills", "video")


def parse(report: Path) -> tuple[str, dict[str, dict[str, tuple[int, int]]]]:
    """(connector, {section: {type: (correct, n)}})."""
    name, sections, current = report.stem.split(".")[0].removeprefix("ablation-"), {}, -1
    for line in report.read_text().splitlines():
        if line.startswith("| type") or line.startswith("| question type"):
            current += 1
            sections[SECTIONS[current]] = {}
            continue
        m = re.match(r"\|\s*(?:\*\*)?([a-z]+)(?:\*\*)?\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|", line)
        if m and current >= 0:
            sections[SECTIONS[current]][m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return name, sections


def main() -> None:
    runs = [parse(Path(p)) for p in sys.argv[1:]]
    names = [n for n, _ in runs]
    print("| eval | question type | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for section in SECTIONS:
        types = [t for t in runs[0][1].get(section, {}) if t != "overall"] + ["overall"]
        for t in types:
            cells = []
            for _, s in runs:
                c, n = s.get(section, {}).get(t, (0, 0))
                cells.append(f"{100 * c / n:.1f}%" if n else "—")
            label = f"**{t}**" if t == "overall" else t
            n = runs[0][1].get(section, {}).get(t, (0, 0))[1]
            print(f"| {section} | {label} (n={n}) | " + " | ".join(f"**{c}**" if t == "overall" else c for c in cells) + " |")


if __name__ == "__main__":
    main()
