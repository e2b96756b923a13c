"""Ready-made console queries for the questions researchers ask first; each is editable SQL.

All read the schema's tables and views (engine/schema.py, version 3). Controls are excluded where
a teacher is being ranked; reverse KL is the default lens (the rank signal of a default run).
The headline score is the edge over the sharpened student (`edge`, labels `label_edge`), and
labels exist only at decisive nodes (`nodes.decisive`: stakes >= tau_stakes). Token rankings
order by effect size (the gain <g,d> or the teacher advantage, in success probability), never by
a cosine, whose magnitude says nothing about how much success moves. Rows that identify a token
keep (question_id, rollout, pos) so Enter in the grid jumps to the token.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    id: str
    title: str
    sql: str


PRESETS: tuple[Preset, ...] = (
    Preset("most_hurt", "Most-hurt tokens per teacher (by gain)", """\
-- The 20 decisive tokens per teacher where a step along its rKL pull lowers success most
-- (gain <g,d> < 0, most negative first), with the interval and the edge label
SELECT s.teacher, s.question_id, s.rollout, s.pos, t.token_text, s.gain, s.gain_lo,
       s.gain_hi, s.edge, s.label_edge, s.cos, n.stakes, r.correct
FROM scores s
JOIN nodes n USING (question_id, rollout, pos)
JOIN tokens t USING (question_id, rollout, pos)
JOIN rollouts r USING (question_id, rollout)
JOIN teachers te USING (teacher)
WHERE s.signal = 'rkl' AND NOT te.is_control AND n.decisive AND s.gain < 0
QUALIFY row_number() OVER (PARTITION BY s.teacher
                           ORDER BY s.gain, s.question_id, s.rollout, s.pos) <= 20
ORDER BY s.teacher, s.gain, s.question_id, s.rollout, s.pos"""),
    Preset("most_hurt_advantage", "Most-hurt tokens per teacher (by teacher advantage)", """\
-- The 20 decisive tokens per teacher where adopting its distribution would cost the most
-- success: teacher advantage A_c = sum_C q (S - V) < 0, most negative first (signal-free)
SELECT nt.teacher, nt.question_id, nt.rollout, nt.pos, t.token_text, nt.advantage,
       nt.advantage_lo, nt.advantage_hi, n.stakes, n.best_teacher, r.correct
FROM node_teacher nt
JOIN nodes n USING (question_id, rollout, pos)
JOIN tokens t USING (question_id, rollout, pos)
JOIN rollouts r USING (question_id, rollout)
JOIN teachers te USING (teacher)
WHERE NOT te.is_control AND n.decisive AND nt.advantage < 0
QUALIFY row_number() OVER (PARTITION BY nt.teacher
                           ORDER BY nt.advantage, nt.question_id, nt.rollout, nt.pos) <= 20
ORDER BY nt.teacher, nt.advantage, nt.question_id, nt.rollout, nt.pos"""),
    Preset("hurts_while_helps", "Tokens where teacher A hurts while B helps", """\
-- Decisive nodes where one teacher's rKL edge label is 'hurts' and another's 'helps'
-- (labels need a decisive node and an interval beyond +-epsilon), largest gap in teacher
-- advantage (success probability) between the helper and the hurter first
WITH labelled AS (
    SELECT s.question_id, s.rollout, s.pos, s.teacher, s.edge, s.label_edge, nt.advantage
    FROM scores s
    JOIN nodes n USING (question_id, rollout, pos)
    JOIN node_teacher nt USING (question_id, rollout, pos, teacher)
    JOIN teachers te USING (teacher)
    WHERE s.signal = 'rkl' AND NOT te.is_control AND n.decisive
      AND s.label_edge IN ('helps', 'hurts')
)
SELECT question_id, rollout, pos, any_value(t.token_text) AS token_text,
       arg_max(teacher, edge) FILTER (label_edge = 'helps') AS helps,
       max(edge) FILTER (label_edge = 'helps') AS helps_edge,
       arg_min(teacher, edge) FILTER (label_edge = 'hurts') AS hurts,
       min(edge) FILTER (label_edge = 'hurts') AS hurts_edge,
       max(advantage) FILTER (label_edge = 'helps')
           - min(advantage) FILTER (label_edge = 'hurts') AS advantage_gap
FROM labelled JOIN tokens t USING (question_id, rollout, pos)
GROUP BY question_id, rollout, pos
HAVING count(*) FILTER (label_edge = 'helps') > 0 AND count(*) FILTER (label_edge = 'hurts') > 0
ORDER BY advantage_gap DESC NULLS LAST, question_id, rollout, pos
LIMIT 500"""),
    Preset("position_buckets", "Edge by position bucket", """\
-- Mean edge and edge-label shares (of labelled nodes, n_labelled) by decile of the position
-- within the rollout (rKL); only decisive nodes can be labelled helps / hurts
SELECT s.teacher, least(floor(10 * s.pos / r.n_tokens), 9)::INTEGER AS decile,
       count(*) AS n, count(*) FILTER (n.decisive) AS n_decisive, avg(s.edge) AS mean_edge,
       avg(s.edge) FILTER (n.decisive) AS mean_edge_decisive, avg(s.cos) AS mean_cos,
       count(s.label_edge) AS n_labelled,
       count(*) FILTER (s.label_edge = 'helps') / nullif(count(s.label_edge), 0) AS helps,
       count(*) FILTER (s.label_edge = 'hurts') / nullif(count(s.label_edge), 0) AS hurts
FROM scores s JOIN rollouts r USING (question_id, rollout)
JOIN nodes n USING (question_id, rollout, pos)
WHERE s.signal = 'rkl'
GROUP BY ALL
ORDER BY s.teacher, decile"""),
    Preset("teacher_family", "Teacher x task family", """\
-- Mean edge at decisive nodes (rKL) per task family and teacher, with the plain cosine and
-- the share of labelled decisive nodes each teacher hurts; controls last
SELECT coalesce(q.family, '(none)') AS family, s.teacher, te.is_control,
       count(*) AS n_decisive, avg(s.edge) AS mean_edge, avg(s.cos) AS mean_cos,
       avg(s.gain) AS mean_gain, count(s.label_edge) AS n_labelled,
       count(*) FILTER (s.label_edge = 'hurts') / nullif(count(s.label_edge), 0) AS hurts
FROM scores s
JOIN nodes n USING (question_id, rollout, pos)
JOIN questions q USING (question_id)
JOIN teachers te USING (teacher)
WHERE s.signal = 'rkl' AND n.decisive
GROUP BY ALL
ORDER BY family, te.is_control, mean_edge DESC NULLS LAST, s.teacher"""),
    Preset("entropy_bins", "Help/hurt by student entropy bin", """\
-- Edge-label shares of labelled nodes by student entropy (0.25-nat bins, last bin open),
-- rKL, per teacher, with how many nodes of the bin are decisive
SELECT s.teacher, least(floor(t.entropy / 0.25), 12) * 0.25 AS entropy_from,
       count(*) AS n, count(*) FILTER (n.decisive) AS n_decisive, avg(s.edge) AS mean_edge,
       count(s.label_edge) AS n_labelled,
       count(*) FILTER (s.label_edge = 'helps') / nullif(count(s.label_edge), 0) AS helps,
       count(*) FILTER (s.label_edge = 'hurts') / nullif(count(s.label_edge), 0) AS hurts
FROM scores s JOIN tokens t USING (question_id, rollout, pos)
JOIN nodes n USING (question_id, rollout, pos)
WHERE s.signal = 'rkl'
GROUP BY ALL
ORDER BY s.teacher, entropy_from"""),
    Preset("proxy_correlation", "Correlation of each cheap proxy with the edge", """\
-- Pearson and Spearman correlation of each cheap proxy with the rKL edge, per non-control
-- teacher (the sharpened control's edge is 0 everywhere: no correlation to speak of)
WITH joined AS (
    SELECT s.teacher, s.edge, t.entropy AS student_entropy, nt.teacher_entropy, nt.kl_pq,
           nt.kl_qp, nt.js, nt.teachability, nt.sampled_rank::DOUBLE AS sampled_rank
    FROM scores s
    JOIN node_teacher nt USING (question_id, rollout, pos, teacher)
    JOIN tokens t USING (question_id, rollout, pos)
    JOIN teachers te USING (teacher)
    WHERE s.signal = 'rkl' AND s.edge IS NOT NULL AND NOT te.is_control
), long AS (
    UNPIVOT joined
    ON student_entropy, teacher_entropy, kl_pq, kl_qp, js, teachability, sampled_rank
    INTO NAME proxy VALUE value
), ranked AS (
    SELECT *, rank() OVER (PARTITION BY teacher, proxy ORDER BY value) AS value_rank,
              rank() OVER (PARTITION BY teacher, proxy ORDER BY edge) AS edge_rank
    FROM long
)
SELECT teacher, proxy, count(*) AS n, corr(value, edge) AS pearson,
       corr(value_rank, edge_rank) AS spearman
FROM ranked
GROUP BY ALL
ORDER BY teacher, abs(spearman) DESC NULLS LAST, proxy"""),
    Preset("best_teacher_switching", "Per-token best-teacher switching per rollout", """\
-- How often the confident best teacher changes between consecutive decisive nodes (view
-- best_switches: a best teacher leads the runner-up by the margin in >= leader_share of the
-- draws); only pairs where both nodes have one qualify
SELECT question_id, rollout, count(*) AS decisive_nodes,
       count(*) FILTER (WHERE qualifies) AS pairs,
       count(*) FILTER (WHERE is_switch) AS switches,
       count(*) FILTER (WHERE is_switch) / nullif(count(*) FILTER (WHERE qualifies), 0)
           AS switch_rate,
       count(DISTINCT best_teacher) AS distinct_leaders, mode(best_teacher) AS usual_leader
FROM best_switches
GROUP BY ALL
ORDER BY switch_rate DESC NULLS LAST, question_id, rollout"""),
    Preset("no_best_teacher", "Why decisive nodes have no best teacher", """\
-- Decisive nodes by best_reason (tie: no teacher leads by the margin often enough), with the
-- mean draw share and point margin of the leader
SELECT coalesce(best_reason, '(confident)') AS reason, count(*) AS nodes,
       avg(best_prob) AS mean_prob, avg(best_margin) AS mean_margin
FROM nodes
WHERE decisive
GROUP BY ALL
ORDER BY nodes DESC, reason"""),
)

PRESET_BY_ID: dict[str, Preset] = {p.id: p for p in PRESETS}
