"""A PyTorch-style script: an MLP classifier on the MNIST test split (AdamW, cosine schedule).

    python examples/pytorch_style_mnist.py [STEPS]      # data: $MNIST_DIR or ../shared/data/mnist

It runs under PyTorch with only the three marked import lines changed.
"""
import os
import sys

import numpy as np
from scratchgen.data import load_mnist                  # NumPy arrays: fine for either library

import scratchgen as torch                              # import torch
from scratchgen import nn, optim                        # from torch import nn, optim
import scratchgen.functional as F                       # import torch.nn.functional as F

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 600
images, labels = load_mnist(os.environ.get("MNIST_DIR", "../shared/data/mnist"), "test")
x = torch.tensor(images.reshape(-1, 784).astype(np.float32) / 255)
y = torch.tensor(labels.astype(np.int64))
x_train, y_train, x_test, y_test = x[:8000], y[:8000], x[8000:], y[8000:]

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
opt = optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-2)
sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
for step in range(steps):
    idx = torch.randint(0, 8000, (128,))
    loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
    if step % 100 == 0 or step == steps - 1:
        print(f"step {step:4d}  loss {loss.item():.3f}  lr {sched.get_last_lr()[0]:.2e}")

with torch.no_grad():
    logits = model(x_test)
    accuracy = (logits.argmax(dim=1) == y_test).float().mean().item()
    confidence = F.softmax(logits, dim=1).max(dim=1).values.mean().item()
print(f"held-out accuracy {accuracy:.3f}, mean confidence {confidence:.3f}")
