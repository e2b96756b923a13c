"""What the column names and symbols on screen mean, shown at the end of every help screen.

One place, so a header such as `∅%` or `m_s` is explained the same way everywhere; method.md
(revision 2) has the definitions behind them.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from engine.runfile.names import CONTROLS

GLOSSARY: tuple[tuple[str, str], ...] = (
    ("edge", "cos(g, d) - cos(g, d_sharp): what a teacher's pull earns beyond what the sharpened "
             "student (confidence alone) earns, in [-2, 2]; 0 = no better than sharpening"),
    ("cos", "plain alignment cos(g, d) of the teacher's pull d with the ideal direction g"),
    ("cos_sharp", "cos(g, d_sharp); for reverse KL d_sharp = h, so cos_sharp = cos(g, h)"),
    ("beyond", "secondary: cos after projecting h out of g and d; NULL where too little is left"),
    ("g", "ideal direction: what raises the success probability (from S of the candidates)"),
    ("d", "the teacher's distillation pull on the student's logits (per signal: rkl, fkl, ...)"),
    ("h", "the pull toward the student sharpened (its own confidence)"),
    ("S / s/N", "success probability of a candidate token: s of N continuations were correct, "
                "with its interval; `det` = forced, `+k?` = k unverifiable"),
    ("V̂", "value of the node: the student's expected success, sum over C of p_a S_a / m_s"),
    ("S(y)", "S of the token the student sampled; V̂ - S(y) large = the rollout was lost here"),
    ("value change", "S(y) - V̂"),
    ("stakes", "spread of S over C+ (in success probability), with its interval"),
    ("decisive", "stakes >= tau_stakes (default 0.1); only decisive nodes get helps/hurts"),
    ("helps/hurts/neutral", "label of a decisive node: the edge interval lies above +eps, below "
                            "-eps, or within; bold = helps, italic = hurts, underlined tokens"),
    ("+/-/0 %", "shares of helps / hurts / neutral among the labelled decisive nodes"),
    ("C / |C|", "candidate tokens probed at a node (sampled + student top-k + teachers' top-k)"),
    ("C+ / |C+|", "plausible candidates: p >= pi or a non-control teacher's q >= pi"),
    ("N", "continuations per candidate"),
    ("m_s", "student probability mass covered by the candidate set C"),
    ("p / q", "student / teacher probability of a token"),
    ("gain", "<g, d>: first-order change in success per unit step along d (percentage points)"),
    ("advantage", "sum over C of q_a (S_a - V̂): how much better the teacher's pick is"),
    ("KL(p||q)", "KL divergence of the student from the teacher at the node"),
    ("teachab.", "teacher mass on the student's top-k tokens (teachability)"),
    ("rank y", "rank of the sampled token under the teacher (1 = its favourite)"),
    ("best teacher", "highest edge at the node when it wins the paired draws with a margin; "
                     "∅ with the reason otherwise"),
    ("∅ / ∅%", "NULL (no value: not probed, no signal, skipped context) / share of NULLs"),
    ("inc / cor", "incorrect / correct rollouts"),
    ("controls", f"{', '.join(CONTROLS)}...: baselines a teacher must beat (in italics)"),
)


def glossary_table() -> Table:
    table = Table(box=None, header_style="bold", padding=(0, 2), title_justify="left",
                  title=Text("Glossary", "bold"))
    table.add_column("term", no_wrap=True)
    table.add_column("meaning")
    for term, meaning in GLOSSARY:
        table.add_row(term, meaning)
    return table
