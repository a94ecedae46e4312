"""LightGCN (He et al., SIGIR 2020) around PyG's
:class:`torch_geometric.nn.models.LightGCN`, trained with the BPR loss."""
from __future__ import annotations

import math
import numbers
import warnings
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.nn.conv import LGConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.nn.models import LightGCN as PyGLightGCN

from kgsampler.data.csr import UserItemCSR
from kgsampler.recommender.base import LayerEmbeddings, Recommender, bpr_l2
from kgsampler.utils._checks import positive_int as _positive_int


class _SymmetricSpMM(torch.autograd.Function):
    r""":math:`Y = \hat{A} X` for a *symmetric* sparse CSR :math:`\hat{A}`;
    the backward is :math:`\hat{A}^{\top} G = \hat{A} G`, one more SpMM with
    the same matrix (differentiating :func:`torch.sparse.mm` instead builds
    the transpose's CSR, a sort, on every layer of every backward pass)."""
    @staticmethod
    def forward(ctx, adj: Tensor, x: Tensor) -> Tensor:
        ctx.adj = adj
        return adj @ x

    @staticmethod
    def backward(ctx, grad: Tensor):
        return None, ctx.adj @ grad


class _SymmetricLGConv(LGConv):
    r"""PyG's :class:`~torch_geometric.nn.conv.LGConv` whose fused
    :meth:`message_and_aggregate` (used when the adjacency is a sparse
    tensor) differentiates through :class:`_SymmetricSpMM`; the
    propagation is otherwise the parent's. Only valid for a symmetric
    adjacency, which :class:`LightGCN` always builds."""
    def message_and_aggregate(self, adj_t: Tensor, x: Tensor) -> Tensor:
        return _SymmetricSpMM.apply(adj_t, x)




class LightGCN(Recommender):
    r"""LightGCN from the `"LightGCN: Simplifying and Powering Graph
    Convolution Network for Recommendation" <https://arxiv.org/abs/
    2002.02126>`_ paper: a wrapper around PyG's
    :class:`torch_geometric.nn.models.LightGCN` (held as :obj:`gnn`) over
    the user-item bipartite training graph, users :math:`0..U-1` and items
    :math:`U..U+I-1`, every interaction in both directions, with PyG's
    symmetric normalisation (:func:`~torch_geometric.nn.conv.gcn_conv.
    gcn_norm` without self-loops):

    .. math::
        \mathbf{e}^{(l+1)} = \mathbf{D}^{-1/2} \mathbf{A} \mathbf{D}^{-1/2}
        \mathbf{e}^{(l)}, \qquad
        \mathbf{e} = \sum_{l=0}^{L} \alpha_l \mathbf{e}^{(l)}, \qquad
        \hat{y}_{ui} = \mathbf{e}_u^{\top} \mathbf{e}_i

    (:math:`\alpha_l = 1 / (L + 1)` by default), trained with BPR on the
    propagated embeddings plus L2 on the batch's layer-0 embeddings, as in
    the paper:

    .. math::
        \mathcal{L} = -\frac{1}{BN} \sum_{(u,i,j)} \ln \sigma(\hat{y}_{ui} -
        \hat{y}_{uj}) + \lambda \frac{1}{B} \sum_{(u,i,j)}
        \left( \|\mathbf{e}^{(0)}_u\|^2 + \|\mathbf{e}^{(0)}_i\|^2 +
        \frac{1}{N}\sum_j \|\mathbf{e}^{(0)}_j\|^2 \right) / 2

    The normalised adjacency is precomputed once as a :obj:`torch.sparse_csr`
    tensor (:attr:`adj_t`; its parts are non-persistent buffers: they follow
    :meth:`to` and :func:`copy.deepcopy` and stay out of
    :meth:`state_dict`) and handed to PyG's model as its :obj:`edge_index`;
    its :class:`~torch_geometric.nn.conv.LGConv` layers then run one SpMM
    per layer, differentiated by a second SpMM with the same (symmetric)
    matrix. This is the fastest of the formats PyG's model accepts, measured
    on ml-1m (6,036 users, 2,347 items, 271,016 training pairs;
    :obj:`embedding_dim=64`, :obj:`num_layers=3`; one full propagation
    forward + backward, one CPU thread, best of 10;
    :obj:`benchmarks/bench_recommenders.py`, results in
    :obj:`benchmarks/results/bench_recommenders.txt`): PyG's default
    :obj:`edge_index` (:func:`gcn_norm` in every layer, gather/scatter
    message passing) 954 ms, :obj:`edge_index` with precomputed weights
    883 ms, the precomputed CSR through :func:`torch.sparse.mm`'s own
    backward (which rebuilds the transpose every layer) 121 ms, this CSR with
    the symmetric backward 26 ms (forward alone without gradients: 423 ms
    vs. 13 ms). A training epoch with RNS (batch 1024) then takes 9.5 s,
    11.7x MF's 0.81 s in the same run.

    The full-graph propagation is cached: :meth:`score`,
    :meth:`full_scores`, :meth:`item_representations` and
    :meth:`similarity` called without gradients (samplers and the
    evaluation do) reuse one propagation until the parameters change. The
    cache is keyed on the version counters (bumped by every in-place update:
    an optimiser step, :meth:`load_state_dict`, :meth:`reset_parameters`)
    and storage of the embedding table and of :obj:`alpha`; moving the
    module (:meth:`to`) clears it. With gradients enabled (:meth:`loss`,
    or :meth:`score` under autograd) every call propagates afresh, with
    autograd, and leaves its detached result in the cache for the no-grad
    calls at the same parameters. :meth:`layer_embeddings` (the per-layer
    embeddings hop-mixing samplers such as :class:`~kgsampler.sampler.
    MixGCF` need) is cached the same way; with gradients, its result is
    also kept for one :meth:`loss` call with :obj:`neg_embeddings` at the
    same parameters, so that a MixGCF batch propagates the graph once
    (sampler and loss share the autograd graph, as in MixGCF's released
    code).

    Args:
        num_users (int): Number of users :math:`U`.
        num_items (int): Number of items :math:`I`.
        train_pos (UserItemCSR or torch.Tensor): The training interactions
            the graph is built from: a :class:`~kgsampler.data.UserItemCSR`
            with :math:`U` rows and :math:`I` columns (a dataset's
            :obj:`train_pos`), or a :obj:`torch.long` tensor of
            (user, item) pairs of shape :math:`(2, E)`, item ids in
            :math:`[0, I)` (duplicates are merged).
        embedding_dim (int, optional): Embedding size :math:`d`.
            (default: :obj:`64`)
        num_layers (int, optional): Number of propagation layers :math:`L`
            (:obj:`0`: matrix factorisation on one joint table).
            (default: :obj:`3`)
        reg (float, optional): L2 weight :math:`\lambda` on the batch's
            layer-0 embeddings. (default: :obj:`1e-4`, the paper's)
        alpha (float or sequence of float, optional): Layer weights
            :math:`\alpha_l`: one number for every layer, or :math:`L + 1`
            of them; :obj:`None` is PyG's :math:`1 / (L + 1)`.
            (default: :obj:`None`)
    """
    def __init__(self, num_users: int, num_items: int,
                 train_pos: Union[UserItemCSR, Tensor],
                 embedding_dim: int = 64, num_layers: int = 3,
                 reg: float = 1e-4,
                 alpha: Optional[Union[float, Sequence[float]]] = None):
        super().__init__()
        cls = self.__class__.__name__
        num_users = _positive_int(cls, 'num_users', num_users)
        num_items = _positive_int(cls, 'num_items', num_items)
        embedding_dim = _positive_int(cls, 'embedding_dim', embedding_dim)
        num_layers = _positive_int(cls, 'num_layers', num_layers, low=0)
        if isinstance(reg, bool) or not isinstance(reg, numbers.Real) or \
                not 0 <= reg < math.inf:
            raise ValueError(f"{cls}: 'reg' must be a finite non-negative "
                             f"number (got {reg!r})")
        alpha = self._check_alpha(alpha, num_layers)
        train_pos = self._check_train_pos(train_pos, num_users, num_items)
        self.num_users, self.num_items = num_users, num_items
        self.embedding_dim, self.num_layers = embedding_dim, num_layers
        self.reg = float(reg)
        self.gnn = PyGLightGCN(num_users + num_items, embedding_dim,
                               num_layers, alpha=alpha)
        # PyG's propagation; only the SpMM's backward uses the symmetry
        self.gnn.convs = torch.nn.ModuleList(
            [_SymmetricLGConv(normalize=False) for _ in range(num_layers)])
        # the normalised adjacency in CSR parts (non-persistent buffers: they
        # follow .to() and deepcopy, and stay out of the state_dict)
        adj = self._normalised_adjacency(train_pos)
        self.register_buffer('adj_crow', adj.crow_indices(), persistent=False)
        self.register_buffer('adj_col', adj.col_indices(), persistent=False)
        self.register_buffer('adj_value', adj.values(), persistent=False)
        self._cache: Optional[Tuple[tuple, Tensor]] = None
        self._layer_cache: Optional[Tuple[tuple, Tensor]] = None
        # with autograd: kept for one loss(neg_embeddings=...) call
        self._layer_grad: Optional[Tuple[tuple, Tensor]] = None
        self.reset_parameters()

    @classmethod
    def from_dataset(cls, dataset, **kwargs) -> 'LightGCN':
        r"""Builds the model over :obj:`dataset.train_pos`.

        Args:
            dataset (KGRecDataset): Provides :obj:`num_users`,
                :obj:`num_items` and :obj:`train_pos`.
            **kwargs (optional): Other arguments of :class:`LightGCN`.
        """
        return cls(dataset.num_users, dataset.num_items, dataset.train_pos,
                   **kwargs)

    # ------------------------------------------------------------ building
    @staticmethod
    def _check_alpha(alpha, num_layers: int) -> Optional[Tensor]:
        if alpha is None:
            return None
        vals = [alpha] if isinstance(alpha, numbers.Real) else alpha
        ok = isinstance(vals, (Sequence, Tensor)) and not isinstance(
            vals, (str, bytes))
        if ok:
            vals = [v.item() if isinstance(v, Tensor) and v.numel() == 1
                    else v for v in vals]
            ok = len(vals) in (1, num_layers + 1) and all(
                isinstance(v, numbers.Real) and not isinstance(v, bool)
                and math.isfinite(v) for v in vals)
        if not ok:
            raise ValueError(f"LightGCN: 'alpha' must be null, a finite "
                             f"number or num_layers + 1 = {num_layers + 1} "
                             f"finite numbers (got {alpha!r})")
        vals = [float(v) for v in vals]
        if len(vals) == 1:
            vals = vals * (num_layers + 1)
        return torch.tensor(vals, dtype=torch.float)

    @staticmethod
    def _check_train_pos(train_pos, num_users: int,
                         num_items: int) -> UserItemCSR:
        if isinstance(train_pos, Tensor):
            if train_pos.dim() != 2 or train_pos.size(0) != 2 or \
                    train_pos.is_floating_point() or \
                    train_pos.dtype == torch.bool:
                raise ValueError(f"LightGCN: 'train_pos' as a tensor must "
                                 f"hold integer (user, item) pairs of shape "
                                 f"(2, E) (got {train_pos.dtype} of shape "
                                 f"{tuple(train_pos.shape)})")
            try:
                return UserItemCSR.from_pairs(train_pos[0], train_pos[1],
                                              num_users, num_items)
            except ValueError as e:
                raise ValueError(f"LightGCN: 'train_pos' must hold user ids "
                                 f"in [0, {num_users}) and item ids in "
                                 f"[0, {num_items}) (got {e})") from e
        if not isinstance(train_pos, UserItemCSR):
            raise TypeError(f"LightGCN: 'train_pos' must be a UserItemCSR "
                            f"(e.g. dataset.train_pos) or a (2, E) tensor of "
                            f"(user, item) pairs (got "
                            f"{type(train_pos).__name__})")
        if (train_pos.num_rows, train_pos.num_cols) != (num_users, num_items):
            raise ValueError(f"LightGCN: 'train_pos' must have num_users="
                             f"{num_users} rows and num_items={num_items} "
                             f"columns (got {train_pos.num_rows} x "
                             f"{train_pos.num_cols})")
        return train_pos

    def _normalised_adjacency(self, train_pos: UserItemCSR) -> Tensor:
        U, N = self.num_users, self.num_users + self.num_items
        users, items = train_pos.row_ids(), train_pos.indices + U
        edge_index = torch.cat([torch.stack([users, items]),
                                torch.stack([items, users])], dim=1)
        edge_index, weight = gcn_norm(edge_index, None, N,
                                      add_self_loops=False)
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter('ignore', UserWarning)
            return torch.sparse_coo_tensor(edge_index, weight, (N, N)) \
                .coalesce().to_sparse_csr()

    @property
    def adj_t(self) -> Tensor:
        r"""The normalised adjacency :math:`\mathbf{D}^{-1/2} \mathbf{A}
        \mathbf{D}^{-1/2}` as a :obj:`torch.sparse_csr` tensor (a view of the
        buffers :obj:`adj_crow`, :obj:`adj_col`, :obj:`adj_value`).

        Shapes:
            - **output:** :math:`(U + I, U + I)`
        """
        N = self.num_users + self.num_items
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', UserWarning)
            return torch.sparse_csr_tensor(self.adj_crow, self.adj_col,
                                           self.adj_value, (N, N),
                                           check_invariants=False)

    def reset_parameters(self) -> None:
        r"""Resets the embeddings (PyG's Xavier-uniform initialisation of
        the joint user-item table)."""
        self.gnn.reset_parameters()
        self._cache = self._layer_cache = self._layer_grad = None

    def _apply(self, fn, *args, **kwargs):
        # .to(), .cuda(), .double(): new storage
        self._cache = self._layer_cache = self._layer_grad = None
        return super()._apply(fn, *args, **kwargs)

    def __getstate__(self):
        # an autograd graph cannot be copied or pickled (deepcopy, torch.save)
        state = self.__dict__.copy()
        state['_layer_grad'] = None
        return state

    # --------------------------------------------------------- propagation
    def _cache_key(self) -> tuple:
        w, a = self.gnn.embedding.weight, self.gnn.alpha
        return (w._version, w.data_ptr(), a._version, a.data_ptr())

    def get_embedding(self) -> Tensor:
        r"""The propagated embeddings :math:`\mathbf{e}` of all users (rows
        :math:`0..U-1`) then all items; cached without gradients (see the
        class docstring), propagated with autograd otherwise.

        Shapes:
            - **output:** :math:`(U + I, d)`
        """
        key = self._cache_key()
        if torch.is_grad_enabled():
            out = self.gnn.get_embedding(self.adj_t)
            self._cache = (key, out.detach())
            return out
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self.gnn.get_embedding(self.adj_t))
        return self._cache[1]

    def _propagate_layers(self) -> Tensor:
        x = self.gnn.embedding.weight
        xs = [x]
        for conv in self.gnn.convs:
            x = conv(x, self.adj_t)
            xs.append(x)
        return torch.stack(xs, dim=1)  # [U + I, L + 1, d]

    def _layers(self, xs: Tensor) -> LayerEmbeddings:
        U = self.num_users
        return LayerEmbeddings(xs[:U], xs[U:], self.gnn.alpha)

    def layer_embeddings(self) -> LayerEmbeddings:
        r"""Per-layer embeddings :math:`\mathbf{e}^{(0)}, \dots,
        \mathbf{e}^{(L)}` of every user and item and the layer weights
        :math:`\alpha_l` (:meth:`LayerEmbeddings.pool` of them is
        :meth:`get_embedding`, up to rounding): the capability hop-mixing
        samplers (:class:`~kgsampler.sampler.MixGCF`) need. Cached without
        gradients like :meth:`get_embedding`; with gradients, propagated
        afresh with autograd (and kept for one :meth:`loss` call with
        :obj:`neg_embeddings` at the same parameters). A propagation here
        also fills :meth:`get_embedding`'s no-grad cache (with the pooled
        layers), so :meth:`score` at the same parameters does not propagate
        again.

        Shapes:
            - **output.user:** :math:`(U, L + 1, d)`
            - **output.item:** :math:`(I, L + 1, d)`
            - **output.weight:** :math:`(L + 1)`
        """
        key = self._cache_key()
        if torch.is_grad_enabled():
            xs = self._propagate_layers()
            self._layer_grad = (key, xs)
        elif self._layer_cache is None or self._layer_cache[0] != key:
            xs = self._propagate_layers()
        else:
            return self._layers(self._layer_cache[1])
        self._layer_cache = (key, xs.detach())
        # the same propagation serves score() & co. at these parameters
        self._cache = (key, self._layers(xs.detach()).pool(xs.detach()))
        return self._layers(xs)

    def _loss_layers(self) -> LayerEmbeddings:
        r"""The autograd propagation kept by the last
        :meth:`layer_embeddings` call at the current parameters (used
        once), else a fresh one."""
        kept, self._layer_grad = self._layer_grad, None
        if kept is not None and kept[0] == self._cache_key() and \
                torch.is_grad_enabled():
            return self._layers(kept[1])
        le = self.layer_embeddings()
        self._layer_grad = None  # this one is used here
        return le

    def _check_users_items(self, who: str, users: Tensor, items: Tensor,
                           name: str) -> None:
        if users.dim() != 1 or items.dim() != 2 or \
                items.size(0) != users.size(0):
            raise ValueError(f"LightGCN.{who}: 'users' must be (B) and "
                             f"'{name}' (B, K) (got shapes "
                             f"{tuple(users.shape)} and "
                             f"{tuple(items.shape)})")

    # ---------------------------------------------------------------- API
    def score(self, users: Tensor, items: Tensor) -> Tensor:
        r"""Inner products :math:`\mathbf{e}_u^{\top} \mathbf{e}_i` of the
        propagated embeddings of each user and its candidate items.

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.
            items (torch.Tensor): Candidate item ids per user,
                :obj:`torch.long`.

        Shapes:
            - **users:** :math:`(B)`
            - **items:** :math:`(B, K)`
            - **output:** :math:`(B, K)`
        """
        self._check_users_items('score', users, items, 'items')
        emb = self.get_embedding()
        u = emb[users]
        return (emb[items + self.num_users] @ u.unsqueeze(-1)).squeeze(-1)

    def item_representations(self, items: Tensor) -> Tensor:
        r"""The propagated item embeddings :math:`\mathbf{e}_i` (so
        :meth:`similarity` is :math:`\mathbf{e}_i^{\top} \mathbf{e}_j`).

        Args:
            items (torch.Tensor): Item ids, :obj:`torch.long`.

        Shapes:
            - **items:** :math:`(*)`
            - **output:** :math:`(*, d)`, :math:`d` = :obj:`embedding_dim`
        """
        return self.get_embedding()[items + self.num_users]

    def full_scores(self, users: Tensor) -> Tensor:
        r"""Scores of every item for each user (propagated embeddings).

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.

        Shapes:
            - **users:** :math:`(B)`
            - **output:** :math:`(B, I)`
        """
        emb = self.get_embedding()
        return emb[users] @ emb[self.num_users:].t()

    def loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor,
             neg_embeddings: Optional[Tensor] = None) -> Tensor:
        r"""BPR loss on the propagated embeddings (mean over the
        :math:`B N` (user, positive, negative) triples) plus L2
        regularisation of the batch's layer-0 embeddings, as in
        :class:`LightGCN`; propagates the whole graph with autograd.

        With :obj:`neg_embeddings` (synthetic negatives, e.g. MixGCF's
        :attr:`~kgsampler.sampler.SamplerOutput.neg_embeddings`), the
        negatives' scores are :math:`\mathbf{e}_u^{\top} \sum_l \alpha_l
        \mathbf{e}'^{(l)}_n` and their L2 term is on the synthetic layer-0
        (ego) embeddings :math:`\mathbf{e}'^{(0)}_n`, as in MixGCF's released
        code; :obj:`neg_items` is then only checked for its shape.

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.
            pos_items (torch.Tensor): The positive item of each row,
                :obj:`torch.long`.
            neg_items (torch.Tensor): :math:`N` negative item ids per row,
                :obj:`torch.long`.
            neg_embeddings (torch.Tensor, optional): Per-layer synthetic
                negative embeddings in the layout of
                :meth:`layer_embeddings`. (default: :obj:`None`)

        Shapes:
            - **users:** :math:`(B)`
            - **pos_items:** :math:`(B)`
            - **neg_items:** :math:`(B, N)`
            - **neg_embeddings:** :math:`(B, N, L + 1, d)`
            - **output:** :math:`()`
        """
        self._check_users_items('loss', users, neg_items, 'neg_items')
        if pos_items.shape != users.shape:
            raise ValueError(f"LightGCN.loss: 'pos_items' must have the "
                             f"shape of 'users' (got {tuple(pos_items.shape)}"
                             f" and {tuple(users.shape)})")
        if neg_embeddings is not None:
            return self._synthetic_loss(users, pos_items, neg_items,
                                        neg_embeddings)
        U = self.num_users
        emb = self.get_embedding()
        e0 = self.gnn.embedding.weight
        return bpr_l2(emb[users], emb[pos_items + U], emb[neg_items + U],
                      e0[users], e0[pos_items + U], e0[neg_items + U],
                      self.reg)

    def _synthetic_loss(self, users: Tensor, pos_items: Tensor,
                        neg_items: Tensor, neg_embeddings: Tensor) -> Tensor:
        expect = (*neg_items.shape, self.num_layers + 1, self.embedding_dim)
        if not isinstance(neg_embeddings, Tensor) or \
                tuple(neg_embeddings.shape) != expect:
            raise ValueError(f"LightGCN.loss: 'neg_embeddings' must be of "
                             f"shape (B, N, num_layers + 1, embedding_dim) = "
                             f"{expect} (got "
                             f"{tuple(getattr(neg_embeddings, 'shape', ()))})")
        le = self._loss_layers()
        u, p = le.user[users], le.item[pos_items]  # [B, L + 1, d]
        return bpr_l2(le.pool(u), le.pool(p), le.pool(neg_embeddings),
                      u[:, 0], p[:, 0], neg_embeddings[:, :, 0], self.reg)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, embedding_dim={self.embedding_dim}, '
                f'num_layers={self.num_layers})')
