r"""AdvIR (Park & Chang, WWW 2019): adversarial sampling of negatives, to
be paired with adversarial training of the recommender
(:class:`~kgsampler.recommender.APR`)."""
from __future__ import annotations

from torch import Tensor

from kgsampler.sampler.adversarial import Adversarial


class AdvIR(Adversarial):
    r"""AdvIR's negative sampler (Park & Chang, WWW 2019, *Adversarial
    Sampling and Training for Semi-Supervised Information Retrieval*), as the
    KGPolicy paper ran it: an MF generator (own embeddings
    :math:`\mathbf{p}_u, \mathbf{q}_j`) samples each negative from
    :math:`\mathrm{softmax}(\mathbf{p}_u^{\top}\mathbf{q}_j / \tau)` over
    :obj:`num_candidates` uniform non-positive items, and is trained by the
    exact pool policy gradient of :class:`Adversarial` to maximise the
    discriminator's (the recommender's) training loss on its negatives.

    AdvIR has two parts, mapped onto the package as follows:

    * **adversarial sampling** is this sampler;
    * **adversarial training** (each example's embeddings moved by the
      :math:`L_2`-bounded worst-case perturbation, the loss under it added
      with weight :math:`\lambda`) changes the recommender's loss, which a
      sampler cannot reach through :meth:`sample` / :meth:`update`: it is
      the recommender :class:`~kgsampler.recommender.APR` (an :class:`MF`
      subclass). From the command line the full method is
      :obj:`kgsampler-train sampler=advir recommender=apr`; the epoch
      history's :obj:`sampler_adversarial_reward` (:meth:`diagnostics`) is
      1 when the recommender provides the adversarial loss.

    The generator's reward is the discriminator's own loss on each pool
    candidate: with an :class:`~kgsampler.recommender.APR` (anything with
    :obj:`pair_losses(users, pos_items, items) -> [B, K]`), its BPR loss
    plus :math:`\lambda` times the BPR loss under the candidate's own
    worst-case perturbation (the adversarial example AdvIR builds from the
    sampled negative); with any other recommender, the BPR loss
    :math:`\log(1 + e^{f(u, j) - f(u, i)})` alone (then this is
    :class:`Adversarial`).

    Args:
        train_pos (UserItemCSR): Each user's training positives.
        scorer (Scorer, optional): The recommender (an
            :class:`~kgsampler.recommender.APR` for the full method).
        num_candidates (int, optional): Pool size :math:`M`.
            (default: :obj:`4`)
        embedding_dim (int, optional): Generator embedding size.
            (default: :obj:`64`)
        temperature (float, optional): Softmax temperature :math:`\tau`.
            (default: :obj:`1.0`)
        lr (float, optional): Adam learning rate of the generator.
            (default: :obj:`1e-3`)
        weight_decay (float, optional): Adam weight decay of the generator.
            (default: :obj:`0.0`)
        **kwargs (optional): Arguments of :class:`Sampler`.
    """
    @property
    def adversarial_reward(self) -> bool:
        """Whether the reward includes the recommender's adversarial loss
        (the recommender has :obj:`pair_losses`)."""
        return callable(getattr(self.scorer, 'pair_losses', None))

    def diagnostics(self):
        r"""Whether the reward includes the recommender's adversarial loss
        (:obj:`adversarial_reward`, 1.0 or 0.0)."""
        return {'adversarial_reward': float(self.adversarial_reward)}

    def reward(self, users: Tensor, pos_items: Tensor, candidates: Tensor,
               pos_scores: Tensor, neg_scores: Tensor) -> Tensor:
        r"""The recommender's training loss of each pool candidate:
        :obj:`scorer.pair_losses(users, pos_items, candidates)` where the
        recommender has it (:class:`~kgsampler.recommender.APR`: BPR plus
        the weighted adversarial BPR), else the BPR loss.

        Arguments and shapes as
        :meth:`~kgsampler.sampler.Adversarial.reward`.
        """
        if self.adversarial_reward:
            return self.scorer.pair_losses(users, pos_items,
                                           candidates).float()
        return super().reward(users, pos_items, candidates, pos_scores,
                              neg_scores)
