import pytest
import torch

from dinoflow.losses.centering import sinkhorn_knopp
from dinoflow.losses.ibot_loss import IBOTPatchLoss


class ReferenceSinkhorn:
    """Pinned single-process copy of DINOv2's ``SinkhornKnoppTeacher`` (dinov2 b8931f7b,
    ``dinov2/loss/dino_clstoken_loss.py``)."""

    @staticmethod
    def __call__(teacher_output, teacher_temp, n_iterations=3):
        Q = torch.exp(teacher_output.float() / teacher_temp).t()
        B, K = Q.shape[1], Q.shape[0]
        Q /= torch.sum(Q)
        for _ in range(n_iterations):
            Q /= torch.sum(Q, dim=1, keepdim=True)
            Q /= K
            Q /= torch.sum(Q, dim=0, keepdim=True)
            Q /= B
        Q *= B
        return Q.t()


@pytest.mark.parametrize("batch,k,temp", [(8, 16, 0.07), (32, 5, 0.04), (3, 64, 0.1)])
def test_sinkhorn_matches_reference_and_balances(batch, k, temp):
    torch.manual_seed(0)
    logits = torch.randn(batch, k)
    ours = sinkhorn_knopp(logits, temp)
    torch.testing.assert_close(ours, ReferenceSinkhorn()(logits, temp), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.sum(1), torch.ones(batch))  # each sample: a distribution


def test_sinkhorn_converges_to_equal_prototype_usage():
    torch.manual_seed(0)
    balanced = sinkhorn_knopp(torch.randn(16, 4), teacher_temp=0.5, iterations=50)
    torch.testing.assert_close(balanced.sum(0), torch.full((4,), 4.0), rtol=0, atol=1e-3)
    torch.testing.assert_close(balanced.sum(1), torch.ones(16), rtol=0, atol=1e-5)


def test_sinkhorn_is_finite_for_large_logits():
    logits = torch.tensor([[500.0, 0.0], [0.0, 500.0]])
    out = sinkhorn_knopp(logits, 0.04)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.eye(2), atol=1e-4, rtol=0)


def test_ibot_weights_each_patch_by_its_image_mask_count():
    # Image 0: 1 masked patch; image 1: 2 masked patches; image 2: none (still counts in the mean).
    masks = torch.tensor([[True, False, False], [True, True, False], [False, False, False]])
    loss = IBOTPatchLoss(2, student_temp=1.0, center_momentum=0.9)
    teacher = torch.zeros(3, 2)  # q = [0.5, 0.5] everywhere
    student = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, torch.log(torch.tensor(3.0))]])
    ce_uniform = torch.log(torch.tensor(2.0))  # CE(q, [0.5, 0.5])
    ce_skewed = -(0.5 * torch.log(torch.tensor(0.25)) + 0.5 * torch.log(torch.tensor(0.75)))
    expected = (ce_uniform / 1 + ce_uniform / 2 + ce_skewed / 2) / 3
    value = loss(student, teacher, masks, teacher_temp=1.0)
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    torch.testing.assert_close(loss.center, torch.zeros(1, 2))  # mean of zero logits
