"""Writes the compact leaderboard of docs/leaderboard.md (between its
``<!-- leaderboard:begin -->`` / ``<!-- leaderboard:end -->`` markers) from
the "Chosen settings" tables of ``benchmarks/results/leaderboard_*.md``
(written by ``benchmarks/leaderboard.sh``), so that the docs never retype a
number.

    python benchmarks/leaderboard_summary.py [--check]

``--check`` exits with status 1 when the docs are out of date.
"""
import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / 'docs' / 'leaderboard.md'
BEGIN, END = '<!-- leaderboard:begin -->', '<!-- leaderboard:end -->'
NAMES = {'rns': 'RNS', 'pns': 'PNS', 'dns': 'DNS-8', 'dns_mn': 'DNS(M,N)',
         'softmax': 'Softmax(rho,N)', 'ahns': 'AHNS', 'srns': 'SRNS',
         'randomwalk': 'RandomWalk (RWS)', 'adversarial': 'Adversarial (IRGAN)',
         'advir': 'AdvIR (+APR)', 'nmrn': 'NMRN', 'dens': 'DENS',
         'mixgcf': 'MixGCF', 'kgpolicy': 'KGPolicy'}

#: the knob each entry name encodes (conf/leaderboard/<sampler>-<knob><value>)
KNOBS = {'pns': 'alpha', 'dns_mn': 'M', 'softmax': 'rho', 'ahns': 'beta',
         'srns': 'temperature', 'randomwalk': 'steps', 'adversarial': 'M',
         'advir': 'epsilon', 'nmrn': 'margin', 'dens': 'warm-up',
         'mixgcf': 'M'}


def chosen_rows(path: Path):
    """(header, rows as dicts) of the file's "Chosen settings" table."""
    text = path.read_text()
    part = text.split('## Chosen settings', 1)[1].split('##', 1)[0]
    lines = [ln for ln in part.splitlines() if ln.startswith('|')]
    header = [c.strip() for c in lines[0].strip('|').split('|')]
    rows = [dict(zip(header, (c.strip() for c in ln.strip('|').split('|'))))
            for ln in lines[2:]]
    return rows


def short(cell: str) -> str:
    """'0.2255 ± 0.0038 (p=0.116)' -> ('0.2255 ± 0.0038', 'p=0.116')."""
    m = re.match(r'(\S+ ± \S+)(?: \(p=([\d.]+\*?)\))?', cell)
    return m.group(1) if m else cell, (m.group(2) if m and m.group(2)
                                       else '')


def summary() -> str:
    files = sorted((ROOT / 'benchmarks' / 'results').glob('leaderboard_*-*.md'))
    out = []
    for path in files:
        dataset, rec = path.stem[len('leaderboard_'):].rsplit('-', 1)
        # leaderboard_<dataset>-scratch-<rec>.md: the board trained from scratch (SCRATCH=1)
        if dataset.endswith('-scratch'):
            dataset = dataset[:-len('-scratch')] + ' from scratch'
        rows = chosen_rows(path)
        out.append(f'**{dataset}, {"MF" if rec == "mf" else "LightGCN"}** '
                   f'(`benchmarks/results/{path.name}`)\n')
        out.append('| sampler | chosen | test NDCG@20 | vs DNS-8 | p | '
                   'test recall@20 | false negatives | epoch / RNS |')
        out.append('|---|---|---|---|---|---|---|---|')
        rows.sort(key=lambda r: -float(short(r['test ndcg@20'])[0]
                                       .split()[0]))
        for r in rows:
            ndcg, p = short(r['test ndcg@20'])
            recall, _ = short(r['test recall@20'])
            setting = r['setting'].replace('leaderboard=', '')
            if '-' in setting and r['sampler'] in KNOBS:
                value = re.sub(r'^[a-z]+', '', setting.split('-', 1)[1])
                setting = f"{KNOBS[r['sampler']]} = {value}"
            else:
                setting = '-'
            name = NAMES.get(r['sampler'], r['sampler'])
            if r['sampler'] == 'dns':
                name, setting = f'**{name}**', '-'
            out.append(f"| {name} | {setting} | {ndcg} | {r['test vs dns']} "
                       f"| {p or '-'} | {recall} | "
                       f"{r['false negative rate']} | {r['s/epoch / rns']} |")
        out.append('')
    return '\n'.join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--check', action='store_true')
    args = p.parse_args()
    doc = DOC.read_text()
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f'{head}{BEGIN}\n{summary()}{END}{tail}'
    if args.check:
        sys.exit(0 if new == doc else 1)
    DOC.write_text(new)
    print(f'wrote {DOC}')


if __name__ == '__main__':
    main()
