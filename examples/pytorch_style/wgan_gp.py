"""A WGAN-GP toy script (Gulrajani et al.'s gan_toy.py, 8 Gaussians), as written for PyTorch;
only the import block chooses the library. The critic's gradient penalty differentiates
``autograd.grad(..., create_graph=True)`` a second time.

    python examples/pytorch_style/wgan_gp.py --quick
    PYTORCH_STYLE=torch python examples/pytorch_style/wgan_gp.py --quick
"""
import argparse
import os

import numpy as np

if os.environ.get("PYTORCH_STYLE") == "torch":
    import torch
    import torch.nn as nn
    import torch.optim as optim
    from torch import autograd
else:
    import scratchgen as torch
    import scratchgen.nn as nn
    import scratchgen.optim as optim
    from scratchgen import autograd

DIM = 512            # model dimensionality
LAMBDA = .1          # smaller lambda seems to help for toy tasks specifically
CRITIC_ITERS = 5     # how many critic iterations per generator iteration
BATCH_SIZE = 256


class Generator(nn.Module):
    def __init__(self):
        super(Generator, self).__init__()
        main = nn.Sequential(
            nn.Linear(2, DIM),
            nn.ReLU(True),
            nn.Linear(DIM, DIM),
            nn.ReLU(True),
            nn.Linear(DIM, DIM),
            nn.ReLU(True),
            nn.Linear(DIM, 2),
        )
        self.main = main

    def forward(self, noise, real_data):
        output = self.main(noise)
        return output


class Discriminator(nn.Module):
    def __init__(self):
        super(Discriminator, self).__init__()
        main = nn.Sequential(
            nn.Linear(2, DIM),
            nn.ReLU(True),
            nn.Linear(DIM, DIM),
            nn.ReLU(True),
            nn.Linear(DIM, DIM),
            nn.ReLU(True),
            nn.Linear(DIM, 1),
        )
        self.main = main

    def forward(self, inputs):
        output = self.main(inputs)
        return output.view(-1)


def weights_init(m):
    classname = m.__class__.__name__
    if classname.find('Linear') != -1:
        m.weight.data.normal_(0.0, 0.02)
        m.bias.data.fill_(0)
    elif classname.find('BatchNorm') != -1:
        m.weight.data.normal_(1.0, 0.02)
        m.bias.data.fill_(0)


def inf_train_gen(rng):
    scale = 2.
    centers = [(1, 0), (-1, 0), (0, 1), (0, -1), (1. / np.sqrt(2), 1. / np.sqrt(2)),
               (1. / np.sqrt(2), -1. / np.sqrt(2)), (-1. / np.sqrt(2), 1. / np.sqrt(2)),
               (-1. / np.sqrt(2), -1. / np.sqrt(2))]
    centers = [(scale * x, scale * y) for x, y in centers]
    while True:
        point = rng.standard_normal((BATCH_SIZE, 2)) * .02
        center = np.array(centers)[rng.integers(0, 8, BATCH_SIZE)]
        yield ((point + center) / 1.414).astype('float32')  # stdev


def calc_gradient_penalty(netD, real_data, fake_data):
    alpha = torch.rand(BATCH_SIZE, 1)
    alpha = alpha.expand(real_data.size())
    interpolates = alpha * real_data + ((1 - alpha) * fake_data)
    interpolates = autograd.Variable(interpolates, requires_grad=True)
    disc_interpolates = netD(interpolates)
    gradients = autograd.grad(outputs=disc_interpolates, inputs=interpolates,
                              grad_outputs=torch.ones(disc_interpolates.size()),
                              create_graph=True, retain_graph=True, only_inputs=True)[0]
    gradient_penalty = ((gradients.norm(2, dim=1) - 1) ** 2).mean() * LAMBDA
    return gradient_penalty


def main():
    global DIM, BATCH_SIZE
    parser = argparse.ArgumentParser()
    parser.add_argument('--iters', type=int, default=100000)
    parser.add_argument('--quick', action='store_true', help='20 generator steps, DIM 64')
    parser.add_argument('--save-init')
    parser.add_argument('--load-init')
    args = parser.parse_args()
    if args.quick:
        args.iters, DIM, BATCH_SIZE = 20, 64, 64
    torch.manual_seed(1)
    netG = Generator()
    netD = Discriminator()
    netD.apply(weights_init)
    netG.apply(weights_init)
    if args.load_init:
        state = torch.load(args.load_init)
        netG.load_state_dict(state['G'])
        netD.load_state_dict(state['D'])
    if args.save_init:
        torch.save({'G': netG.state_dict(), 'D': netD.state_dict()}, args.save_init)
    optimizerD = optim.Adam(netD.parameters(), lr=1e-4, betas=(0.5, 0.9))
    optimizerG = optim.Adam(netG.parameters(), lr=1e-4, betas=(0.5, 0.9))
    data = inf_train_gen(np.random.default_rng(0))

    # deterministic: the penalty at the midpoints of a fixed real and noise batch
    real = torch.tensor(next(data))
    mid = autograd.Variable(0.5 * real + 0.5 * torch.tensor(np.zeros((BATCH_SIZE, 2),
                                                                     'float32')),
                            requires_grad=True)
    g = autograd.grad(netD(mid).sum(), mid, create_graph=True)[0]
    print(f"init critic {netD(real).mean().item():.6e} grad norm {g.norm(2).item():.6e}")

    for iteration in range(args.iters):
        ############################
        # (1) Update D network
        ###########################
        for p in netD.parameters():  # reset requires_grad
            p.requires_grad = True  # they are set to False below in netG update
        for iter_d in range(CRITIC_ITERS):
            real_data = torch.tensor(next(data))
            netD.zero_grad()
            D_real = netD(real_data).mean()
            noise = torch.randn(BATCH_SIZE, 2)
            with torch.no_grad():
                fake = netG(noise, real_data)
            D_fake = netD(fake).mean()
            gradient_penalty = calc_gradient_penalty(netD, real_data, fake)
            D_cost = D_fake - D_real + gradient_penalty
            D_cost.backward()
            Wasserstein_D = D_real - D_fake
            optimizerD.step()
        ############################
        # (2) Update G network
        ###########################
        for p in netD.parameters():
            p.requires_grad = False  # to avoid computation
        netG.zero_grad()
        noise = torch.randn(BATCH_SIZE, 2)
        fake = netG(noise, real_data)
        G_cost = -netD(fake).mean()
        G_cost.backward()
        optimizerG.step()
        if iteration % 5 == 0 or iteration == args.iters - 1:
            print(f"iter {iteration}  D_cost {D_cost.item():.5f}  G_cost {G_cost.item():.5f}"
                  f"  W_D {Wasserstein_D.item():.5f}")
    print(f"final D_cost {D_cost.item():.6f} G_cost {G_cost.item():.6f}")


if __name__ == '__main__':
    main()
