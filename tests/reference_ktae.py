"""A deliberately slow, obviously correct KTAE: one group at a time, one token at a time, plain Python + scipy.

It follows ktae.md §2 line by line and shares no code with ktae_lab (only scipy's Fisher test)."""
import math
from scipy.stats import fisher_exact


def _h2(q):
    return sum(-x * math.log2(x) for x in (q, 1 - q) if x > 0)


def reference_token_stats(seqs, correct, alpha=1.0, beta=1.0, gamma=1.0, top=1.0, use_fisher=True, use_ig=True,
                          use_h=True, use_tf=True, p_transform="exp", tf_kind="bm25_ratio", k1=2.0, b=0.5,
                          tf_eps=1e-5, h_eps=1e-10, half_h=True, ignore_ids=()):
    """{token id: dict of statistics and K} for one group: `seqs` = list of valid-token lists, `correct` = bools."""
    nT = sum(correct); nF = len(correct) - nT
    if nT == 0 or nF == 0:
        return {v: dict(K=0.0) for s in seqs for v in s}
    T_c = sum(len(s) for s, ok in zip(seqs, correct) if ok)
    T_w = sum(len(s) for s, ok in zip(seqs, correct) if not ok)
    avg = (T_c + T_w) / 2
    out = {}
    for v in sorted({v for s in seqs for v in s}):
        a = sum(1 for s, ok in zip(seqs, correct) if ok and v in s)
        bb = sum(1 for s, ok in zip(seqs, correct) if not ok and v in s)
        c, d = nT - a, nF - bb
        N = a + bb + c + d
        p = fisher_exact([[a, bb], [c, d]], alternative="two-sided").pvalue
        if p == 1.0: F = 0.0
        else: F = math.exp(-2 * p) if p_transform == "exp" else 1 - p
        ig = _h2((a + c) / N) - ((a + bb) / N) * (_h2(a / (a + bb)) if a + bb else 0) - ((c + d) / N) * (_h2(c / (c + d)) if c + d else 0)
        ig = max(ig, 0.0)
        p1 = min(max(a / (a + c + h_eps), 0), 1); p2 = min(max(bb / (bb + d + h_eps), 0), 1)
        h = math.asin(math.sqrt(p1)) - math.asin(math.sqrt(p2))
        if not half_h: h *= 2
        cnt_c = sum(s.count(v) for s, ok in zip(seqs, correct) if ok)
        cnt_w = sum(s.count(v) for s, ok in zip(seqs, correct) if not ok)

        def tf(cnt, T):
            f = cnt / T if T else 0.0
            return f * (k1 + 1) / (f + k1 * (1 - b + b * T / avg))
        tfc, tfw = tf(cnt_c, T_c), tf(cnt_w, T_w)
        if tf_kind == "bm25_ratio": term = tfc / (tfw + tf_eps) - tfw / (tfc + tf_eps)
        else: term = (tfc - tfw) / (tfc + tfw) if tfc + tfw > 0 else 0.0
        x = (h if use_h else 0.0) + (gamma * term if use_tf else 0.0)
        al = alpha if use_fisher else 0.0; be = beta if use_ig else 0.0
        raw = (al * F + be * ig) * x / (al + be) if al + be else 0.0
        K = 0.0 if v in ignore_ids else top * math.tanh(raw / 2)
        out[v] = dict(a=a, b=bb, c=c, d=d, p=p, F=F, IG=ig, h=h, tf_c=tfc, tf_w=tfw, x=x, raw=raw, K=K)
    return out


def reference_key_token_values(responses, mask, rewards, labels, threshold=0.0, **cfg):
    """K[B][L] as nested lists: loop over groups, then over rollouts and tokens."""
    B = len(responses); L = len(responses[0]) if B else 0
    K = [[0.0] * L for _ in range(B)]
    for g in dict.fromkeys(labels):
        rows = [i for i in range(B) if labels[i] == g]
        seqs = [[responses[i][t] for t in range(L) if mask[i][t]] for i in rows]
        correct = [rewards[i] > threshold for i in rows]
        stats = reference_token_stats(seqs, correct, **cfg)
        for i in rows:
            for t in range(L):
                if mask[i][t]: K[i][t] = stats[responses[i][t]]["K"]
    return K


def reference_grpo(rewards, labels, eps=1e-6):
    out = []
    for i, r in enumerate(rewards):
        grp = [rewards[j] for j in range(len(rewards)) if labels[j] == labels[i]]
        if len(grp) == 1: mean, std = 0.0, 1.0
        else:
            mean = sum(grp) / len(grp)
            std = math.sqrt(sum((x - mean) ** 2 for x in grp) / (len(grp) - 1))
        out.append((r - mean) / (std + eps))
    return out
