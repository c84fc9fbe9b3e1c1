"""Build data/sample_rollouts.jsonl: hand-written rollouts for grade-school word problems.

Deterministic: `python data/make_sample.py` rewrites the file byte for byte. The word-level tokenizer below exists
only to give the sample token ids; nothing in ktae_lab depends on it.
"""
import json, re
from pathlib import Path

OUT = Path(__file__).resolve().parent / "sample_rollouts.jsonl"
PAD_ID = 0      # reserved, never produced by the tokenizer
ID_OFFSET = 10  # first vocabulary id; ids 1..9 stay unused
EOS = "<eos>"
TOKEN_RE = re.compile(r"\d+|[A-Za-z]+|[^\sA-Za-z\d]")  # numbers, words, single punctuation marks
ANSWER_RE = re.compile(r"The answer is (-?\d+)\.\s*$")

# (prompt, reference answer, [(response, note on the mistake or None), ...]); every group has 8 rollouts.
PROBLEMS = [
    ("Tom has 12 apples. He buys 7 more apples and then gives 5 apples to his sister. "
     "How many apples does Tom have now?", "14", [
        ("Tom starts with 12 apples. He buys 7 more, so 12 + 7 = 19. He gives away 5, so 19 - 5 = 14. The answer is 14.", None),
        ("First add the apples he buys: 12 + 7 = 19. Then subtract the 5 he gives to his sister: 19 - 5 = 14. The answer is 14.", None),
        ("12 apples plus 7 apples is 19 apples. Giving 5 apples away leaves 19 - 5 = 14 apples. The answer is 14.", None),
        ("Tom has 12 + 7 = 19 apples after buying. After giving 5 to his sister he has 19 - 5 = 14. The answer is 14.", None),
        ("Start: 12. Buy 7: 12 + 7 = 19. Give 5: 19 - 5 = 14. The answer is 14.", None),
        ("Tom starts with 12 apples. He buys 7 more, so 12 + 7 = 19. He gives 5 to his sister, so 19 + 5 = 24. The answer is 24.",
         "adds the 5 apples given away instead of subtracting them"),
        ("First add the apples he buys: 12 + 7 = 19. Then add the 5 for his sister: 19 + 5 = 24. The answer is 24.",
         "adds the 5 apples given away instead of subtracting them"),
        ("12 apples plus 7 apples is 19 apples. With the 5 apples for his sister that makes 19 + 5 = 24 apples. The answer is 24.",
         "adds the 5 apples given away instead of subtracting them"),
    ]),
    ("A baker makes 36 muffins. She puts them into boxes of 4 muffins each. How many boxes does she fill?", "9", [
        ("She has 36 muffins and each box holds 4. 36 / 4 = 9. The answer is 9.", None),
        ("Divide the muffins by the box size: 36 divided by 4 is 9. The answer is 9.", None),
        ("Each box takes 4 muffins. 4 times 9 = 36, so 9 boxes are filled. The answer is 9.", None),
        ("36 muffins / 4 muffins per box = 9 boxes. The answer is 9.", None),
        ("She has 32 muffins and each box holds 4. 32 / 4 = 8. The answer is 8.", "copies 36 as 32"),
        ("Divide the muffins by the box size: 32 divided by 4 is 8. The answer is 8.", "copies 36 as 32"),
        ("Each box takes 4 muffins. 4 times 8 = 32, so 8 boxes are filled. The answer is 8.", "copies 36 as 32"),
        ("32 muffins / 4 muffins per box = 8 boxes. The answer is 8.", "copies 36 as 32"),
    ]),
    ("A pencil costs 3 dollars. How much do 6 pencils cost, in dollars?", "18", [
        ("One pencil costs 3 dollars, so 6 pencils cost 6 times 3 = 18 dollars. The answer is 18.", None),
        ("Multiply the price by the number of pencils: 3 * 6 = 18. The answer is 18.", None),
        ("6 pencils at 3 dollars each is 3 + 3 + 3 + 3 + 3 + 3 = 18 dollars. The answer is 18.", None),
        ("One pencil costs 3 dollars, so 6 pencils cost 6 plus 3 = 9 dollars. The answer is 9.", "adds instead of multiplying"),
        ("Add the price and the number of pencils: 3 + 6 = 9. The answer is 9.", "adds instead of multiplying"),
        ("The pencils cost 3 dollars and there are 6 of them, so 3 + 6 = 9 dollars. The answer is 9.", "adds instead of multiplying"),
        ("3 dollars plus 6 pencils gives 9 dollars. The answer is 9.", "adds instead of multiplying"),
        ("Combine 3 and 6: 3 + 6 = 9. The answer is 9.", "adds instead of multiplying"),
    ]),
    ("Sara reads 15 pages on Monday and twice as many pages on Tuesday. "
     "How many pages does she read in the two days?", "45", [
        ("On Tuesday she reads twice 15, which is 2 * 15 = 30 pages. In total 15 + 30 = 45 pages. The answer is 45.", None),
        ("Tuesday: 15 times 2 = 30. Both days: 15 + 30 = 45. The answer is 45.", None),
        ("Twice as many as 15 is 30. Adding Monday and Tuesday gives 15 + 30 = 45. The answer is 45.", None),
        ("She reads 15 pages and then 30 pages, so 45 pages in all. The answer is 45.", None),
        ("On Tuesday she reads twice 15, which is 2 * 15 = 30 pages. The answer is 30.", "forgets to add Monday's pages"),
        ("Twice as many as 15 is 30. The answer is 30.", "forgets to add Monday's pages"),
        ("Tuesday is 2 more than Monday: 15 + 2 = 17 pages. The answer is 17.", "reads twice as 2 more"),
        ("She reads 15 pages and then 2 more, so 15 + 2 = 17 pages. The answer is 17.", "reads twice as 2 more"),
    ]),
    ("There are 9 birds on a tree. 4 birds fly away. How many birds are left on the tree?", "5", [  # all correct
        ("9 - 4 = 5. The answer is 5.", None),
        ("There were 9 birds and 4 flew away, so 9 - 4 = 5 birds are left. The answer is 5.", None),
        ("Take 4 away from 9 to get 5. The answer is 5.", None),
        ("Start with 9 birds. After 4 leave, 5 remain. The answer is 5.", None),
        ("Subtract the birds that fly away: 9 - 4 = 5. The answer is 5.", None),
        ("9 birds minus 4 birds is 5 birds. The answer is 5.", None),
        ("Counting down from 9 four times gives 8, 7, 6, 5. The answer is 5.", None),
        ("The tree keeps 9 - 4 = 5 birds. The answer is 5.", None),
    ]),
]


def tokenize(text):
    "Split `text` into numbers, words and single punctuation marks."
    return TOKEN_RE.findall(text)


def build_vocab(texts):
    "Map every distinct token to an id, in sorted order from ID_OFFSET; EOS comes last."
    words = sorted({t for text in texts for t in tokenize(text)})
    vocab = {w: ID_OFFSET + i for i, w in enumerate(words)}
    vocab[EOS] = ID_OFFSET + len(words)
    return vocab


def records():
    "Yield one schema-v1 record per rollout."
    vocab = build_vocab(resp for _, _, rollouts in PROBLEMS for resp, _ in rollouts)
    for g, (prompt, ref, rollouts) in enumerate(PROBLEMS):
        assert len(rollouts) == 8, (g, len(rollouts))
        for r, (resp, mistake) in enumerate(rollouts):
            answer = ANSWER_RE.search(resp).group(1)
            correct = answer == ref
            assert correct == (mistake is None), (g, r, answer, ref)
            tokens = tokenize(resp) + [EOS]
            yield {"group_id": f"sample-{g}", "rollout_id": r, "prompt": prompt, "response": resp,
                   "token_ids": [vocab[t] for t in tokens], "tokens": tokens, "response_mask": [1] * len(tokens),
                   "reward": 1.0 if correct else 0.0, "correct": correct, "reference_answer": ref,
                   "extracted_answer": answer, "truncated": False, "model": "hand-written",
                   "tokenizer": "word-level (data/make_sample.py)", "eos_token_id": vocab[EOS],
                   "pad_token_id": PAD_ID, "sampling": None,
                   "meta": {"mistake": mistake} if mistake else {}, "schema_version": "1"}


if __name__ == "__main__":
    lines = [json.dumps(rec, ensure_ascii=False) for rec in records()]
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} rollouts to {OUT}")
