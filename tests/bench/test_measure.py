import torch
import torch.nn.functional as F

from psa_zoo.bench._measure import count_flops, peak_memory, saved_for_backward, time_interleaved


def test_peak_memory_sees_temporaries_and_their_release():
    mib = 2**20

    def two_temporaries_in_sequence():
        a = torch.empty(mib // 4)  # 1 MiB
        del a
        b = torch.empty(mib // 2)  # 2 MiB, allocated after a was freed
        return b

    def two_live_temporaries():
        a = torch.empty(mib // 4)
        b = torch.empty(mib // 2)
        return a, b

    assert peak_memory(two_temporaries_in_sequence) == 2 * mib
    assert peak_memory(two_live_temporaries) == 3 * mib


def test_peak_memory_counts_autograd_buffers():
    x = torch.randn(256, 256, requires_grad=True)
    inference = peak_memory(lambda: torch.no_grad()(lambda: (x @ x).relu().sum())())
    training = peak_memory(lambda: (x @ x).relu().sum().backward())
    assert inference >= 256 * 256 * 4
    assert training > inference  # saved activations and the gradient


def test_count_flops_matmul_and_cpu_attention():
    a, b = torch.randn(8, 16), torch.randn(16, 4)
    assert count_flops(lambda: a @ b) == 2 * 8 * 16 * 4
    q = torch.randn(2, 3, 10, 8)
    v = torch.randn(2, 3, 12, 5)
    k = torch.randn(2, 3, 12, 8)
    assert count_flops(lambda: F.scaled_dot_product_attention(q, k, v)) == 2 * 6 * 10 * 12 * (8 + 5)


def test_time_interleaved_runs_every_candidate_round_robin():
    calls: list[str] = []
    medians = time_interleaved(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1
    )
    assert calls == ["a", "b"] + ["a", "b"] * 3
    assert set(medians) == {"a", "b"}
    assert all(v >= 0 for v in medians.values())


def test_peak_memory_ignores_views_of_existing_tensors():
    weight = torch.randn(512, 512)  # 1 MiB, made before tracking

    assert peak_memory(lambda: weight.view(256, 1024).t()) == 0
    assert peak_memory(lambda: weight.view(-1) * 2) == 512 * 512 * 4


def test_saved_for_backward_counts_saved_storages_once_without_exclusions_and_parameters():
    a = torch.randn(64, 64, requires_grad=True)  # 16 KiB
    b = torch.randn(64, 64, requires_grad=True)
    assert saved_for_backward(lambda: a * b) == 2 * a.nbytes  # mul saves both factors
    assert saved_for_backward(lambda: a * b, exclude=(a,)) == b.nbytes
    assert saved_for_backward(lambda: a * a) == a.nbytes  # one storage, saved twice
    linear = torch.nn.Linear(64, 32)
    weights = (a, *linear.parameters())
    assert saved_for_backward(lambda: linear(a), exclude=(a,)) == linear.weight.nbytes
    assert saved_for_backward(lambda: linear(a), exclude=weights) == 0
    assert saved_for_backward(lambda: linear(a).exp(), exclude=weights) == 64 * 32 * 4  # exp keeps its output
    with torch.no_grad():
        assert saved_for_backward(lambda: a * b) == 0
