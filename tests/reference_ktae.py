"""A deliberately slow, obviously correct KTAE: one group at a time, one token at a time, plain Python + scipy.

It follows the KTAE paper (arXiv 2505.16826 §3) and the released code's formulas line by line and shares no code with ktae_lab (only scipy's Fisher test)."""
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


def released_float32_advantages(responses, mask, rewards, labels, ignore_ids=(), eps=1e-6, k1=2.0, b=0.5):
    """The released code's final advantage, re-derived in float32 one group at a time (shares no code with ktae_lab).

    Written from the release's description (xiaolizh1/KTAE): GRPO part from torch.mean / torch.std of the group's
    float32 rewards; per distinct token of the group, presence counts as float32, Fisher's p summed on the grid
    k = 0 .. w-1 with w = 1 + the group's largest min(R1, C1) and no tie tolerance, F = exp(-2p) unless p == 1.0;
    information gain as H(pc) + H(pe) - (a+b)/N [H(a/(a+b)) + H(b/(a+b))] - (c+d)/N [...] in float32; half Cohen's h
    with 1e-10 in the denominators; BM25 tf with the length normaliser computed as a Python float; K = 2(sigmoid - 1/2)."""
    import torch
    f32 = torch.float32
    B, L = len(responses), len(responses[0])
    out = [[0.0] * L for _ in range(B)]

    def lcomb(n, k): return torch.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)

    def plogp(p): return -p * torch.where(p > 0, torch.log2(p), torch.tensor(0.0, dtype=f32))

    for g in dict.fromkeys(labels):
        rows = [i for i in range(B) if labels[i] == g]
        r = torch.tensor([float(rewards[i]) for i in rows], dtype=f32)
        mean, std = (torch.mean(r), torch.std(r)) if len(rows) > 1 else (torch.tensor(0.0), torch.tensor(1.0))
        adv = (r - mean) / (std + eps)
        correct = [float(rewards[i]) > 0.0 for i in rows]
        seqs = [[int(responses[i][t]) for t in range(L) if mask[i][t]] for i in rows]
        nT = sum(correct); nF = len(rows) - nT
        K = {}
        if nT and nF:
            ids = sorted({v for s in seqs for v in s})
            sets = [set(s) for s in seqs]
            a = torch.tensor([sum(1 for st, ok in zip(sets, correct) if ok and v in st) for v in ids], dtype=f32)
            bb = torch.tensor([sum(1 for st, ok in zip(sets, correct) if not ok and v in st) for v in ids], dtype=f32)
            c, d = nT - a, nF - bb
            R1, C1 = a + bb, a + c
            N = R1 + (c + d)
            kmin, kmax = torch.clamp(R1 + C1 - N, min=0), torch.minimum(R1, C1)
            w = int(kmax.max().item()) + 1
            k = torch.arange(w, dtype=f32).repeat(len(ids), 1)
            ok = (k >= kmin[:, None]) & (k <= kmax[:, None])
            pk = torch.exp(lcomb(C1[:, None], k) + lcomb(N[:, None] - C1[:, None], R1[:, None] - k) - lcomb(N[:, None], R1[:, None])) * ok.float()
            pobs = torch.exp(lcomb(C1, a) + lcomb(N - C1, R1 - a) - lcomb(N, R1))
            p = torch.sum(torch.where((pk <= pobs[:, None]) & ok, pk, torch.tensor(0.0)), dim=1)
            F = torch.where(p != 1.0, torch.exp(-2 * p), torch.tensor(0.0))
            def split(x1, x2):
                t = x1 + x2
                return torch.where(t > 0, plogp(x1 / t) + plogp(x2 / t), torch.tensor(0.0))
            ig = plogp((a + c) / N) + plogp((bb + d) / N) - (((a + bb) / N) * split(a, bb) + ((c + d) / N) * split(c, d))
            p1 = torch.clamp(a / (a + c + 1e-10), 0, 1); p2 = torch.clamp(bb / (bb + d + 1e-10), 0, 1)
            h = torch.asin(torch.sqrt(p1)) - torch.asin(torch.sqrt(p2))
            Tc = sum(len(s) for s, ok in zip(seqs, correct) if ok); Tw = sum(len(s) for s, ok in zip(seqs, correct) if not ok)
            avg = (Tc + Tw) / 2
            def tf(counts, T):
                f = torch.tensor(counts, dtype=f32) / T
                return f * (k1 + 1) / (f + k1 * (1 - b + b * (T / avg)))
            tfc = tf([sum(s.count(v) for s, ok in zip(seqs, correct) if ok) for v in ids], Tc)
            tfw = tf([sum(s.count(v) for s, ok in zip(seqs, correct) if not ok) for v in ids], Tw)
            x = h + (tfc / (tfw + 1e-5) - tfw / (tfc + 1e-5))
            raw = ((1.0 * F + 1.0 * ig) * x) / 2.0
            # the release applies sigmoid to one vocabulary-long tensor: (nearly) every id takes the CPU's vectorised
            # path, whose rounding differs from the scalar tail path; padding to whole SIMD blocks does the same here
            pad = (-len(ids)) % 64
            Kv = (torch.sigmoid(torch.cat([raw, torch.zeros(pad)]))[:len(ids)] - 0.5) * 2 * 1.0
            K = {v: (0.0 if v in ignore_ids else Kv[j]) for j, v in enumerate(ids)}
        for j, i in enumerate(rows):
            for t in range(L):
                if mask[i][t]: out[i][t] = (adv[j] + K.get(int(responses[i][t]), torch.tensor(0.0))).item()
    return torch.tensor(out, dtype=f32)
