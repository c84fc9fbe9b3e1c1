"""Annotate wrong SmolLM2 rollouts of `smollm2_rollouts.jsonl` with EpicPRM (adaptive) and Math-Shepherd, SmolLM2 as the completer.

    python data/annotate_smollm2.py            # resumable: rerun to continue a killed run
    python data/annotate_smollm2.py --merge    # only (re)write smollm2_annotations.jsonl from the raw files

Writes the raw, resumable per-method files `smollm2_annot_<method>.jsonl` (`ktae_lab.epicprm.annotate_dataset`
appends one record per solution), then `smollm2_annotations.jsonl`: one record per solution and method with the
hand labels `hand_first_error` / `hand_note` below added. See `smollm2_annotations.md` for the datasheet.
"""
import argparse, json, os, re, sys, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROLLOUTS = HERE / "smollm2_rollouts.jsonl"
OUT = HERE / "smollm2_annotations.jsonl"
METHODS = ("epic_adaptive", "math_shepherd")
# Budgets sized for 2 shared CPU cores (see the datasheet): a 16-rollout pilot, 16 rollouts per probe, 8 per step.
PARAMS = {"epic_adaptive": dict(pilot=16, min_pilot_correct=1), "math_shepherd": dict(n=8)}
MAX_NEW_TOKENS, TEMPERATURE, TOP_P, SEED, STEP_SEP, CHUNK = 64, 0.7, 0.95, 0, "\n", 4

# (group_id, rollout_id, hand_first_error, hand_note): read by hand, steps as `sentence_steps` splits them.
HAND = [
    ("p000", 2, 0, "3 x 5 = 15: multiplies where the problem adds (3 + 5)"),
    ("p000", 4, 1, "3 + 5 = 8 is right; 'he buys 5 more ... 8 + 5 = 13' counts the 5 twice"),
    ("p000", 8, 0, "3 x 5 = 15: multiplies where the problem adds"),
    ("p002", 3, 0, "7 - 6 = 2 subtracts (and 7 - 6 is 1), the problem adds"),
    ("p002", 5, 0, "'6 + 7 = 13 red pens, then 13 - 7 = 2': the sum is right but the step goes on to subtract"),
    ("p002", 6, 0, "'6 + 7 = 13 red pens, then 13 + 2 = 15': adds a 2 from nowhere in the same step"),
    ("p006", 4, 0, "2 cats * 5 dogs = 10: multiplies where the problem adds"),
    ("p021", 0, 0, "'Each box has 1 bottle': misreads 12 bottles per box"),
    ("p021", 11, 1, "first step restates 12 per box correctly; 'then 1 box contains 12 * 2 = 24' is wrong"),
    ("p024", 1, 1, "4 * 15 = 60 is right (odd wording); then multiplies 4 * 60 again (and 4 * 60 is 240, not 200)"),
    ("p024", 5, 0, "'4 times 15 dollars which is 45': wrong product"),
    ("p024", 12, 1, "restating the price is right; '4 * 4 = 16 tickets' multiplies the wrong numbers"),
    ("p008", 3, 0, "8 + 1 = 10: adds 1 instead of 8 (and 8 + 1 is 9)"),
    ("p008", 12, 0, "'he has 8 * 10 = 80 cows': invents a factor 10"),
    ("p013", 2, 1, "first step only restates the plan; 20 - 5 = 11 is wrong"),
    ("p013", 5, 1, "20 - 5 = 15 is right; the next step '#### 1' states a wrong final answer"),
    ("p011", 3, 2, "10 / 2 = 5 girls and 5 boys are right; '5 + 5 = 10 girls' calls all children girls"),
    ("p011", 11, 0, "'one-third of a girl', 10 / 3 = 3: half is not a third"),
    ("p010", 1, 0, "'3 x $1 = $3': uses 1 dollar per pencil instead of 2"),
    ("p012", 14, 0, "'A spider has 4 legs': the problem says 8"),
]

_SENT = re.compile(r"(?<=[.!?])[ \t]+(?=[A-Z#0-9])|\n+")

def sentence_steps(text):
    "Steps of a SmolLM2 answer: its sentences and lines (must match `ktae_lab.credit.sentence_steps`)."
    return [s.strip() for s in _SENT.split(text) if s.strip()]

def solutions():
    import pandas as pd
    rows = {(r["group_id"], r["rollout_id"]): r for r in map(json.loads, open(ROLLOUTS, encoding="utf-8"))}
    out = []
    for g, i, hand, note in HAND:
        r = rows[(g, i)]
        assert r["reward"] == 0 and not r.get("truncated"), (g, i)
        out.append(dict(id=f"{g}-r{i}", question=r["prompt"], steps=sentence_steps(r["response"]),
                        reference_answer=r["reference_answer"], correct=False, response=r["response"],
                        hand_first_error=hand, hand_note=note))
    return pd.DataFrame(out)

def merge(df):
    from ktae_lab.epicprm import read_annotations
    hand = df.set_index("id")
    recs = []
    for m in METHODS:
        for r in read_annotations(HERE / f"smollm2_annot_{m}.jsonl"):
            r["hand_first_error"] = int(hand.loc[r["id"], "hand_first_error"])
            r["hand_note"] = hand.loc[r["id"], "hand_note"]
            recs.append(r)
    with open(OUT, "w", encoding="utf-8") as f:
        for r in recs: f.write(json.dumps(r) + "\n")
    print(f"wrote {len(recs)} records to {OUT}")

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--merge", action="store_true", help="only merge the raw files with the hand labels")
    ap.add_argument("--limit", type=int, default=len(HAND), help="annotate the first N solutions")
    a = ap.parse_args(argv)
    df = solutions().iloc[:a.limit]
    if not a.merge:
        import torch
        torch.set_num_threads(1)
        from ktae_lab.sampling import load_model, DEFAULT_SYSTEM_PROMPT
        from ktae_lab.completers import TransformersCompleter
        from ktae_lab.epicprm import annotate_dataset
        lm, tok, name = load_model("smollm2")
        comp = TransformersCompleter(lm, tok, max_new_tokens=MAX_NEW_TOKENS, temperature=TEMPERATURE, top_p=TOP_P,
                                     batch_size=32, system_prompt=DEFAULT_SYSTEM_PROMPT, step_sep=STEP_SEP, seed=SEED)
        for stop in range(CHUNK, len(df) + CHUNK, CHUNK):  # both methods advance together, so a cut run stays balanced
            for m in METHODS:
                t = time.time()
                annotate_dataset(df.iloc[:stop], comp, HERE / f"smollm2_annot_{m}.jsonl", m, progress=False, **PARAMS[m])
                print(f"{time.strftime('%H:%M:%S')} {m} solutions 0..{min(stop, len(df))} done in {time.time() - t:.0f}s", flush=True)
    merge(df)

if __name__ == "__main__": sys.exit(main())
