import json, statistics, sys
sys.path.insert(0, 'src')
from kgsampler.report import paired_t_test
rows = [json.loads(l) for l in open('multirun/advir_nmrn/lastfm.jsonl')]
rename = {'AdvIR (APR + AdvIR)': 'AdvIR (APR + AdvIR) epsilon=0.5', 'NMRN': 'NMRN margin=1.0'}
g = {}
for r in rows:
    g.setdefault(rename.get(r['name'], r['name']), []).append(r)
ms = lambda xs: f'{statistics.fmean(xs):.4f} ± {statistics.stdev(xs):.4f}'
ref = {r['seed']: r['test']['ndcg@20'] for r in g['DNS-8']}
rns = {r['seed']: statistics.median(r['epoch_seconds']) for r in g['RNS']}
order = ['RNS', 'DNS-8', 'Adversarial'] + sorted(k for k in g if k.startswith('AdvIR')) + sorted(k for k in g if k.startswith('NMRN')) + ['APR + RNS']
best = {}
for k in g:
    fam = k.split(' ')[0]
    v = statistics.fmean(r['valid']['ndcg@20'] for r in g[k])
    if fam in ('AdvIR', 'NMRN') and (fam not in best or v > best[fam][0]):
        best[fam] = (v, k)
print('| row | n | valid ndcg@20 | test ndcg@20 | vs DNS-8 | p vs DNS-8 | test recall@20 | best epoch | false negatives | generator gain, last epoch | epoch time / RNS |')
print('|---|---|---|---|---|---|---|---|---|---|---|')
for k in order:
    rs = sorted(g[k], key=lambda r: r['seed'])
    t = [r['test']['ndcg@20'] for r in rs]
    p = '-' if k == 'DNS-8' else f"{paired_t_test(t, [ref[r['seed']] for r in rs]):.3f}"
    if p != '-' and float(p) < 0.05: p += '*'
    mark = ' <-' if any(b[1] == k for b in best.values()) else ''
    gain = [r['sampler_gain_first_last'][1] for r in rs if r['sampler_gain_first_last'][1] is not None]
    gs = f'{statistics.fmean(gain):.4f}' if gain else '-'
    ratio = statistics.fmean(statistics.median(r['epoch_seconds']) / rns[r['seed']] for r in rs)
    print(f"| {k}{mark} | {len(rs)} | {ms([r['valid']['ndcg@20'] for r in rs])} | {ms(t)} | "
          f"{statistics.fmean(t) / statistics.fmean(ref.values()) - 1:+.1%} | {p} | "
          f"{ms([r['test']['recall@20'] for r in rs])} | {statistics.fmean(r['best_epoch'] for r in rs):.1f} | "
          f"{statistics.fmean(r['false_negative_rate'] for r in rs):.2%} | {gs} | {ratio:.2f}x |")
