"""A small ResNet (basic blocks) for 3 x 32 x 32 images, written in torch only.

The architecture follows He et al. (2016)'s CIFAR ResNets at a smaller
width: a 3x3 stem, three stages of one basic block each (widths ``w``,
``2w``, ``4w``; stride 2 at the start of stages 2 and 3), global average
pooling. :func:`build_resnet` returns ``nn.Sequential(trunk, head)`` with a
2-layer head ``Linear(4w, 32) -> ReLU -> Linear(32, n_out)`` named ``"1"``,
the part that FairLowRankFineTuner factorizes.
"""

import torch
from torch import nn

__all__ = ["BasicBlock", "build_resnet", "RESNET_HEAD", "resnet_description"]

RESNET_HEAD = "1"


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1) shortcut.

    Parameters
    ----------
    c_in, c_out : int
        Input and output channels.
    stride : int, default=1
        Stride of the first convolution (and of the shortcut).

    Examples
    --------
    >>> block = BasicBlock(8, 16, stride=2)
    >>> tuple(block(torch.zeros(2, 8, 32, 32)).shape)
    (2, 16, 16, 16)
    """

    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1,
                               bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


def resnet_description(width=8):
    """One line describing :func:`build_resnet`'s architecture."""
    return (f"small ResNet (basic blocks, in the package): stem Conv3x3(3,{width})"
            f"-BN-ReLU, stages BasicBlock({width},{width}), "
            f"BasicBlock({width},{2 * width},s2), "
            f"BasicBlock({2 * width},{4 * width},s2), global average pool "
            f"({4 * width} features); head '1' = Linear({4 * width},32)-ReLU-"
            "Linear(32,2)")


def build_resnet(*, width=8, n_out=2, seed=0):
    """Return the small ResNet ``nn.Sequential(trunk, head)`` in eval mode.

    Parameters
    ----------
    width : int, default=8
        Channels of the first stage (then ``2 * width`` and ``4 * width``).
    n_out : int, default=2
        Number of output logits.
    seed : int, default=0
        Seed of the initialization.

    Returns
    -------
    model : torch.nn.Sequential

    Examples
    --------
    >>> model = build_resnet(width=4)
    >>> tuple(model(torch.zeros(2, 3, 32, 32)).shape)
    (2, 2)
    """
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        trunk = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width), nn.ReLU(),
            BasicBlock(width, width),
            BasicBlock(width, 2 * width, stride=2),
            BasicBlock(2 * width, 4 * width, stride=2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        head = nn.Sequential(nn.Linear(4 * width, 32), nn.ReLU(),
                             nn.Linear(32, n_out))
        model = nn.Sequential(trunk, head)
    finally:
        torch.random.set_rng_state(state)
    return model.eval()
