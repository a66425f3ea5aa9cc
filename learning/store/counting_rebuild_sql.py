"""The counting rules as SQL, for the rebuild; twin: `counting_write_path` (the write path).

Which (keyword, arm) counts change at which fact, for the whole history at once: the write path
applies the same rules in Python (`learning.store.counting_write_path`), one batch at a time;
this is their set-based form, which replays millions of facts in seconds (run by
`aggregates.rebuild` and checked against the live tables by `aggregates.count_mismatches`):

* an image contributes once its batch is reviewed AND it is done: shown 1, selected 1 if its
  current state is selected, rejected 1 if rejected (the state comes from the `feedback_state`
  macro of the schema); a favourite (the `favourite_state` macro) counts FAVOURITE_WEIGHT shown
  and selected instead;
* every fact (a click, a Reject all, the moment an image starts to count) may change that
  contribution; a keyword's rows leave out every image (and import) that counted before the
  latest active reset covering the keyword (`reset_floors`; the Python twin is
  `counting_write_path.hidden_keywords`); each change is decayed from the user's review_seq at that moment to the
  current one, summed per image, then expanded to every keyword of the batch plus '*' and to
  each arm the image feeds (`learning.arms`: checkpoint, LoRAs, LoRA combination, CFG, negative
  terms).

Summing per image before the expansion (which multiplies rows ~14x) is what keeps a rebuild of
10 million feedback rows under a minute and ~2 GB (bench/bench_store.py).

Facts are ordered by `ord` (the shared `fact_seq` sequence).
"""

from __future__ import annotations

from learning.arms import FAMILY_SEPARATOR, LORA_SEPARATOR, NO_LORA, STRENGTH_SEPARATOR
from learning.store.counting_write_path import (
    ALL_KEYWORDS, FAVOURITE_MARKS, FAVOURITE_WEIGHT, REVIEW_ACTIONS, STATE_CLICKS)
from learning.store.decay import decayed_counts_sql
from learning.store.schema import sql_list as _sql_list


_CLICKS = _sql_list(STATE_CLICKS)
_MARKS = _sql_list(FAVOURITE_MARKS)

def rebuilt_cte(one_user: bool = False) -> str:
    """`WITH ...` defining `review_seqs(user_id, ord, seq)` (the n-th review of each user),
    `rebuilt_users(user_id, review_seq)` and `rebuilt_stats(user_id, keyword, arm_kind, arm,
    shown, selected, rejected, w_shown, w_selected, w_rejected, review_seq)`: the aggregates
    recomputed from the facts, decayed counts as of each user's current review_seq. Needs
    `$half_life`; `one_user`: only the facts of user `$user_id` (every rule is per user, so this
    is that user's part of the whole rebuild)."""
    mine = "WHERE user_id = $user_id" if one_user else ""
    return f"""
WITH image_facts AS (
    SELECT image_id, batch_id, user_id, checkpoint, loras, cfg, finished_seq FROM images {mine}
),
feedback_facts AS (
    SELECT feedback_id AS ord, batch_id, image_id, action FROM feedback {mine}
),
reset_floors AS (
    -- per user and keyword (NULL: everything), the latest reset not undone
    SELECT user_id, keyword, max(reset_id) AS floor_ord FROM active_resets {mine}
    GROUP BY user_id, keyword
),
batch_reviews AS (
    SELECT batch_id, min(ord) AS reviewed_ord FROM feedback_facts
    WHERE action IN ({_sql_list(REVIEW_ACTIONS)}) GROUP BY batch_id
),
counted_from AS (
    -- A done image of a reviewed batch counts from the later of its finish and the review.
    SELECT i.image_id, greatest(i.finished_seq, r.reviewed_ord) AS ord
    FROM image_facts i JOIN batch_reviews r USING (batch_id)
    WHERE i.finished_seq IS NOT NULL
),
events AS (
    SELECT image_id, ord, action FROM feedback_facts WHERE image_id IS NOT NULL
    UNION ALL
    SELECT i.image_id, f.ord, f.action
    FROM feedback_facts f JOIN image_facts i
      ON i.batch_id = f.batch_id AND i.finished_seq < f.ord
    WHERE f.action = 'reject_all'
    UNION ALL
    SELECT image_id, ord, 'count' FROM counted_from
),
states AS (
    -- The state after each event; events at the same ord (peers) share it, so the duplicate
    -- rows they leave below add zero changes.
    SELECT image_id, ord,
        feedback_state(
            arg_max(action, ord) FILTER (WHERE action IN ({_CLICKS})) OVER w,
            max(ord) FILTER (WHERE action IN ({_CLICKS})) OVER w,
            max(ord) FILTER (WHERE action = 'reject_all') OVER w
        ) AS state,
        favourite_state(arg_max(action, ord) FILTER (WHERE action IN ({_MARKS})) OVER w) AS favourite
    FROM events
    WINDOW w AS (PARTITION BY image_id ORDER BY ord
                 RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
contributions AS (
    -- counting_write_path.contribution: a favourite counts as FAVOURITE_WEIGHT selected images
    SELECT s.image_id, s.ord, coalesce(c.ord <= s.ord, false) AS counted,
           CASE WHEN s.favourite THEN {FAVOURITE_WEIGHT} ELSE 1 END AS weight,
           s.state
    FROM states s LEFT JOIN counted_from c USING (image_id)
),
image_counts AS (
    SELECT image_id, ord,
           CASE WHEN counted THEN weight ELSE 0 END AS n_shown,
           CASE WHEN counted AND state = 'selected' THEN weight ELSE 0 END AS n_selected,
           CASE WHEN counted AND state = 'rejected' THEN 1 ELSE 0 END AS n_rejected
    FROM contributions
),
image_deltas AS (
    SELECT image_id, ord,
        n_shown - coalesce(lag(n_shown) OVER p, 0) AS d_shown,
        n_selected - coalesce(lag(n_selected) OVER p, 0) AS d_selected,
        n_rejected - coalesce(lag(n_rejected) OVER p, 0) AS d_rejected
    FROM image_counts
    WINDOW p AS (PARTITION BY image_id ORDER BY ord)
),
review_seqs AS (
    SELECT b.user_id, r.reviewed_ord AS ord,
           row_number() OVER (PARTITION BY b.user_id ORDER BY r.reviewed_ord) AS seq
    FROM batch_reviews r JOIN batches b USING (batch_id)
),
rebuilt_users AS (
    SELECT user_id, max(seq) AS review_seq FROM review_seqs GROUP BY user_id
),
image_changes AS (
    -- Each change with the user's review_seq when it happened (reviews up to its ord) and now.
    SELECT i.image_id, i.batch_id, i.user_id, coalesce(r.seq, 0) AS seq, c.ord AS counted_ord,
           coalesce(u.review_seq, 0) AS now_seq, d.d_shown, d.d_selected, d.d_rejected
    FROM image_deltas d JOIN image_facts i USING (image_id) JOIN counted_from c USING (image_id)
    ASOF LEFT JOIN review_seqs r ON i.user_id = r.user_id AND d.ord >= r.ord
    LEFT JOIN rebuilt_users u ON i.user_id = u.user_id
    WHERE d.d_shown <> 0 OR d.d_selected <> 0 OR d.d_rejected <> 0
),
image_totals AS (
    -- One row per image: its changes summed, each decayed from its seq to now. Collapsing the
    -- history here, before the keyword x arm expansion multiplies the rows, keeps that cheap.
    SELECT image_id, batch_id, user_id, now_seq, counted_ord,
           sum(d_shown) AS shown, sum(d_selected) AS selected, sum(d_rejected) AS rejected,
           {decayed_counts_sql(("d_shown", "d_selected", "d_rejected"), "now_seq - seq",
                               "$half_life", aggregate="sum")}
    FROM image_changes
    GROUP BY image_id, batch_id, user_id, now_seq, counted_ord
),
image_arms AS (
    -- Each image's totals once per arm it feeds (`learning.arms.image_arms`, spelled the same):
    -- its checkpoint, each distinct LoRA, its LoRA set under the family, checkpoint x CFG unless
    -- the user set the CFG, each distinct negative term.
    SELECT t.*,
        unnest([{{'arm_kind': 'checkpoint', 'arm': i.checkpoint}}]
               || list_transform(list_distinct(list_transform(i.loras, lambda l: l.name)),
                                 lambda n: {{'arm_kind': 'lora', 'arm': n}})
               || [{{'arm_kind': 'lora-combination', 'arm': b.family || '{FAMILY_SEPARATOR}' || coalesce(
                      nullif(array_to_string(list_sort(list_distinct(list_transform(i.loras,
                          lambda l: l.name || '{STRENGTH_SEPARATOR}' || printf('%.2f', l.strength)))),
                          '{LORA_SEPARATOR}'), ''), '{NO_LORA}')}}]
               || CASE WHEN b.cfg_explicit THEN [] ELSE
                      [{{'arm_kind': 'cfg', 'arm': i.checkpoint || '{STRENGTH_SEPARATOR}' || printf('%.1f', i.cfg)}}] END
               || list_transform(list_distinct(list_filter(
                      list_transform(string_split(b.negative_prompt, ','), lambda x: lower(trim(x))),
                      lambda x: x <> '')), lambda x: {{'arm_kind': 'negative-term', 'arm': x}}),
               recursive := true)
    FROM image_totals t JOIN image_facts i USING (image_id) JOIN batches b ON b.batch_id = t.batch_id
),
arm_totals AS (
    -- ... and once per keyword of its batch plus the all-prompts row.
    SELECT a.*, unnest(list_append(b.keywords, '{ALL_KEYWORDS}')) AS keyword
    FROM image_arms a JOIN batches b USING (batch_id)
),
imported_totals AS (
    -- An import counts from the seq it happened at, like any other change.
    SELECT m.user_id, m.keyword, coalesce(u.review_seq, 0) AS now_seq, m.import_id AS counted_ord,
           m.shown, m.selected, m.rejected,
           {decayed_counts_sql(("m.w_shown", "m.w_selected", "m.w_rejected"),
                               "coalesce(u.review_seq, 0) - coalesce(r.seq, 0)", "$half_life")},
           m.arm_kind, m.arm
    FROM (SELECT * FROM imported_stats {mine}) m
    ASOF LEFT JOIN review_seqs r ON m.user_id = r.user_id AND m.import_id >= r.ord
    LEFT JOIN rebuilt_users u ON m.user_id = u.user_id
),
counted_totals AS (
    -- what no active reset hides: counted after the latest reset of the keyword and of everything
    SELECT t.* EXCLUDE (counted_ord)
    FROM (SELECT * FROM arm_totals UNION ALL BY NAME SELECT * FROM imported_totals) t
    LEFT JOIN reset_floors k ON k.user_id = t.user_id AND k.keyword = t.keyword
    LEFT JOIN reset_floors e ON e.user_id = t.user_id AND e.keyword IS NULL
    WHERE t.counted_ord > greatest(coalesce(k.floor_ord, 0), coalesce(e.floor_ord, 0))
),
rebuilt_stats AS (
    SELECT user_id, keyword, arm_kind, arm,
           sum(shown) AS shown, sum(selected) AS selected, sum(rejected) AS rejected,
           sum(w_shown) AS w_shown, sum(w_selected) AS w_selected,
           sum(w_rejected) AS w_rejected, now_seq AS review_seq
    FROM counted_totals
    GROUP BY user_id, keyword, arm_kind, arm, now_seq
)
"""


REBUILT_CTE = rebuilt_cte()
