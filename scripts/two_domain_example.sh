#!/usr/bin/env bash
# Specialize-then-unify on a two-domain workspace, end to end on CPU with tiny steps (docs/domains.md).
#   scripts/two_domain_example.sh [WORKDIR]        (default: /tmp/recot-two-domains; removed and rebuilt)
# 1. two Amazon-2023-format categories (Books, Movies), written here like the tests' fixtures
# 2. ingest both into one workspace (domains books / movies), build SIDs, write R3 sliding-window prompts
# 3. RL per domain (--domain) -> two specialists; 4. RFT sampling each prompt from its domain's specialist;
# 5. multi-teacher distillation with both domains inside each batch; 6. eval per domain and mode.
set -euo pipefail
W=${1:-/tmp/recot-two-domains}
RECOT=${RECOT:-recot}
PY=${PY:-python}
rm -rf "$W" && mkdir -p "$W/raw"
WS="$W/ws"

"$PY" - "$W/raw" <<'EOF'
import json, random, sys
from pathlib import Path
out = Path(sys.argv[1]); rnd = random.Random(0)
cats = {"Books": ["novel", "history", "poetry", "science"], "Movies": ["comedy", "drama", "western", "horror"]}
for cat, topics in cats.items():
    items = [(f"{cat[0]}{i:03d}", f"{topics[i % 4].title()} {cat[:-1]} {i}") for i in range(24)]
    meta = [{"main_category": cat, "title": t, "average_rating": 4.0, "rating_number": 3, "features": [],
             "description": [f"A {t.lower()}."], "price": None, "images": [], "videos": [], "store": "Acme",
             "categories": [cat, t.split()[0]], "details": {}, "parent_asin": a, "bought_together": None}
            for a, t in items]
    reviews = []
    for u in range(12):
        fav = u % 4                                   # each user mostly likes one topic, in time order
        seq = [i for i in range(24) if i % 4 == fav] + rnd.sample(range(24), 3)
        for k, i in enumerate(seq):
            reviews.append({"rating": 5.0, "title": "t", "text": "x", "images": [], "asin": items[i][0],
                            "parent_asin": items[i][0], "user_id": f"{cat[0]}U{u:02d}",
                            "timestamp": (1_600_000_000 + u * 10_000 + k * 100) * 1000, "helpful_vote": 0,
                            "verified_purchase": True})
    (out / f"{cat}.jsonl").write_text("\n".join(json.dumps(r) for r in reviews) + "\n")
    (out / f"meta_{cat}.jsonl").write_text("\n".join(json.dumps(m) for m in meta) + "\n")
EOF

$RECOT ingest amazon "$W/raw/Books.jsonl" --meta "$W/raw/meta_Books.jsonl" --domain books -w "$WS"
$RECOT ingest amazon "$W/raw/Movies.jsonl" --meta "$W/raw/meta_Movies.jsonl" --domain movies -w "$WS"
$RECOT sids build -w "$WS" --codebook-size 4 --no-progress
"$PY" -c "from storage.workspace import Workspace; from trainers.windows import write_r3_windows; \
print(write_r3_windows(Workspace.open('$WS'), 'r3_windows', history_format='sid_title').ref)"

C=configs/train
for D in books movies; do   # 3. one RL specialist per domain (lineage records the domain); rollouts are the
  # beams of a SID-constrained beam search (MiniOneRec), so the untrained base model already gets rank rewards
  $RECOT train rl -c $C/rl.cpu.yaml --domain $D prompts=windows max_steps=2 max_completion_length=12 \
    rollout=beam "rewards=[beam_rank,prefix_partial]" --out "$W/rl_$D" -w "$WS"
done
# 4. RFT: each prompt sampled from its domain's specialist (constrained sampler: answers are catalog SIDs),
#    samples whose first two SID levels are right kept, then SFT of the base model on them
$RECOT train rft -c $C/rft.cpu.yaml --dataset r3_windows --specialists "books=$W/rl_books,movies=$W/rl_movies" \
  sampler=constrained n=4 max_samples=16 min_reward=0.5 max_steps=2 --out "$W/rft" -w "$WS" \
  || echo "rft kept nothing this time (tiny untrained specialists); continuing"
# 5. distillation: both domains in each batch, each row taught by its domain's specialist
$RECOT train distill -c $C/distill.cpu.yaml --dataset r3_windows route_by=domain \
  "teachers={books: $W/rl_books, movies: $W/rl_movies}" max_samples=16 per_device_train_batch_size=4 \
  max_steps=2 --out "$W/student" -w "$WS"
# 6. one row per domain and mode
$RECOT eval -m "$W/student" --both --by-domain --k 1,5 --think-budget 16 --no-baselines -w "$WS"
