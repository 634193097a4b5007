#!/usr/bin/python3
"""Checks every op of the catalogue against PyTorch in float64: runs torch_agreement (which prints
each case's inputs, output, output gradient and input gradients as computed by our ops), computes
the same cases with torch, and compares the output and every input gradient.

    tests/ops/torch_agreement.py build/tests/torch_agreement

One line per case: the largest absolute difference of the output (y) and of each input's gradient
(d0, d1, ...). Exits 1 naming the case and tensor of every mismatch, including a case present in
only one of the two tables, so that they cannot drift apart. Needs Debian's python3-torch
(apt-get install python3-torch), hence /usr/bin/python3; exits 77 (skipped) without it."""
import json, math, subprocess, sys

try:
    import torch, torch.nn.functional as F
except ImportError:
    print("torch_agreement: torch is not installed (apt-get install python3-torch); skipped")
    sys.exit(77)

# Tight float64 tolerances: both sides compute the same sums, in possibly different orders.
RTOL, ATOL = 1e-10, 1e-12

def subsampling2d(x, weight, bias, kernel, stride):
    """LeCun's subsampling layer in PyTorch: kernel^2 times the window mean is the window sum."""
    y = F.avg_pool2d(x, kernel, stride=stride) * kernel * kernel * weight.view(1, -1, 1, 1)
    return y if bias is None else y + bias.view(1, -1, 1, 1)


# Case name -> the same computation in PyTorch, from the inputs x (list) and the targets t.
# Keys match the names in torch_agreement.cpp.
CASES = {
    # Arithmetic, with broadcasting.
    "add": lambda x, t: torch.add(x[0], x[1]),
    "add_broadcast_row": lambda x, t: torch.add(x[0], x[1]),
    "add_broadcast_channels": lambda x, t: torch.add(x[0], x[1]),
    "sub": lambda x, t: torch.sub(x[0], x[1]),
    "sub_broadcast_both": lambda x, t: torch.sub(x[0], x[1]),
    "mul": lambda x, t: torch.mul(x[0], x[1]),
    "mul_broadcast_3d": lambda x, t: torch.mul(x[0], x[1]),
    "mul_broadcast_both": lambda x, t: torch.mul(x[0], x[1]),
    "mul_by_0d": lambda x, t: torch.mul(x[0], x[1]),
    "mul_same_input": lambda x, t: torch.mul(x[0], x[0]),
    "div": lambda x, t: torch.div(x[0], x[1]),
    "div_broadcast_3d": lambda x, t: torch.div(x[0], x[1]),
    "div_broadcast_numerator": lambda x, t: torch.div(x[0], x[1]),
    "neg": lambda x, t: torch.neg(x[0]),
    "exp": lambda x, t: torch.exp(x[0]),
    "log": lambda x, t: torch.log(x[0]),
    "pow_2": lambda x, t: torch.pow(x[0], 2.0),
    "pow_3": lambda x, t: torch.pow(x[0], 3.0),
    "pow_0": lambda x, t: torch.pow(x[0], 0.0),
    "pow_half": lambda x, t: torch.pow(x[0], 0.5),
    "pow_minus_1_5": lambda x, t: torch.pow(x[0], -1.5),
    # The operators, with tensors and with floats on either side.
    "operator_add": lambda x, t: x[0] + x[1],
    "operator_sub": lambda x, t: x[0] - x[1],
    "operator_mul": lambda x, t: x[0] * x[1],
    "operator_div": lambda x, t: x[0] / x[1],
    "operator_neg": lambda x, t: -x[0],
    "operator_times_2": lambda x, t: x[0] * 2.0,
    "operator_with_doubles":
        lambda x, t: (x[0] + 1.0) / 2.0 - 3.0 / x[1] + (2.0 - x[0]) * 0.5 + 0.25 * x[1] - x[1] / 4.0 - 1.0,
    "operator_scaled_tanh": lambda x, t: 1.7159 * torch.tanh(x[0] * (2.0 / 3)),
    # Reductions.
    "sum": lambda x, t: torch.sum(x[0]),
    "mean": lambda x, t: torch.mean(x[0]),
    "sum_dim1": lambda x, t: torch.sum(x[0], dim=[1]),
    "sum_dim1_keepdim": lambda x, t: torch.sum(x[0], dim=[1], keepdim=True),
    "sum_dims_0_2": lambda x, t: torch.sum(x[0], dim=[0, 2]),
    "sum_dims_0_2_keepdim": lambda x, t: torch.sum(x[0], dim=[0, 2], keepdim=True),
    "sum_dim_last": lambda x, t: torch.sum(x[0], dim=[-1]),
    "sum_dims_4d_keepdim": lambda x, t: torch.sum(x[0], dim=[-1, 1], keepdim=True),
    "mean_dim1": lambda x, t: torch.mean(x[0], dim=[1]),
    "mean_dim1_keepdim": lambda x, t: torch.mean(x[0], dim=[1], keepdim=True),
    "mean_dims_0_2": lambda x, t: torch.mean(x[0], dim=[0, 2]),
    "mean_dims_0_2_keepdim": lambda x, t: torch.mean(x[0], dim=[0, 2], keepdim=True),
    "mean_dim_last": lambda x, t: torch.mean(x[0], dim=[-1]),
    "mean_dim_last_keepdim": lambda x, t: torch.mean(x[0], dim=[-1], keepdim=True),
    "logsumexp_dim1": lambda x, t: torch.logsumexp(x[0], dim=1),
    "logsumexp_dim0_keepdim": lambda x, t: torch.logsumexp(x[0], dim=0, keepdim=True),
    "logsumexp_3d_last": lambda x, t: torch.logsumexp(x[0], dim=-1),
    "logsumexp_large": lambda x, t: torch.logsumexp(x[0], dim=1),
    # Activations.
    "relu": lambda x, t: F.relu(x[0]),
    "tanh": lambda x, t: torch.tanh(x[0]),
    "scaled_tanh": lambda x, t: 1.7159 * torch.tanh(x[0] * (2.0 / 3)),
    "sigmoid": lambda x, t: torch.sigmoid(x[0]),
    # Matrix products.
    "matmul": lambda x, t: torch.matmul(x[0], x[1]),
    "linear": lambda x, t: F.linear(x[0], x[1], x[2]),
    "linear_no_bias": lambda x, t: F.linear(x[0], x[1]),
    # Convolution.
    "conv2d": lambda x, t: F.conv2d(x[0], x[1], x[2]),
    "conv2d_no_bias": lambda x, t: F.conv2d(x[0], x[1]),
    "conv2d_stride2": lambda x, t: F.conv2d(x[0], x[1], x[2], stride=2),
    "conv2d_padding2": lambda x, t: F.conv2d(x[0], x[1], x[2], padding=2),
    "conv2d_stride2_padding2": lambda x, t: F.conv2d(x[0], x[1], x[2], stride=2, padding=2),
    "conv2d_whole_input": lambda x, t: F.conv2d(x[0], x[1], x[2]),
    "squared_distances": lambda x, t: ((x[0][:, None, :] - x[1][None, :, :]) ** 2).sum(-1),
    # Pooling.
    "max_pool2d_2x2": lambda x, t: F.max_pool2d(x[0], 2),
    "max_pool2d_3x3_stride2": lambda x, t: F.max_pool2d(x[0], 3, stride=2),
    "avg_pool2d_2x2": lambda x, t: F.avg_pool2d(x[0], 2),
    "avg_pool2d_3x3_stride2": lambda x, t: F.avg_pool2d(x[0], 3, stride=2),
    "avg_pool2d_3x3_stride1": lambda x, t: F.avg_pool2d(x[0], 3, stride=1),
    # LeCun's subsampling: each window's sum times a weight per channel, plus a bias per channel.
    "subsampling2d_2x2": lambda x, t: subsampling2d(x[0], x[1], x[2], 2, 2),
    "subsampling2d_3x3_stride2_no_bias": lambda x, t: subsampling2d(x[0], x[1], None, 3, 2),
    # Softmax family.
    "softmax_dim1": lambda x, t: F.softmax(x[0], dim=1),
    "softmax_dim0": lambda x, t: F.softmax(x[0], dim=0),
    "softmax_3d_middle": lambda x, t: F.softmax(x[0], dim=-2),
    "log_softmax_dim1": lambda x, t: F.log_softmax(x[0], dim=1),
    "log_softmax_dim0": lambda x, t: F.log_softmax(x[0], dim=0),
    "log_softmax_3d_last": lambda x, t: F.log_softmax(x[0], dim=-1),
    # Losses.
    "nll_loss": lambda x, t: F.nll_loss(x[0], t),
    "nll_loss_of_log_softmax": lambda x, t: F.nll_loss(F.log_softmax(x[0], dim=1), t),
    "cross_entropy": lambda x, t: F.cross_entropy(x[0], t),
    "cross_entropy_large_logits": lambda x, t: F.cross_entropy(x[0], t),
    # Dropout: only its deterministic cases (see torch_agreement.cpp).
    "dropout_eval": lambda x, t: F.dropout(x[0], 0.5, training=False),
    "dropout_p1_training": lambda x, t: F.dropout(x[0], 1.0, training=True),
    # Shape ops.
    "reshape": lambda x, t: x[0].reshape(4, -1),
    "flatten": lambda x, t: torch.flatten(x[0], 1),
    "flatten_start2": lambda x, t: torch.flatten(x[0], 2),
    "cat_dim0": lambda x, t: torch.cat(x, dim=0),
    "cat_dim1": lambda x, t: torch.cat(x, dim=1),
    "cat_dim_last": lambda x, t: torch.cat(x, dim=-1),
    "transpose_3d": lambda x, t: torch.transpose(x[0], 0, 2),
    "transpose_3d_adjacent": lambda x, t: torch.transpose(x[0], 1, 2),
    "transpose_4d": lambda x, t: torch.transpose(x[0], 1, 3),
    "transpose_4d_negative": lambda x, t: torch.transpose(x[0], -1, -2),
    # Chains.
    "conv2d_scaled_tanh_subsampling2d_fused": lambda x, t: subsampling2d(
        1.7159 * torch.tanh(F.conv2d(x[0], x[1], x[2]) * (2.0 / 3)), x[3], x[4], 2, 2),
    "conv2d_relu_max_pool2d_fused": lambda x, t: F.max_pool2d(F.relu(F.conv2d(x[0], x[1], x[2], padding=1)), 2),
    "conv2d_max_pool2d_fused": lambda x, t: F.max_pool2d(F.conv2d(x[0], x[1], x[2], stride=2, padding=2), 3, stride=2),
    "two_layer_net": lambda x, t: F.cross_entropy(
        F.linear(torch.flatten(F.avg_pool2d(torch.tanh(F.conv2d(x[0], x[1], x[2])), 2), 1), x[3], x[4]), t),
}


def tensor(entry):
    """A float64 tensor from {"shape", "values"}; JSON null (how NaN and inf are written) is NaN."""
    values = [math.nan if v is None else v for v in entry["values"]]
    return torch.tensor(values, dtype=torch.float64).reshape(entry["shape"])


def compare(label, ours, theirs, errors, problems):
    """Appends (label, max abs difference) to errors, and to problems "<label>: <what>" if the shapes
    differ or the values are not allclose."""
    if theirs is None:
        problems.append(f"{label}: PyTorch computed no gradient")
        return
    if ours is None:
        problems.append(f"{label}: we computed no gradient")
        return
    ours = tensor(ours)
    theirs = theirs.detach()
    if list(ours.shape) != list(theirs.shape):
        problems.append(f"{label}: shape {list(ours.shape)}, PyTorch's {list(theirs.shape)}")
        return
    error = (ours - theirs).abs().max().item() if ours.numel() else 0.0
    errors.append((label, error))
    if not torch.allclose(ours, theirs, rtol=RTOL, atol=ATOL):
        problems.append(f"{label}: max abs difference {error:.3e} (rtol {RTOL}, atol {ATOL})")


def check(case):
    """One case: the max abs difference of its output ("<case> y") and of each input's gradient
    ("<case> d0", ...), and the problems found (none when it agrees)."""
    name = case["name"]
    if "error" in case:
        return [], [f"{name}: our ops threw: {case['error']}"]
    inputs = [tensor(entry).requires_grad_() for entry in case["inputs"]]
    targets = torch.tensor(case["targets"], dtype=torch.long)
    try:
        output = CASES[name](inputs, targets)
        output.backward(tensor(case["grad_output"]))
    except Exception as e:  # any error in a lambda is its case's failure
        return [], [f"{name}: PyTorch threw: {e}"]
    errors, problems = [], []
    compare(f"{name} y", case["output"], output, errors, problems)
    for i, (grad, x) in enumerate(zip(case["grads"], inputs)):
        compare(f"{name} d{i}", grad, x.grad, errors, problems)
    return errors, problems


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    run = subprocess.run([sys.argv[1]], capture_output=True, text=True)
    if run.returncode != 0:
        print(f"torch_agreement: FAILED: {sys.argv[1]} exited with {run.returncode}\n{run.stderr}")
        return 1
    document = json.loads(run.stdout)
    torch.set_default_dtype(torch.float64)  # for any tensor a case's lambda makes
    problems = []
    names = [case["name"] for case in document["cases"]]
    for name in sorted(set(names) - set(CASES)):
        problems.append(f"{name}: no PyTorch counterpart in torch_agreement.py")
    for name in sorted(set(CASES) - set(names)):
        problems.append(f"{name}: in torch_agreement.py but not in torch_agreement.cpp")
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{name}: more than one case of this name in torch_agreement.cpp")
    width = max(map(len, names))
    largest = ("", 0.0)
    for case in document["cases"]:
        name = case["name"]
        if name not in CASES:
            continue
        errors, case_problems = check(case)
        columns = "  ".join(f"{label.removeprefix(name + ' ')} {error:.1e}" for label, error in errors)
        print(f"{name:<{width}}  {'MISMATCH' if case_problems else 'ok':<8}  {columns}")
        largest = max([largest] + errors, key=lambda e: e[1])
        problems += case_problems
    print(f"PyTorch {torch.__version__}, {document['dtype']}, rtol {RTOL}, atol {ATOL}: {len(names)} cases, "
          f"largest difference {largest[1]:.1e} ({largest[0]}), {len(problems)} problems")
    for problem in problems:
        print(f"torch_agreement: FAILED: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
