"""A convolutional LSTM (Shi et al., NeurIPS 2015) run over the frames of a clip.

Space-Time Distillation (Xiao et al., CVPR 2021, Sec. 3.3) feeds the per-frame spatial
attention maps of the teacher and of the student through one shared ConvLSTM and compares the
memory cells it holds after the last frame: the cell summarises how the maps evolve in time, and
matching it is meant to transfer the teacher's temporal behaviour. It is not guaranteed to: the shared
ConvLSTM is trained on the very L2 it produces, so it can shrink that loss by itself, with the student
unchanged (a review trained it alone against fixed, unrelated student features: 3.6e-3 -> 5e-8 in 3000
AdamW steps), and the paper's freeze rule (< 1e-8) then holds a ConvLSTM that barely tells maps apart.
``TimeDistillationLoss`` follows the paper; watch its value against the student's own metrics.
The gates follow Shi et al.'s Eq. 3 without the peephole terms::

    i_t = sigmoid(W_xi * x_t + W_hi * h_{t-1} + b_i)
    f_t = sigmoid(W_xf * x_t + W_hf * h_{t-1} + b_f)
    o_t = sigmoid(W_xo * x_t + W_ho * h_{t-1} + b_o)
    c_t = f_t . c_{t-1} + i_t . tanh(W_xc * x_t + W_hc * h_{t-1} + b_c)
    h_t = o_t . tanh(c_t)

where ``*`` is a 2-D convolution and ``.`` the element-wise product.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError


class ConvLSTMCell(nn.Module):
    """One ConvLSTM step: (x_t, h_{t-1}, c_{t-1}) -> (h_t, c_t).

    Parameters:
        in_channels: channels of the input x_t.
        hidden_channels: channels of the hidden state h and the memory cell c.
        kernel_size: odd side of the square convolution kernels (same padding).
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise InputError(f"kernel_size must be odd so that the state keeps its size, got {kernel_size}")
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        # the four gates (i, f, o, g) of Eq. 3 from one convolution over [x_t, h_{t-1}]
        self.gates = nn.Conv2d(in_channels + hidden_channels, 4 * hidden_channels, kernel_size,
                               padding=kernel_size // 2)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: x (b, c_in, h, w); state (h_prev, c_prev), each (b, c_hidden, h, w). Returns (h_t, c_t)."""
        h_prev, c_prev = state
        i, f, o, g = self.gates(torch.cat([x, h_prev], dim=1)).chunk(4, dim=1)  # 4 x (b, c_hidden, h, w)
        c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class ConvLSTM(nn.Module):
    """A ConvLSTM cell unrolled over the frames of a clip, starting from zero states.

    Parameters:
        in_channels: channels per frame of the input sequence.
        hidden_channels: channels of the hidden state and memory cell.
        kernel_size: odd convolution kernel side.
    """

    def __init__(self, in_channels: int = 1, hidden_channels: int = 8, kernel_size: int = 3) -> None:
        super().__init__()
        self.cell = ConvLSTMCell(in_channels, hidden_channels, kernel_size)

    def forward(self, sequence: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run over a clip.

        Args:
            sequence: (b, n, c_in, h, w) per-frame inputs, n >= 1.

        Returns:
            (h_n, c_n): hidden state and memory cell after the last frame, each (b, c_hidden, h, w).
        """
        if sequence.ndim != 5 or sequence.shape[2] != self.cell.in_channels:
            raise InputError(f"ConvLSTM expects (b, n, {self.cell.in_channels}, h, w) sequences, "
                             f"got shape {tuple(sequence.shape)}")
        b, n, _, height, width = sequence.shape
        zeros = sequence.new_zeros(b, self.cell.hidden_channels, height, width)  # (b, c_hidden, h, w)
        state = (zeros, zeros)
        for t in range(n):
            state = self.cell(sequence[:, t], state)
        return state
