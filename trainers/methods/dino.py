"""DINO (Caron et al. 2021) and DINO with negative samples (thesis 003 ch. 6-7).

Student = backbone + DINO head (lightly ``DINOProjectionHead``: 3-layer MLP, L2-norm,
weight-normalised last layer with K outputs); teacher = EMA copy of the student
(lightly ``update_momentum``, m cosine-scheduled from ``momentum`` to 1). The teacher
sees the global views only, the student global + local views; lightly ``DINOLoss``
gives the *mean* of the thesis's Eq. 3 over its view pairs and the batch:
``L_pos = (1/P) sum_{x'' in G} sum_{x' in V, x' != x''} -p_t(x'') . log p_s(x')`` with
``P = G (G + L - 1)`` pairs, teacher outputs centred and sharpened by tau_t.

Teacher temperature (thesis 003): "During training, tau_t is linearly decreased from
0.04 to 0.01 in each epoch" (ch. 7, §3.3 Training; ch. 6 §4 uses the same schedule
from 0.055 for CIFAR10 / 0.050 for CIFAR100 to 0.01; "tau_t = 0.01 and tau_s = 0.1").
Defaults here: ``warmup_teacher_temp`` 0.04 at epoch 0, falling linearly once per
epoch to ``teacher_temp`` 0.01 at the last planned epoch
(``warmup_teacher_temp_epochs`` unset = every epoch of the run, planned from
``--epochs``/``--max-steps``, or from the time budget with ``--max-minutes``:
:mod:`curate.trainers.schedule`); ``warmup_teacher_temp_epochs N`` reaches it after N epochs, 0 = constant
``teacher_temp``. :meth:`DINO.teacher_temperature` gives the value for an epoch.

``dino-neg`` adds negatives: a shifting transform R (``--neg-shift``, see
:mod:`curate.trainers.augment`) then the DINO augmentations, applied to the batch's
images (``in-dist``), to auxiliary images (``aux``) or to either (``combined``, p=0.5
per sample); ``neg_global_crops`` global + ``neg_local_crops`` local negative views go
through the student only, with the uniform-target loss of Eq. 4,
``L_neg = -(1/K) sum_{x' in V_neg} sum_k log p_s^k(x')`` (its minimum, log K per view,
is reached by a uniform student output); :func:`negative_loss` is its mean over the
N negative views and the batch. Total (Eq. 5): ``L_pos + lambda L_neg``.
lambda scaling: Eq. 3 and Eq. 4 are *sums* over views (P pairs, N negative views),
while both losses here are means, so the loss trained is
``L_pos_mean + lambda * (N / P) * L_neg_mean`` = (Eq. 3 + lambda Eq. 4) / P: the thesis's
objective up to the constant 1/P, and ``neg_weight`` = lambda = 1 means what it means
in the thesis (N / P = 7/14 = 0.5 with the defaults here, 9/18 = 0.5 with the paper's
2 + 8 views and 1 + 8 negatives; recorded as ``neg_loss_factor``).

Paper settings: ViT-S/16, K = 4096, tau_s = 0.1, tau_t 0.04 -> 0.01, lambda = 1, 2
global + 8 local views, AdamW lr 0.0005 x batch/256 cosine. Small-data defaults here:
2 global + 6 local views, head hidden 512 / bottleneck 128 (paper 2048 / 256),
momentum 0.996. Features for ``curate embed``: the teacher backbone.
Cost per step: teacher on G globals, student on G + L (+ negatives) views; local views
at half size cost ~1/4 of a global view each.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from lightly.loss import DINOLoss
from lightly.models.modules import DINOProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum

from curate.errors import CurateError
from curate.trainers.augment import SHIFTS, NegativeViews, Views, base_transform, dino_augs
from curate.trainers.base import Option, TrainModule, forward_views, register


def negative_loss(student_out: list[torch.Tensor] | torch.Tensor, student_temp: float) -> torch.Tensor:
    """Uniform-target cross-entropy of negative views: ``-(1/K) sum_k log p_s^k``.

    ``student_out``: (B, K) logits per negative view (list or (V, B, K) tensor).
    Returns the mean over views and batch; equals log K for a uniform softmax, larger
    otherwise. Cost O(V B K).
    """
    s = torch.stack(list(student_out)) if isinstance(student_out, (list, tuple)) else student_out
    return -F.log_softmax(s / student_temp, dim=-1).mean()


@register
class DINO(TrainModule):
    method = "dino"
    default_lr = 5e-4
    lr_scaled = True
    default_weight_decay = 0.04
    OPTIONS = (
        Option("out_dim", int, 4096, "K: number of soft classes (DINO head output)"),
        Option("hidden_dim", int, 512, "DINO head hidden dimension"),
        Option("bottleneck_dim", int, 128, "DINO head bottleneck dimension"),
        Option("student_temp", float, 0.1, "student temperature tau_s"),
        Option("teacher_temp", float, 0.01, "teacher temperature tau_t at the end of the "
               "linear schedule (thesis 003: 0.04 -> 0.01)"),
        Option("warmup_teacher_temp", float, 0.04, "teacher temperature at the first epoch"),
        Option("warmup_teacher_temp_epochs", int, None, "epochs of the linear teacher-temperature "
               "schedule (default: the whole run; 0: constant --teacher-temp)"),
        Option("center_momentum", float, 0.9, "momentum of the teacher-output centre"),
        Option("momentum", float, 0.996, "teacher EMA momentum (cosine-scheduled to 1)"),
        Option("global_crops", int, 2, "number of global views (teacher + student)"),
        Option("local_crops", int, 6, "number of local views (student only)"),
        Option("local_size", int, None, "local view size in px (default: per image size)"),
        Option("freeze_last_layer", int, 1, "epochs during which the head's last layer is frozen"),
    )

    def __init__(self, **kw):
        super().__init__(**kw)
        o = self.opts
        if o["global_crops"] < 1 or o["local_crops"] < 0:
            raise CurateError("DINO needs --global-crops >= 1 and --local-crops >= 0")
        if o["global_crops"] + o["local_crops"] < 2:
            raise CurateError("DINO needs at least 2 views (global + local crops)")
        self.student_backbone = self.backbone
        self.student_head = DINOProjectionHead(self.feature_dim, o["hidden_dim"],
                                               o["bottleneck_dim"], o["out_dim"],
                                               freeze_last_layer=o["freeze_last_layer"])
        self.teacher_backbone = copy.deepcopy(self.backbone)
        self.teacher_head = DINOProjectionHead(self.feature_dim, o["hidden_dim"],
                                               o["bottleneck_dim"], o["out_dim"])
        self.teacher_head.load_state_dict(self.student_head.state_dict())
        deactivate_requires_grad(self.teacher_backbone)
        deactivate_requires_grad(self.teacher_head)
        self.criterion = DINOLoss(output_dim=o["out_dim"], teacher_temp=o["teacher_temp"],
                                  warmup_teacher_temp=o["warmup_teacher_temp"],
                                  warmup_teacher_temp_epochs=1,  # we pass the temperature
                                  student_temp=o["student_temp"],
                                  center_momentum=o["center_momentum"])

    def scoring_backbone(self):
        return self.teacher_backbone

    def _augs(self):
        h, o = self.hparams, self.opts
        return dino_augs(h.image_size, h.channels, o["global_crops"], o["local_crops"], o["local_size"])

    def train_views(self):
        glob, loc = self._augs()
        return Views(self.hparams.image_size, glob + loc)

    def student(self, x):
        return self.student_head(self.student_backbone(x).flatten(1))

    def teacher(self, x):
        return self.teacher_head(self.teacher_backbone(x).flatten(1))

    def planned_epochs(self) -> int:
        """Epochs the run will take (from max_epochs / max_steps; 1 without a Trainer)."""
        t = self._trainer
        nb = getattr(t, "num_training_batches", None) if t is not None else None
        if t is None or not nb or nb == float("inf"):
            return max(1, int(t.max_epochs)) if t is not None and (t.max_epochs or 0) > 0 else 1
        return max(1, -(-self.total_steps() // int(nb)))

    def teacher_temperature(self, epoch: int | None = None) -> float:
        """tau_t for ``epoch`` (default: the current one): linear from
        ``warmup_teacher_temp`` at epoch 0 to ``teacher_temp`` at epoch n - 1, constant
        after; n = ``warmup_teacher_temp_epochs`` or :meth:`planned_epochs` (module doc);
        n = 0: ``teacher_temp``; n = 1: ``warmup_teacher_temp``."""
        o = self.opts
        e = self.current_epoch if epoch is None else int(epoch)
        n = o["warmup_teacher_temp_epochs"]
        n = self.planned_epochs() if n is None else int(n)
        if n <= 0 or (n > 1 and e >= n - 1):
            return o["teacher_temp"]
        if n == 1:  # a one-epoch run stays at the start value
            return o["warmup_teacher_temp"]
        return o["warmup_teacher_temp"] + (o["teacher_temp"] - o["warmup_teacher_temp"]) * e / (n - 1)

    def on_train_epoch_start(self):
        self.log("teacher_temp", self.teacher_temperature(), on_step=False, on_epoch=True,
                 prog_bar=False)

    def positive_loss(self, views):
        g = self.opts["global_crops"]
        m = self.momentum(self.opts["momentum"])
        update_momentum(self.student_backbone, self.teacher_backbone, m=m)
        update_momentum(self.student_head, self.teacher_head, m=m)
        with torch.no_grad():
            t_out = forward_views(self.teacher, views[:g])
        s_out = forward_views(self.student, views)
        return self.criterion(t_out, s_out, teacher_temp=self.teacher_temperature())

    def training_step(self, batch, batch_idx):
        if batch is None:
            return None
        views = batch[0]
        loss = self.positive_loss(views)
        self.log_loss("loss", loss, len(views[0]))
        return loss

    def on_after_backward(self):
        self.student_head.cancel_last_layer_gradients(self.current_epoch)


@register
class DINONeg(DINO):
    method = "dino-neg"
    OPTIONS = DINO.OPTIONS + (
        Option("neg_shift", str, "rot", "shifting transform for negatives", SHIFTS),
        Option("neg_source", str, "in-dist", "images the negatives come from",
               ("in-dist", "aux", "combined")),
        Option("aux", str, None, "folder or ingested batch of auxiliary images (aux/combined)"),
        Option("neg_weight", float, 1.0, "lambda: weight of the negative loss"),
        Option("neg_global_crops", int, 1, "number of global negative views"),
        Option("neg_local_crops", int, None, "number of local negative views (default: --local-crops)"),
    )

    def __init__(self, **kw):
        super().__init__(**kw)
        o = self.opts
        if o["neg_local_crops"] is None:
            o["neg_local_crops"] = o["local_crops"]
            self.hparams["neg_local_crops"] = o["local_crops"]
        if o["neg_global_crops"] + o["neg_local_crops"] < 1:
            raise CurateError("dino-neg needs at least one negative view")
        if o["neg_source"] != "in-dist" and not o["aux"]:
            raise CurateError(f"--neg-source {o['neg_source']} needs --aux PATH")
        self.aux_source = None  # set by set_aux (a datamodule source) before training

    def neg_loss_factor(self) -> float:
        """N / P: negative views over positive view pairs, so that ``neg_weight`` is the
        thesis's lambda (Eq. 3-5 sum over views; both losses here are means)."""
        o = self.opts
        g, v = o["global_crops"], o["global_crops"] + o["local_crops"]
        return (o["neg_global_crops"] + o["neg_local_crops"]) / (g * (v - 1))

    def record_params(self):
        return {**super().record_params(), "neg_loss_factor": self.neg_loss_factor()}

    def set_aux(self, source) -> None:
        """Auxiliary images: any object with ``len`` and ``load(i) -> PIL``."""
        self.aux_source = source

    def train_views(self):
        h, o = self.hparams, self.opts
        glob, loc = self._augs()
        nglob, nloc = dino_augs(h.image_size, h.channels, o["neg_global_crops"],
                                o["neg_local_crops"], o["local_size"])
        aux = None
        if o["neg_source"] != "in-dist":
            if self.aux_source is None:
                raise CurateError(f"--neg-source {o['neg_source']} needs auxiliary images (--aux)")
            aux = _AuxLoader(self.aux_source, base_transform(h.image_size))
        neg = NegativeViews(o["neg_shift"], nglob[:o["neg_global_crops"]], nloc, o["neg_source"],
                            aux, len(self.aux_source) if aux else 0)
        return Views(h.image_size, glob + loc, negatives=neg)

    def training_step(self, batch, batch_idx):
        if batch is None:
            return None
        views = batch[0]
        n_pos = self.opts["global_crops"] + self.opts["local_crops"]
        loss_pos = self.positive_loss(views[:n_pos])
        loss_neg = negative_loss(forward_views(self.student, views[n_pos:]), self.opts["student_temp"])
        loss = loss_pos + self.opts["neg_weight"] * self.neg_loss_factor() * loss_neg
        b = len(views[0])
        self.log_loss("loss", loss, b)
        self.log_loss("loss_pos", loss_pos, b, prog_bar=False)
        self.log_loss("loss_neg", loss_neg, b, prog_bar=False)
        return loss


class _AuxLoader:
    """index -> uint8 base tensor of an auxiliary image (retries unreadable files)."""

    def __init__(self, source, base):
        self.source, self.base = source, base

    def __call__(self, i: int) -> torch.Tensor:
        for k in range(len(self.source)):
            img = self.source.load((i + k) % len(self.source))
            if img is not None:
                return self.base(img)
        raise CurateError("no readable auxiliary image")
