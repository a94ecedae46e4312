"""PyG's LightGCN trained in a plain PyG loop with a kgsampler sampler.

kgsampler only supplies the negatives (and the evaluation helper): the model,
the loss and the loop are PyG's own. DNS and KGPolicy need a scorer; here it
scores with the LightGCN embeddings of the current batch. KGPolicy is a
learnable sampler: the loop calls its two hooks, on_epoch_start() and
update() (its own REINFORCE step, with the recommender frozen).

    python examples/lightgcn_pyg.py                       # built-in synthetic data, DNS
    python examples/lightgcn_pyg.py --sampler kgpolicy --epochs 5
    python examples/lightgcn_pyg.py --data ../shared/datasets/lastfm --epochs 50
"""
import argparse

import torch
from torch_geometric.nn.models import LightGCN

from kgsampler import (DNS, RNS, KGPolicy, KGRecDataset, evaluate,
                       make_synthetic)


class LightGCNScorer:
    """A kgsampler Scorer over a snapshot of LightGCN's node embeddings."""
    def __init__(self, num_users: int):
        self.num_users = num_users
        self.emb = None

    def score(self, users, items):  # [B], [B, K] -> [B, K]
        u = self.emb[users]
        i = self.emb[self.num_users + items]
        return (i @ u.unsqueeze(-1)).squeeze(-1)

    def similarity(self, items_a, items_b):  # [B], [B, K] -> [B, K]
        a = self.emb[self.num_users + items_a]
        b = self.emb[self.num_users + items_b]
        return (b @ a.unsqueeze(-1)).squeeze(-1)


def main():
    torch.set_num_threads(1)  # see num_threads in conf/train.yaml
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--data', default=None, help='a KGAT folder')
    p.add_argument('--sampler', default='dns',
                   choices=['rns', 'dns', 'kgpolicy'])
    p.add_argument('--epochs', type=int, default=20)
    p.add_argument('--lr', type=float, default=1e-3)
    args = p.parse_args()
    torch.manual_seed(0)

    ds = make_synthetic() if args.data is None else KGRecDataset.from_kgat(
        args.data)
    U, I = ds.num_users, ds.num_items
    # A homogeneous user-item graph from the dataset's HeteroData (train only).
    ui = ds.data['user', 'interacts', 'item'].edge_index
    ui = torch.stack([ui[0], ui[1] + U])
    edge_index = torch.cat([ui, ui.flip(0)], dim=1)

    model = LightGCN(num_nodes=U + I, embedding_dim=64, num_layers=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scorer = LightGCNScorer(U)
    if args.sampler == 'kgpolicy':
        sampler = KGPolicy.from_dataset(ds, scorer=scorer)
    elif args.sampler == 'dns':
        sampler = DNS(ds.train_pos, scorer=scorer, num_candidates=8)
    else:
        sampler = RNS(ds.train_pos)

    users_all, items_all = ds.train_pos.row_ids(), ds.train_pos.indices
    for epoch in range(1, args.epochs + 1):
        model.train()
        sampler.on_epoch_start(epoch)
        total = 0.0
        for idx in torch.randperm(users_all.numel()).split(2048):
            users, pos = users_all[idx], items_all[idx]
            emb = model.get_embedding(edge_index)
            scorer.emb = emb.detach()
            out = sampler.sample(users, pos, num_neg=1)
            neg = out.neg_items[:, 0]
            pos_rank = (emb[users] * emb[U + pos]).sum(-1)
            neg_rank = (emb[users] * emb[U + neg]).sum(-1)
            node_id = torch.cat([users, U + pos, U + neg])
            loss = model.recommendation_loss(pos_rank, neg_rank,
                                             node_id=node_id, lambda_reg=1e-4)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if sampler.learnable:  # KGPolicy's step, recommender frozen
                sampler.update(users, pos, out)
            total += float(loss.detach()) * users.numel()
        model.eval()
        with torch.no_grad():
            emb = model.get_embedding(edge_index)
        res = evaluate(lambda u: emb[u] @ emb[U:].t(), ds.valid_pos,
                       [ds.train_pos])
        print(f'epoch {epoch:3d} loss {total / users_all.numel():.4f} '
              f'valid recall@20 {res["recall@20"]:.4f} '
              f'ndcg@20 {res["ndcg@20"]:.4f}')
    res = evaluate(lambda u: emb[u] @ emb[U:].t(), ds.test_pos,
                   [ds.train_pos, ds.valid_pos])
    print(f'test recall@20 {res["recall@20"]:.4f} ndcg@20 '
          f'{res["ndcg@20"]:.4f} (last epoch; use validation to pick one)')


if __name__ == '__main__':
    main()
