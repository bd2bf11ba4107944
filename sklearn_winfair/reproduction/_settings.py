"""Settings of a run and every constant of the harness, each defined once.

:class:`Settings` holds what ``winfair-bench`` options set, with per-data-set
defaults for quick and full mode (:meth:`Settings.defaults`). The constants
below are shared by the scenarios (:mod:`._scenarios`), the method registry
(:mod:`._methods`) and the reports (:mod:`._report`), which import them from
here.
"""

from dataclasses import dataclass

from ._tuning import Grid

__all__ = [
    "Settings",
    "DATASETS",
    "PENALTIES",
    "PENALTY_STRENGTHS",
    "IMPORTANCES",
    "ALPHAS",
    "PAPER_ALPHAS",
    "PAPER_RANK",
    "TABLE4_DEPTHS",
    "ADV_HIDDEN",
    "IMAGE_SIZES",
    "CONFIG_A",
    "CONFIG_B",
    "CONFIG_C",
    "PAPER_CONFIG",
    "OURS_B_CONFIG",
    "IMAGES_CONFIG",
]

DATASETS = ("adult", "adult-age-shift", "german", "images")

#: Fairness penalties by label, as FairLowRankFineTuner and fairlearn spell them.
PENALTIES = {"DP": "demographic_parity", "EO": "equalized_odds"}
#: Intensities of the fairness regularizers (paper Sec. 4.3).
PENALTY_STRENGTHS = (0.1, 0.5, 0.9)
#: Importance of each low-rank method, as FairLowRankFineTuner spells it.
IMPORTANCES = {"f+SVD": "uniform", "FWSVD": "fisher", "OURS": "neutral"}
#: alpha values of the age-shift scenario's ablation (0.5 is its OURS row).
ALPHAS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
#: alpha values of the paper's Fig. 5 beside 0.5 (its OURS row).
PAPER_ALPHAS = (0.6, 0.7, 0.8, 0.9)
#: Rank of the paper's head 20->2 (full rank there).
PAPER_RANK = 2
#: Table 4: MLP-k read as k hidden layers of 20 units (the main model has 2).
TABLE4_DEPTHS = {"MLP-3": 3, "MLP-4": 4, "MLP-5": 5}
#: Hidden width of the adversarial peer's predictor. With a purely logistic
#: predictor (``predictor_model=[]``) it collapsed to a constant prediction in
#: our trials, so it gets one small hidden layer.
ADV_HIDDEN = 16
#: (pre-training, train, validation, test) images in full mode.
IMAGE_SIZES = (10_000, 10_000, 2_000, 4_000)

CONFIG_A = "a: linear head 10->2"
CONFIG_B = "b: 2-layer head 64->10->2"
CONFIG_C = "c: multiclass, probe head 64->10->4"
PAPER_CONFIG = "paper: MLP 13-20-20-2, head 20->2 at rank 2"
OURS_B_CONFIG = "ours: one-hot MLP d-64-10-2, 2-layer head 64->10->2 at rank 2"
IMAGES_CONFIG = "ours: small ResNet, 2-layer head 32->32->2"


@dataclass
class Settings:
    """Settings of one benchmark run (what ``winfair-bench`` options set).

    Attributes
    ----------
    dataset : {"adult", "adult-age-shift", "german", "images"}
        ``"adult"`` is the paper's setting; ``"adult-age-shift"`` our age
        covariate-shift scenario.
    seeds : int
        Number of seeds (0 .. seeds - 1).
    epochs : int
        Fine-tuning epochs of the untuned scenarios.
    pretrain_epochs : int
        Epochs of the backbones' pre-training.
    batch_size : int
        Mini-batch size of every torch loop.
    lr : float
        Learning rate of head fine-tuning in the untuned scenarios
        (whole-model retraining uses ``lr / 10``).
    quick : bool
        Quick mode (recorded in the outputs).
    methods : str or None
        ``--methods`` patterns for the main comparison.
    n_rows : int or None
        Subsample the data set (smoke tests).
    main_rank : int
        Rank of f+SVD / FWSVD / OURS on the linear head (config (a)).
    ranks_b, ranks_c : tuple of int
        Rank sweeps of configurations (b) and (c).
    alpha_rank : int
        Rank of the alpha ablation and of the (b) rows of ``fig4.md``.
    expgrad_max_iter : int
        ``max_iter`` of the ExponentiatedGradient peers.
    grid : Grid
        lr x epochs grid searched on the validation part by every tuned
        method (``adult`` and ``images``).
    solver : {"auto", "lbfgs", "adam", "sgd"}
        ``solver`` of every FairLowRankFineTuner. ``"auto"`` (the estimator's
        default) is full-batch L-BFGS on the cached features: it has no lr
        or epochs, so the lr x epochs ``grid`` applies to the torch loops
        and the adversary only. ``"adam"`` is the paper's protocol (and the
        one of the results before the solver existed).
    pretrain_lr : float
        Learning rate of the backbones' pre-training (every scenario; the
        untuned scenarios' defaults set it to their ``lr``).
    ours_b : bool
        Also run our extras in ``adult``: the one-hot 64-10-2 configuration
        and OURS+DP/EO (off in quick mode, for time).
    n_images : tuple of 4 int or None
        Pre-training, train, validation and test images (``images``).
    pretrain_batch_size : int or None
        Mini-batch of the pre-training (None: ``batch_size``).
    torch_threads : int
        Torch intra-op threads during the run (restored afterwards). The
        models are tiny, so one thread is as fast as several on an idle
        machine and tens of times faster on a busy one (thread
        oversubscription: a fair pre-training took 0.5 s with one thread and
        43 s with two while another process used the second core).

    Examples
    --------
    >>> s = Settings.defaults("german", quick=True)
    >>> s.seeds, s.epochs, s.lr, s.pretrain_lr
    (3, 20, 0.005, 0.005)
    """

    dataset: str = "adult"
    seeds: int = 3
    epochs: int = 5
    pretrain_epochs: int = 5
    batch_size: int = 512
    lr: float = 1e-2
    quick: bool = True
    methods: object = None
    n_rows: object = None
    main_rank: int = 1
    ranks_b: tuple = (1, 2, 4, 8)
    ranks_c: tuple = (1, 2, 3)
    alpha_rank: int = 2
    expgrad_max_iter: int = 50
    grid: Grid = Grid()
    pretrain_lr: float = 1e-2
    ours_b: bool = True
    n_images: object = None
    pretrain_batch_size: object = None
    torch_threads: int = 1
    solver: str = "auto"

    @classmethod
    def defaults(cls, dataset, *, quick=False, **overrides):
        """Per-data-set defaults for quick and full mode, then ``overrides``.

        Overrides that are None are ignored (the CLI's unset options).
        """
        base = {
            "adult": dict(pretrain_epochs=5, batch_size=256, seeds=3,
                          grid=Grid((1e-3, 1e-2), (2, 5)), ours_b=False)
            if quick else dict(pretrain_epochs=10, batch_size=256, seeds=10,
                               grid=Grid((1e-3, 1e-2), (2, 5, 10)),
                               ours_b=True),
            "adult-age-shift": dict(epochs=5, pretrain_epochs=5, batch_size=512,
                                    seeds=3)
            if quick else dict(epochs=20, pretrain_epochs=10, batch_size=256,
                               seeds=10),
            "german": dict(epochs=20, pretrain_epochs=30, batch_size=32,
                           seeds=3, lr=5e-3, pretrain_lr=5e-3)
            if quick else dict(epochs=50, pretrain_epochs=60, batch_size=32,
                               seeds=10, lr=5e-3, pretrain_lr=5e-3),
            "images": dict(seeds=3, pretrain_epochs=3, pretrain_lr=3e-3,
                           batch_size=512, pretrain_batch_size=128,
                           n_images=(3000, 3000, 600, 1200),
                           grid=Grid((1e-3, 1e-2), (2, 5)), ranks_b=(),
                           main_rank=4)
            if quick else dict(seeds=10, pretrain_epochs=5, pretrain_lr=3e-3,
                               batch_size=512, pretrain_batch_size=128,
                               n_images=IMAGE_SIZES,
                               grid=Grid((1e-3, 1e-2), (2, 5, 10)),
                               ranks_b=(1, 8), main_rank=4),
        }[dataset]
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(dataset=dataset, quick=quick, **base)
