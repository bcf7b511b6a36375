"""pytorch/examples' VAE on MNIST (Kingma & Welling), as written for PyTorch; only the import
block chooses the library.

    python examples/pytorch_style/vae.py --quick
    PYTORCH_STYLE=torch python examples/pytorch_style/vae.py --quick
"""
import argparse
import os

from mnist_data import load

if os.environ.get("PYTORCH_STYLE") == "torch":
    import torch
    from torch import nn, optim
    from torch.nn import functional as F
    from torch.utils.data import DataLoader, TensorDataset
else:
    import scratchgen as torch
    from scratchgen import nn, optim
    from scratchgen.nn import functional as F
    from scratchgen.utils.data import DataLoader, TensorDataset


class VAE(nn.Module):
    def __init__(self):
        super(VAE, self).__init__()

        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


# Reconstruction + KL divergence losses summed over all elements and batch
def loss_function(recon_x, x, mu, logvar):
    BCE = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction='sum')
    KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return BCE + KLD


def main():
    parser = argparse.ArgumentParser(description='VAE MNIST Example')
    parser.add_argument('--batch-size', type=int, default=128)
    parser.add_argument('--epochs', type=int, default=10)
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--log-interval', type=int, default=10)
    parser.add_argument('--quick', action='store_true', help='2 epochs of 512 digits')
    parser.add_argument('--save-init')
    parser.add_argument('--load-init')
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.log_interval = 2, 2
    n = 512 if args.quick else None
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    x, y = load("train", n)
    xt, yt = load("test", 256 if args.quick else None)
    train_loader = DataLoader(TensorDataset(torch.tensor(x), torch.tensor(y)),
                              batch_size=args.batch_size, shuffle=True)
    test_loader = DataLoader(TensorDataset(torch.tensor(xt), torch.tensor(yt)),
                             batch_size=args.batch_size, shuffle=False)

    model = VAE().to(device)
    if args.load_init:
        model.load_state_dict(torch.load(args.load_init))
    if args.save_init:
        torch.save(model.state_dict(), args.save_init)
    optimizer = optim.Adam(model.parameters(), lr=1e-3)

    with torch.no_grad():  # deterministic: decode the posterior mean
        data = next(iter(test_loader))[0].to(device)
        mu, logvar = model.encode(data.view(-1, 784))
        init = F.binary_cross_entropy(model.decode(mu), data.view(-1, 784), reduction='sum')
        print(f"init recon loss {init.item() / len(data):.6f}")

    for epoch in range(1, args.epochs + 1):
        model.train()
        train_loss = 0
        for batch_idx, (data, _) in enumerate(train_loader):
            data = data.to(device)
            optimizer.zero_grad()
            recon_batch, mu, logvar = model(data)
            loss = loss_function(recon_batch, data, mu, logvar)
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
            if batch_idx % args.log_interval == 0:
                print('Train Epoch: {} [{}/{} ({:.0f}%)]\tLoss: {:.6f}'.format(
                    epoch, batch_idx * len(data), len(train_loader.dataset),
                    100. * batch_idx / len(train_loader), loss.item() / len(data)))
        print('====> Epoch: {} Average loss: {:.4f}'.format(
              epoch, train_loss / len(train_loader.dataset)))

        model.eval()
        test_loss = 0
        with torch.no_grad():
            for i, (data, _) in enumerate(test_loader):
                data = data.to(device)
                recon_batch, mu, logvar = model(data)
                test_loss += loss_function(recon_batch, data, mu, logvar).item()
        test_loss /= len(test_loader.dataset)
        print('====> Test set loss: {:.4f}'.format(test_loss))
        with torch.no_grad():
            sample = torch.randn(64, 20).to(device)
            sample = model.decode(sample).cpu()
            assert sample.size() == (64, 784)
    print(f"final test loss {test_loss:.6f}")


if __name__ == "__main__":
    main()
