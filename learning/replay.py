"""The counting rules as SQL, for the rebuild: which (keyword, arm) counts change at which fact.

The write path applies the same rules in Python (`learning.feedback_rules`), one batch at a
time; this is their set-based form, which replays millions of facts in seconds:

* an image contributes once its batch is reviewed AND it is done: shown 1, selected 1 if its
  current state is selected, rejected 1 if rejected (the state comes from the `feedback_state`
  macro of the schema);
* every fact (a click, a Reject all, the review, a late finish) yields the change of that
  contribution, expanded to every keyword of the batch plus '*' and to the image's checkpoint
  and each of its LoRAs.

Facts are ordered by `ord` (the shared `fact_seq` sequence).
"""

from __future__ import annotations

from learning.feedback_rules import ALL_KEYWORDS, CLICK_ACTIONS, REVIEW_ACTIONS

def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


_CLICKS = _sql_list(CLICK_ACTIONS)

# `WITH ...` defining `review_seqs(user_id, ord, seq)` (the n-th review of each user) and
# `arm_deltas(user_id, keyword, arm_kind, arm, ord, seq, d_shown, d_selected, d_rejected)` over
# every fact, `seq` being the user's review_seq when the change happened.
ARM_DELTAS_CTE = f"""
WITH image_facts AS (
    SELECT image_id, batch_id, user_id, checkpoint, loras, finished_seq FROM images
),
feedback_facts AS (
    SELECT feedback_id AS ord, batch_id, image_id, action FROM feedback
),
batch_reviews AS (
    SELECT batch_id, min(ord) AS reviewed_ord FROM feedback_facts
    WHERE action IN ({_sql_list(REVIEW_ACTIONS)}) GROUP BY batch_id
),
events AS (
    SELECT image_id, ord, action FROM feedback_facts WHERE image_id IS NOT NULL
    UNION ALL
    SELECT i.image_id, f.ord, f.action
    FROM feedback_facts f JOIN image_facts i
      ON i.batch_id = f.batch_id AND i.finished_seq < f.ord
    WHERE f.action = 'reject_all'
    UNION ALL
    SELECT image_id, finished_seq, 'finish' FROM image_facts WHERE finished_seq IS NOT NULL
    UNION ALL
    SELECT i.image_id, r.reviewed_ord, 'review'
    FROM image_facts i JOIN batch_reviews r USING (batch_id)
),
states AS (
    SELECT DISTINCT image_id, ord,
        feedback_state(
            arg_max(action, ord) FILTER (WHERE action IN ({_CLICKS})) OVER w,
            max(ord) FILTER (WHERE action IN ({_CLICKS})) OVER w,
            max(ord) FILTER (WHERE action = 'reject_all') OVER w
        ) AS state
    FROM events
    WINDOW w AS (PARTITION BY image_id ORDER BY ord
                 RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
contributions AS (
    SELECT s.image_id, s.ord, c.counted,
           (c.counted AND s.state = 'selected') AS is_selected,
           (c.counted AND s.state = 'rejected') AS is_rejected
    FROM states s
    JOIN image_facts i USING (image_id)
    LEFT JOIN batch_reviews r USING (batch_id),
    LATERAL (SELECT coalesce(i.finished_seq <= s.ord AND r.reviewed_ord <= s.ord, false)
             AS counted) c
),
image_deltas AS (
    SELECT image_id, ord,
        counted::INTEGER - coalesce(lag(counted::INTEGER) OVER p, 0) AS d_shown,
        is_selected::INTEGER - coalesce(lag(is_selected::INTEGER) OVER p, 0) AS d_selected,
        is_rejected::INTEGER - coalesce(lag(is_rejected::INTEGER) OVER p, 0) AS d_rejected
    FROM contributions
    WINDOW p AS (PARTITION BY image_id ORDER BY ord)
),
review_seqs AS (
    SELECT b.user_id, r.reviewed_ord AS ord,
           row_number() OVER (PARTITION BY b.user_id ORDER BY r.reviewed_ord) AS seq
    FROM batch_reviews r JOIN batches b USING (batch_id)
),
arm_set_changes AS (
    SELECT i.batch_id, i.user_id, i.checkpoint,
           list_sort(list_distinct(list_transform(i.loras, lambda l: l.name))) AS lora_names,
           d.ord, sum(d.d_shown) AS d_shown, sum(d.d_selected) AS d_selected,
           sum(d.d_rejected) AS d_rejected
    FROM image_deltas d JOIN image_facts i USING (image_id)
    WHERE d.d_shown <> 0 OR d.d_selected <> 0 OR d.d_rejected <> 0
    GROUP BY ALL
),
arm_set_deltas AS (
    -- The user's review_seq when the change happened: reviews up to and including its ord.
    -- Joined before the keyword x arm expansion, which multiplies the rows tenfold.
    SELECT c.*, coalesce(r.seq, 0) AS seq
    FROM arm_set_changes c
    ASOF LEFT JOIN review_seqs r ON c.user_id = r.user_id AND c.ord >= r.ord
),
keyword_deltas AS (
    SELECT a.*, unnest(list_append(b.keywords, '{ALL_KEYWORDS}')) AS keyword
    FROM arm_set_deltas a JOIN batches b USING (batch_id)
),
arm_deltas AS (
    SELECT user_id, keyword, ord, seq, d_shown, d_selected, d_rejected,
        unnest(list_prepend({{'arm_kind': 'checkpoint', 'arm': checkpoint}},
                            list_transform(lora_names,
                                           lambda n: {{'arm_kind': 'lora', 'arm': n}})),
               recursive := true)
    FROM keyword_deltas
)
"""
