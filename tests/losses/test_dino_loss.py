import math

import pytest
import torch
import torch.nn.functional as F

from dinoflow.losses.dino_loss import DINOLoss


class ReferenceDINOLoss(torch.nn.Module):
    """Pinned copy of ``DINOLoss`` from facebookresearch/dino ``main_dino.py`` (commit 7c446df5),
    single-process (the all-reduce is the identity) and with the temperature passed in."""

    def __init__(self, out_dim, ncrops, student_temp=0.1, center_momentum=0.9):
        super().__init__()
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.ncrops = ncrops
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(self, student_output, teacher_output, temp):
        student_out = (student_output / self.student_temp).chunk(self.ncrops)
        teacher_out = F.softmax((teacher_output - self.center) / temp, dim=-1).detach().chunk(2)
        total_loss, n_loss_terms = 0, 0
        for iq, q in enumerate(teacher_out):
            for v in range(len(student_out)):
                if v == iq:
                    continue
                total_loss += torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1).mean()
                n_loss_terms += 1
        total_loss /= n_loss_terms
        batch_center = torch.sum(teacher_output, dim=0, keepdim=True) / len(teacher_output)
        self.center = self.center * self.center_momentum + batch_center * (1 - self.center_momentum)
        return total_loss


@pytest.mark.parametrize("views,batch,temp", [(2, 4, 0.04), (6, 3, 0.07), (4, 1, 0.02)])
def test_matches_reference_over_steps(views, batch, temp):
    torch.manual_seed(0)
    ours, ref = DINOLoss(16, 0.1, 0.9), ReferenceDINOLoss(16, views, 0.1, 0.9)
    for _ in range(3):  # several steps so the center's EMA is exercised too
        student, teacher = torch.randn(views * batch, 16), torch.randn(2 * batch, 16)
        torch.testing.assert_close(ours(student, teacher, temp, views), ref(student, teacher, temp))
        torch.testing.assert_close(ours.center, ref.center)


def test_hand_computed_value():
    # K=2, one sample, 2 views. Teacher logits [0, 0] → q = [0.5, 0.5] for both views;
    # student logits [0, s*ln3] with tau_s = 1 → p = [1/4, 3/4].
    # Each of the 2 pairs: -(0.5 ln(1/4) + 0.5 ln(3/4)); mean over pairs is the same.
    loss = DINOLoss(2, student_temp=1.0, center_momentum=0.9)
    student = torch.tensor([[0.0, math.log(3)], [0.0, math.log(3)]])
    value = loss(student, torch.zeros(2, 2), teacher_temp=1.0, num_student_views=2)
    expected = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_center_updates_after_the_loss_with_momentum():
    loss = DINOLoss(3, center_momentum=0.9)
    teacher = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    loss(torch.randn(2, 3), teacher, 0.04, 2)
    torch.testing.assert_close(loss.center, torch.tensor([[0.2, 0.2, 0.2]]))


def test_gradient_flows_only_to_student():
    student = torch.randn(4, 8, requires_grad=True)
    teacher = torch.randn(4, 8, requires_grad=True)
    DINOLoss(8)(student, teacher, 0.04, 2).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None
