"""What the learnable samplers of a leaderboard did before their selected
epoch, from each run's metrics.json history: sampler updates taken up to the
selected epoch (KGPolicy's count; the generators and DENS's gates
take a step every batch), and per sampler its learning signal there and at the last
epoch (KGPolicy: attention entropy as a share of its maximum, hop 1 / hop 2;
Adversarial, AdvIR, NMRN: the generator's gain in expected reward over a
uniform pick from its pool; DENS: its gate loss and how often it picks
DNS's candidate).

    python benchmarks/leaderboard_diagnostics.py multirun/leaderboard-cli/ml-1m-mf
"""
import json
import sys
from collections import defaultdict
from pathlib import Path

SIGNALS = {'kgpolicy': ('sampler_entropy_hop1', 'sampler_entropy_hop2'),
           'adversarial': ('sampler_gain', ), 'advir': ('sampler_gain', ),
           'nmrn': ('sampler_gain', ),
           'dens': ('sampler_gate_loss', 'sampler_dns_agreement')}


def main(root: Path) -> None:
    rows = defaultdict(list)
    for path in sorted(root.rglob('metrics.json')):
        m = json.loads(path.read_text())
        if m.get('status') != 'completed' or m['sampler'] not in SIGNALS:
            continue
        over = (path.parent / '.hydra' / 'overrides.yaml').read_text()
        entry = next(ln.split('=', 1)[1] for ln in over.splitlines()
                     if 'leaderboard=' in ln)
        hist = {r['epoch']: r for r in m['history']}
        best, last = hist[m['best_epoch']], hist[max(hist)]
        # KGPolicy counts its policy steps; the others step every batch
        updates = best.get('sampler_num_updates', 'every batch')
        sig = ' '.join(f"{k.replace('sampler_', '')} {best.get(k, float('nan')):.3g}"
                       f" -> {last.get(k, float('nan')):.3g}"
                       for k in SIGNALS.get(m['sampler'], ()))
        rows[entry].append((m['seed'], m['best_epoch'], updates, sig))
    print('| entry | seed | selected epoch | sampler updates up to it | signal at it -> last epoch |')
    print('|---|---|---|---|---|')
    for entry, rs in sorted(rows.items()):
        for seed, be, up, sig in sorted(rs):
            print(f'| {entry} | {seed} | {be} | {up} | {sig or "-"} |')


if __name__ == '__main__':
    main(Path(sys.argv[1]))
