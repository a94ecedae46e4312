"""Plugging your own recommender into kgsampler's Trainer.

A recommender is a torch.nn.Module subclassing kgsampler.Recommender with
three methods: score (used by adaptive samplers), loss and full_scores (used
by the evaluation). Here: a "biased MF" whose score adds an item bias.

    python examples/custom_recommender.py
"""
import torch
import torch.nn.functional as F

from kgsampler import DNS, Recommender, Trainer, make_synthetic


class BiasedMF(Recommender):
    def __init__(self, num_users, num_items, dim=32):
        super().__init__()
        self.num_users, self.num_items = num_users, num_items
        self.user = torch.nn.Embedding(num_users, dim)
        self.item = torch.nn.Embedding(num_items, dim)
        self.bias = torch.nn.Embedding(num_items, 1)
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.normal_(self.user.weight, std=0.1)
        torch.nn.init.normal_(self.item.weight, std=0.1)
        torch.nn.init.zeros_(self.bias.weight)

    def score(self, users, items):  # [B], [B, K] -> [B, K]
        dot = (self.item(items) @ self.user(users).unsqueeze(-1)).squeeze(-1)
        return dot + self.bias(items).squeeze(-1)

    def item_representations(self, items):  # for KGPolicy's similarity
        return self.item(items)

    def full_scores(self, users):  # [B] -> [B, num_items]
        return self.user(users) @ self.item.weight.t() + self.bias.weight.t()

    def loss(self, users, pos_items, neg_items):  # [B], [B], [B, N]
        pos = self.score(users, pos_items.unsqueeze(-1))
        neg = self.score(users, neg_items)
        return -F.logsigmoid(pos - neg).mean()

    def __repr__(self):
        return f'BiasedMF({self.num_users}, {self.num_items})'


if __name__ == '__main__':
    torch.set_num_threads(1)  # see num_threads in conf/train.yaml
    torch.manual_seed(0)
    ds = make_synthetic()
    model = BiasedMF(ds.num_users, ds.num_items)
    sampler = DNS(ds.train_pos, num_candidates=8)  # the Trainer sets scorer
    result = Trainer(model, sampler, ds, lr=5e-3, max_epochs=30,
                     progress=False).fit()
    print('best epoch', result.best_epoch, 'test', result.test)
