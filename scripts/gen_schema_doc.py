"""Regenerate the table and view reference in docs/schema.md from engine/runfile/schema.py.

Only the block between the GENERATED markers is rewritten; the prose around it (layout,
recomputation SQL, summary choices) is hand-written and kept. Run after changing schema.py:

    .venv/bin/python scripts/gen_schema_doc.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generated import replace_block  # noqa: E402

from engine.runfile import schema  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "schema.md"
BEGIN = "<!-- BEGIN GENERATED from engine/runfile/schema.py by scripts/gen_schema_doc.py -->"
END = "<!-- END GENERATED -->"

_UNITS: dict[str, str] = {
    **dict.fromkeys(("logp", "entropy", "teacher_entropy", "kl_pq", "kl_qp", "js",
                     "logq_sampled"), "nats"),
    **dict.fromkeys(("p", "q", "m_s", "m_c", "s_hat", "s_lo", "s_hi", "v_hat", "teachability"),
                    "probability"),
    **dict.fromkeys(("best_prob", "null_share", "helps", "hurts", "neutral", "switch_rate",
                     "g_residual_share", "d_residual_share"), "share in [0, 1]"),
    **dict.fromkeys(("cos", "cos_c", "beyond", "cos_lo", "cos_hi", "beyond_lo", "beyond_hi",
                     "param_cos", "mean_cos", "cos_sharp"), "cosine in [-1, 1]"),
    **dict.fromkeys(("edge", "edge_lo", "edge_hi", "edge_a", "edge_b", "mean_edge",
                     "mean_edge_decisive", "best_mean", "margin", "best_margin"),
                    "cosine difference in [-2, 2]"),
    **dict.fromkeys(("stakes", "stakes_lo", "stakes_hi"), "success probability"),
    **dict.fromkeys(("gain", "gain_lo", "gain_hi"), "success probability per unit step"),
    **dict.fromkeys(("advantage", "advantage_lo", "advantage_hi", "advantage_a", "advantage_b",
                     "value_change"), "success probability"),
    **dict.fromkeys(("g", "h", "d_rkl", "d_fkl", "d_jsd", "d_sampled"), "logit-space component"),
    **dict.fromkeys(("g_norm2", "h_norm2", "gh", "d_norm2", "hd"), "squared logit units"),
    **dict.fromkeys(("s", "n", "s_half", "n_half", "n_rollouts", "n_correct", "n_nodes",
                     "n_continuations", "generated_tokens", "n_tokens", "n_candidates", "n_cont",
                     "n_prompt_tokens", "n_pairs", "n_unverifiable", "n_labelled", "n_plausible",
                     "n_decisive"), "count"),
    "seconds": "seconds",
    "pos": "token index",
    "sampled_rank": "rank (1 = top)",
    "spearman": "correlation in [-1, 1]",
    "decile": "tenth of the rollout",
}
_CONTEXT_UNITS = {("summary_alignment", "mean"): "metric's unit", ("summary_alignment", "lo"):
                  "metric's unit", ("summary_alignment", "hi"): "metric's unit",
                  ("summary_oracle", "oracle_mean"): "unit column", ("summary_oracle", "lo"):
                  "unit column", ("summary_oracle", "hi"): "unit column",
                  ("summary_oracle", "oracle_gain"): "unit column",
                  ("summary_oracle", "best_single_mean"): "unit column"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table_section(t: schema.Table) -> str:
    lines = [f"### `{t.name}`", "", t.doc, "", f"Key: ({', '.join(t.key)})", "",
             "| column | type | unit | meaning |", "|---|---|---|---|"]
    for c in t.columns:
        unit = _CONTEXT_UNITS.get((t.name, c.name), _UNITS.get(c.name, "-"))
        lines.append(f"| `{c.name}` | {c.type} | {unit} | {_cell(c.doc)} |")
    return "\n".join(lines)


def generated_block() -> str:
    parts = [BEGIN, "", f"Schema version {schema.SCHEMA_VERSION}.", "",
             "## Run tables (written once per run)", ""]
    parts += [table_section(t) + "\n" for t in schema.RUN_TABLES]
    parts += ["## Question tables (one part file per question, merged)", ""]
    parts += [table_section(t) + "\n" for t in schema.QUESTION_TABLES]
    parts += ["## Summary tables (materialised at merge by `engine.runfile.summaries`)", ""]
    parts += [table_section(t) + "\n" for t in schema.SUMMARY_TABLES]
    parts += ["## Views", ""]
    for name, sql in schema.VIEWS.items():
        body = "\n".join(line[8:] if line.startswith(" " * 8) else line
                         for line in sql.strip("\n").splitlines())
        parts += [f"### `{name}`", "", schema.VIEW_DOCS.get(name, ""), "", "```sql", body, "```",
                  ""]
    parts.append(END)
    return "\n".join(parts)


def main() -> int:
    return replace_block(DOC, BEGIN, END, generated_block())


if __name__ == "__main__":
    raise SystemExit(main())
