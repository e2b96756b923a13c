"""Ready-made console queries for the questions researchers ask first; each is editable SQL.

All read the schema's tables and views (engine/schema.py). Controls are excluded where a teacher
is being ranked, and the reverse-KL signal is the default lens since it is the one whose
beyond-sharpening split is exact. Rows that identify a token keep (question_id, rollout, pos) so
Enter in the grid jumps to the token.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    id: str
    title: str
    sql: str


PRESETS: tuple[Preset, ...] = (
    Preset("most_hurt", "Most-hurt tokens per teacher", """\
-- The 20 lowest-alignment tokens per teacher among those labelled 'hurts' (rKL)
SELECT teacher, question_id, rollout, pos, token_text, cos, cos_lo, cos_hi, beyond, correct
FROM token_scores
WHERE signal = 'rkl' AND NOT is_control AND label = 'hurts'
QUALIFY row_number() OVER (PARTITION BY teacher ORDER BY cos, question_id, rollout, pos) <= 20
ORDER BY teacher, cos, question_id, rollout, pos"""),
    Preset("sign_disagreement", "Tokens where teachers disagree most in sign", """\
-- Nodes where one teacher's alignment is positive and another's negative, widest spread first
SELECT question_id, rollout, pos, any_value(token_text) AS token_text,
       max(cos) - min(cos) AS spread,
       arg_max(teacher, cos) AS most_helpful, max(cos) AS max_cos,
       arg_min(teacher, cos) AS most_hurtful, min(cos) AS min_cos
FROM token_scores
WHERE signal = 'rkl' AND NOT is_control AND cos IS NOT NULL
GROUP BY question_id, rollout, pos
HAVING max(cos) > 0 AND min(cos) < 0
ORDER BY spread DESC, question_id, rollout, pos
LIMIT 500"""),
    Preset("position_buckets", "Alignment by position bucket", """\
-- Mean alignment and help/hurt shares by decile of the position within the rollout (rKL)
SELECT s.teacher, least(floor(10 * s.pos / r.n_tokens), 9)::INTEGER AS decile,
       count(*) AS n, avg(s.cos) AS mean_cos, avg(s.beyond) AS mean_beyond,
       avg((s.label = 'helps')::INTEGER) AS helps, avg((s.label = 'hurts')::INTEGER) AS hurts
FROM scores s JOIN rollouts r USING (question_id, rollout)
WHERE s.signal = 'rkl'
GROUP BY ALL
ORDER BY s.teacher, decile"""),
    Preset("teacher_family", "Teacher x task family", """\
-- Mean beyond-sharpening alignment (rKL) per task family and teacher; controls last
SELECT coalesce(q.family, '(none)') AS family, s.teacher, te.is_control,
       count(*) AS n, avg(s.beyond) AS mean_beyond, avg(s.cos) AS mean_cos,
       avg((s.label = 'hurts')::INTEGER) AS hurts
FROM scores s
JOIN questions q USING (question_id)
JOIN teachers te USING (teacher)
WHERE s.signal = 'rkl'
GROUP BY ALL
ORDER BY family, te.is_control, mean_beyond DESC"""),
    Preset("entropy_bins", "Help/hurt by student entropy bin", """\
-- Help/hurt shares by student entropy (0.25-nat bins, last bin open), rKL, per teacher
SELECT s.teacher, least(floor(t.entropy / 0.25), 12) * 0.25 AS entropy_from,
       count(*) AS n, avg(s.cos) AS mean_cos,
       avg((s.label = 'helps')::INTEGER) AS helps, avg((s.label = 'hurts')::INTEGER) AS hurts
FROM scores s JOIN tokens t USING (question_id, rollout, pos)
WHERE s.signal = 'rkl'
GROUP BY ALL
ORDER BY s.teacher, entropy_from"""),
    Preset("proxy_correlation", "Correlation of each cheap proxy with alignment", """\
-- Pearson and Spearman correlation of each cheap proxy with rKL alignment, per teacher
WITH joined AS (
    SELECT s.teacher, s.cos, t.entropy AS student_entropy, nt.teacher_entropy, nt.kl_pq,
           nt.kl_qp, nt.js, nt.teachability, nt.sampled_rank::DOUBLE AS sampled_rank
    FROM scores s
    JOIN node_teacher nt USING (question_id, rollout, pos, teacher)
    JOIN tokens t USING (question_id, rollout, pos)
    WHERE s.signal = 'rkl' AND s.cos IS NOT NULL
), long AS (
    UNPIVOT joined
    ON student_entropy, teacher_entropy, kl_pq, kl_qp, js, teachability, sampled_rank
    INTO NAME proxy VALUE value
), ranked AS (
    SELECT *, rank() OVER (PARTITION BY teacher, proxy ORDER BY value) AS value_rank,
              rank() OVER (PARTITION BY teacher, proxy ORDER BY cos) AS cos_rank
    FROM long
)
SELECT teacher, proxy, count(*) AS n, corr(value, cos) AS pearson,
       corr(value_rank, cos_rank) AS spearman
FROM ranked
GROUP BY ALL
ORDER BY teacher, abs(spearman) DESC NULLS LAST"""),
    Preset("best_teacher_switching", "Per-token best-teacher switching per rollout", """\
-- How often the confident best teacher (best_prob >= 0.9) changes between consecutive
-- probed nodes; only pairs where both nodes have a confident leader qualify
SELECT question_id, rollout, count(*) AS nodes,
       count(*) FILTER (WHERE qualifies) AS pairs,
       count(*) FILTER (WHERE is_switch) AS switches,
       count(*) FILTER (WHERE is_switch) / nullif(count(*) FILTER (WHERE qualifies), 0)
           AS switch_rate,
       count(DISTINCT best_teacher) AS distinct_leaders, mode(best_teacher) AS usual_leader
FROM best_switches
GROUP BY ALL
ORDER BY switch_rate DESC NULLS LAST, question_id, rollout"""),
)

PRESET_BY_ID: dict[str, Preset] = {p.id: p for p in PRESETS}
