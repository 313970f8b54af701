"""PyTorch reference values for appendix-a: the book's appendix A code, run on the CPU.

Run through scripts/reference/generate.sh.
"""
import json

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

out = {"torch": torch.__version__}

# A.3-A.4: logistic regression on one example, gradients two ways.
y = torch.tensor([1.0])
x1 = torch.tensor([1.1])
w1 = torch.tensor([2.2], requires_grad=True)
b = torch.tensor([0.0], requires_grad=True)
z = x1 * w1 + b
a = torch.sigmoid(z)
loss = F.binary_cross_entropy(a, y)
out["logistic_loss"] = loss.item()
grad_w1 = torch.autograd.grad(loss, w1, retain_graph=True)
grad_b = torch.autograd.grad(loss, b, retain_graph=True)
out["grad_w1"] = grad_w1[0].item()
out["grad_b"] = grad_b[0].item()


class NeuralNetwork(torch.nn.Module):
    def __init__(self, num_inputs, num_outputs):
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(num_inputs, 30), torch.nn.ReLU(),
            torch.nn.Linear(30, 20), torch.nn.ReLU(),
            torch.nn.Linear(20, num_outputs),
        )

    def forward(self, x):
        return self.layers(x)


# A.5: the multilayer perceptron.
torch.manual_seed(123)
model = NeuralNetwork(50, 3)
out["mlp_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
out["mlp_layer0_weight_first_row_first5"] = model.layers[0].weight[0, :5].tolist()
X = torch.rand((1, 50))
with torch.no_grad():
    logits = model(X)
out["mlp_out"] = logits.tolist()
out["mlp_softmax"] = torch.softmax(logits, dim=1).tolist()

# A.6: the toy data set and loaders.
X_train = torch.tensor([[-1.2, 3.1], [-0.9, 2.9], [-0.5, 2.6], [2.3, -1.1], [2.7, -1.5]])
y_train = torch.tensor([0, 0, 0, 1, 1])
X_test = torch.tensor([[-0.8, 2.8], [2.6, -1.6]])
y_test = torch.tensor([0, 1])


class ToyDataset(Dataset):
    def __init__(self, X, y):
        self.features, self.labels = X, y

    def __getitem__(self, index):
        return self.features[index], self.labels[index]

    def __len__(self):
        return self.labels.shape[0]


train_ds, test_ds = ToyDataset(X_train, y_train), ToyDataset(X_test, y_test)
torch.manual_seed(123)
train_loader = DataLoader(train_ds, batch_size=2, shuffle=True, num_workers=0)
out["loader_batches"] = [{"features": x.tolist(), "labels": y.tolist()} for x, y in train_loader]
train_loader = DataLoader(train_ds, batch_size=2, shuffle=True, num_workers=0, drop_last=True)
out["loader_batches_drop_last"] = [{"features": x.tolist(), "labels": y.tolist()} for x, y in train_loader]
test_loader = DataLoader(test_ds, batch_size=2, shuffle=False, num_workers=0)

# A.7: training.
torch.manual_seed(123)
model = NeuralNetwork(num_inputs=2, num_outputs=2)
optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
losses = []
for epoch in range(3):
    model.train()
    for features, labels in train_loader:
        logits = model(features)
        loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
out["train_losses"] = losses
model.eval()
with torch.no_grad():
    outputs = model(X_train)
out["train_outputs"] = outputs.tolist()
out["train_probas"] = torch.softmax(outputs, dim=1).tolist()
out["train_predictions"] = torch.argmax(outputs, dim=1).tolist()


def compute_accuracy(model, dataloader):
    model = model.eval()
    correct, total = 0.0, 0
    for features, labels in dataloader:
        with torch.no_grad():
            logits = model(features)
        predictions = torch.argmax(logits, dim=1)
        correct += torch.sum(labels == predictions)
        total += len(labels)
    return (correct / total).item()


out["train_accuracy"] = compute_accuracy(model, train_loader)
out["test_accuracy"] = compute_accuracy(model, test_loader)
out["nn_2_2_params"] = sum(p.numel() for p in NeuralNetwork(2, 2).parameters() if p.requires_grad)
print(json.dumps(out, indent=1))
