"""The DP aggregators and DP flags, checked with numbers that can fail.

A DP guarantee is only as good as the mechanism that actually runs: the
accountant in `experiments.privacy.accounting` assumes a clip on each client's whole
update (global L2 norm over all weight tensors), Gaussian noise of a given
std, fresh noise on every call (and on every client for `local`), and a
sampling scheme. Each assumption is measured here on the aggregation
processes the suite builds (`experiments.aggregators.chain.build`):

* fixed: the aggregate of all-zero updates is pure noise; its std over ~10^4
  coordinates matches noise_multiplier * clip / K by a two-sided chi-square
  test (sum x^2 / sigma^2 ~ chi2(n)), its mean is 0, it is Gaussian (KS),
  and two calls draw independent noise. Each test also shows that the same
  data reject the wrong scalings (local-style z*clip/sqrt(K), no division),
  so the tolerance has power.
* clipping (fixed, local, adaptive, tree, noise 0): the aggregate equals the
  numpy mean of each update scaled by min(1, clip / ||update||), to 1e-5,
  on single tensors and on multi-tensor updates (global, not per-tensor,
  norm). Central DP divides by K (the expected cohort, as Poisson sampling
  needs); local DP by the clients that arrived.
* local: one client's output std is z*clip; K clients' mean has std
  z*clip/sqrt(K) (independent noise per client), not z*clip/K (central)
  nor z*clip (the same noise on every client).
* adaptive clipping: adaptive_clip_test.py.
* tree (DP-FTRL) on the suite's logistic weight shapes: noise 0 gives the
  exact clipped mean every round; with noise, the cumulative sum's noise
  variance follows the tree (sigma^2, 2/3, 5/3, 4/7 sigma^2 for rounds 1-4),
  which independent per-round noise (t sigma^2) would not.
* flags: bad DP combinations are one-line UsageErrors naming the flag; an
  unreachable --target_epsilon ends `python -m experiments.train` with exit 2.
* end to end on the tiny fixture: metrics.csv epsilon columns equal the
  accountant's values for each round, and hparams.json holds the resolved
  delta = 1/N^1.1; adaptive runs report the adapted clip; a Poisson round
  that selects nobody still releases the central noise the accountant
  charges for.

Noise is drawn by TFF without a seed, so the statistical checks are random;
each uses a false-alarm probability of ALPHA = 1e-6.
"""

from __future__ import annotations

import csv
import math
import os
import re
import subprocess
import sys
import types
from collections.abc import Iterator

import dp_accounting as dpa
import numpy as np
import pytest
from scipy import stats

from experiments.aggregators import chain
from experiments.config import ExperimentConfig, validate
from experiments.core import results, tff_worker
from experiments.core.errors import UsageError
from experiments.core.paths import REPO_ROOT
from experiments.privacy import accounting
from experiments.simulation import sampling

ALPHA = 1e-6  # false-alarm probability of each statistical check
Z_ALPHA = float(stats.norm.isf(ALPHA / 2))  # two-sided normal quantile (~4.9)
DIM = 4000  # coordinates per noise draw
CALLS = 10  # noise draws pooled per check: 40 000 samples, std known to ~1.7%


def _dp_config(**overrides) -> ExperimentConfig:
    """A DP config the way the suite builds one (unweighted FedAvg)."""
    base = dict(algorithm="fedavg_unweighted", dp="fixed", noise_multiplier=1.0,
                clip=1.0, clients_per_round=4)
    return ExperimentConfig(**{**base, **overrides})


def _chi2_bounds(n: int) -> tuple[float, float]:
    return tuple(float(b) for b in stats.chi2.ppf([ALPHA / 2, 1 - ALPHA / 2], n))


def _std_consistent(samples: np.ndarray, sigma: float) -> bool:
    """Two-sided chi-square test that zero-mean `samples` are N(0, sigma^2) in scale."""
    x = np.asarray(samples, dtype=np.float64).ravel()
    low, high = _chi2_bounds(x.size)
    return low <= float(np.sum(x**2)) / sigma**2 <= high


def _assert_noise(samples: np.ndarray, sigma: float, wrong: dict[str, float]) -> None:
    """Samples are N(0, sigma^2); every `wrong` alternative std is rejected by them."""
    x = np.asarray(samples, dtype=np.float64).ravel()
    observed = float(np.sqrt(np.mean(x**2)))
    low, high = _chi2_bounds(x.size)
    tolerance = max(1 - math.sqrt(low / x.size), math.sqrt(high / x.size) - 1)
    assert _std_consistent(x, sigma), (
        f"noise std {observed:.5f}, expected {sigma:.5f} (+-{100 * tolerance:.2f}% "
        f"at alpha {ALPHA}, n={x.size})")
    assert abs(float(np.mean(x))) <= Z_ALPHA * sigma / math.sqrt(x.size), (
        f"noise mean {np.mean(x):.5f} is not 0 (std {sigma:.5f}, n={x.size})")
    for label, alternative in wrong.items():
        assert not _std_consistent(x, alternative), (
            f"the check cannot tell {sigma:.5f} from {label} {alternative:.5f}")


def _clipped(v: list[np.ndarray], clip: float) -> list[np.ndarray]:
    """v scaled to global L2 norm <= clip (float64)."""
    norm = math.sqrt(sum(float(np.sum(np.square(t, dtype=np.float64))) for t in v))
    scale = min(1.0, clip / norm) if norm > 0 else 1.0
    return [np.asarray(t, dtype=np.float64) * scale for t in v]


def _updates(rng: np.random.Generator, shapes: list[tuple[int, ...]],
             norms: list[float]) -> list[list[np.ndarray]]:
    """One multi-tensor update per norm: a random direction of that global norm."""
    out = []
    for norm in norms:
        parts = [rng.normal(size=s) for s in shapes]
        total = math.sqrt(sum(float(np.sum(p**2)) for p in parts))
        out.append([(p * norm / total).astype(np.float32) for p in parts])
    return out


def _flat(value) -> np.ndarray:
    if isinstance(value, list | tuple):
        return np.concatenate([np.ravel(np.asarray(v, np.float64)) for v in value])
    return np.ravel(np.asarray(value, np.float64))


# ----- TFF: one worker for the module -----------------------------------------------------
@pytest.fixture(scope="module")
def _session() -> Iterator[None]:
    with tff_worker.session():
        yield


@pytest.fixture
def tff(_session):
    """TFF, with the module's worker running.

    An end-to-end `train()` owns a session of its own and stops the worker
    when it returns; `tff_worker.start` is a no-op while the worker is alive and
    starts a new one if such a run stopped it.
    """
    tff_worker.start()
    import tensorflow_federated

    return tensorflow_federated


def _process(tff, config: ExperimentConfig, value_type, weight_specs=None):
    factory = chain.build(chain.ChainSettings.of(config), weight_specs)
    process = factory.create(value_type)
    return process, process.initialize()


def _zeros_noise(tff, config: ExperimentConfig, clients: int, calls: int = CALLS
                 ) -> np.ndarray:
    """Aggregates of `clients` all-zero updates over `calls` calls: shape (calls, DIM)."""
    process, state = _process(tff, config, tff.TensorType(np.float32, [DIM]))
    zeros = [np.zeros(DIM, np.float32)] * clients
    draws = []
    for _ in range(calls):
        output = process.next(state, zeros)
        state = output.state
        draws.append(np.asarray(output.result, np.float64))
    return np.stack(draws)


# ----- fixed clip, central Gaussian noise ------------------------------------------------
def test_fixed_noise_std_is_z_clip_over_k_and_fresh_each_call(tff) -> None:
    z, clip, k = 1.3, 0.7, 4
    draws = _zeros_noise(tff, _dp_config(noise_multiplier=z, clip=clip,
                                         clients_per_round=k), clients=k)
    sigma = z * clip / k
    _assert_noise(draws, sigma, wrong={"z*clip/sqrt(K) (local)": z * clip / math.sqrt(k),
                                       "z*clip (no division by K)": z * clip,
                                       "5% too small": 0.95 * sigma,
                                       "5% too large": 1.05 * sigma})
    assert stats.kstest(draws.ravel() / sigma, "norm").pvalue > ALPHA, "not Gaussian"
    # Fresh, independent noise on every call: no two draws are equal or correlated.
    pairs = [(i, j) for i in range(CALLS) for j in range(i + 1, CALLS)]
    bound = float(stats.norm.isf(ALPHA / 2 / len(pairs))) / math.sqrt(DIM)
    for i, j in pairs:
        assert not np.array_equal(draws[i], draws[j]), f"calls {i} and {j} drew the same"
        r = float(np.corrcoef(draws[i], draws[j])[0, 1])
        assert abs(r) < bound, f"calls {i} and {j} correlate: r={r:.4f} (bound {bound:.4f})"


def test_fixed_dp_event_is_the_configured_gaussian(tff) -> None:
    config = _dp_config(noise_multiplier=1.7, clip=0.3)
    process, state = _process(tff, config, tff.TensorType(np.float32, [3]))
    state = process.next(state, [np.ones(3, np.float32)] * 4).state
    event = dpa.DpEvent.from_named_tuple(state.dp_event)
    assert isinstance(event, dpa.GaussianDpEvent)
    assert event.noise_multiplier == pytest.approx(1.7, rel=1e-6)  # float32 in TF


# ----- clipping (noise 0) ----------------------------------------------------------------
NORMS = [0.0, 0.3, 1.0, 1.0 + 1e-3, 2.5, 40.0, 1e4]  # clip 1.0: some far above


@pytest.mark.parametrize("dp", ["fixed", "local"])
@pytest.mark.parametrize("shapes", [[(50,)], [(7, 4), (3,)]], ids=["vector", "struct"])
def test_aggregate_is_the_mean_of_clipped_updates(tff, dp: str, shapes) -> None:
    clip = 1.0
    k = len(NORMS)
    updates = _updates(np.random.default_rng(1), shapes, NORMS)
    config = _dp_config(dp=dp, noise_multiplier=0.0, clip=clip, clients_per_round=k)
    spec = [(np.float32, s) for s in shapes]
    value_type = tff.types.to_type(spec if len(shapes) > 1 else spec[0])
    process, state = _process(tff, config, value_type)
    values = updates if len(shapes) > 1 else [u[0] for u in updates]
    result = _flat(process.next(state, values).result)
    clipped = [_flat(_clipped(u, clip)) for u in updates]
    np.testing.assert_allclose(result, np.mean(clipped, axis=0), atol=1e-5, rtol=0)
    # Clipping is on the whole update (global norm), never per tensor: the
    # per-tensor alternative gives another answer here.
    if len(shapes) > 1:
        per_tensor = [_flat([_clipped([t], clip)[0] for t in u]) for u in updates]
        assert not np.allclose(result, np.mean(per_tensor, axis=0), atol=1e-3)
    for c in clipped:
        assert np.linalg.norm(c) <= clip * (1 + 1e-6)


def test_central_dp_divides_by_k_local_dp_by_the_clients_present(tff) -> None:
    # Poisson cohorts vary in size; central DP's sensitivity (and so the
    # accounting) needs a fixed denominator K, while local DP's guarantee does
    # not depend on the server's averaging.
    k, present = 4, 6
    updates = [np.full(5, 0.1 * (i + 1), np.float32) for i in range(present)]
    total = np.sum([_flat(_clipped([u], 0.5)) for u in updates], axis=0)
    for dp, denominator in (("fixed", k), ("local", present)):
        config = _dp_config(dp=dp, noise_multiplier=0.0, clip=0.5, clients_per_round=k)
        process, state = _process(tff, config, tff.TensorType(np.float32, [5]))
        result = _flat(process.next(state, updates).result)
        np.testing.assert_allclose(result, total / denominator, atol=1e-6, err_msg=dp)


# ----- local DP: noise on each client ----------------------------------------------------
def test_local_noise_is_per_client(tff) -> None:
    z, clip, k = 0.9, 1.5, 9
    config = _dp_config(dp="local", noise_multiplier=z, clip=clip, clients_per_round=k)
    one = _zeros_noise(tff, config, clients=1, calls=CALLS // 2)
    _assert_noise(one, z * clip, wrong={"z*clip/K (central)": z * clip / k})
    many = _zeros_noise(tff, config, clients=k, calls=CALLS // 2)
    _assert_noise(many, z * clip / math.sqrt(k),
                  wrong={"z*clip/K (central)": z * clip / k,
                         "z*clip (same noise on every client)": z * clip})


def test_local_noise_sits_on_top_of_the_clipped_mean(tff) -> None:
    z, clip, k = 0.5, 1.0, 3
    config = _dp_config(dp="local", noise_multiplier=z, clip=clip, clients_per_round=k)
    process, state = _process(tff, config, tff.TensorType(np.float32, [DIM]))
    updates = _updates(np.random.default_rng(2), [(DIM,)], [0.5, 3.0, 30.0])
    clipped_mean = np.mean([_flat(_clipped(u, clip)) for u in updates], axis=0)
    result = _flat(process.next(state, [u[0] for u in updates]).result)
    sigma = z * clip / math.sqrt(k)
    _assert_noise(result - clipped_mean, sigma, wrong={})
    # Control: measured against the unclipped mean, the residual is too large.
    unclipped_mean = np.mean([_flat(u) for u in updates], axis=0)
    assert not _std_consistent(result - unclipped_mean, sigma)


# ----- tree aggregation (DP-FTRL) --------------------------------------------------------
def _logistic_specs() -> list:
    """The suite's weight specs of the logistic EMNIST model (784x62 and 62)."""
    from experiments.algorithms import builder
    from tasks import emnist_models

    task = types.SimpleNamespace(build_model=lambda seed: emnist_models.logistic(62, seed))
    return builder._weight_specs(task, 0)  # noqa: SLF001


def _tree(tff, **overrides):
    specs = _logistic_specs()
    config = _dp_config(dp="tree", client_sampling="cyclic", **overrides)
    value_type = tff.types.to_type([(s.dtype.as_numpy_dtype, tuple(s.shape))
                                    for s in specs])
    return _process(tff, config, value_type, specs), [tuple(s.shape) for s in specs]


def test_tree_without_noise_is_the_clipped_mean_every_round(tff) -> None:
    k, clip = 3, 2.0
    (process, state), shapes = _tree(tff, noise_multiplier=0.0, clip=clip,
                                     clients_per_round=k)
    assert shapes == [(784, 62), (62,)]
    rng = np.random.default_rng(3)
    for round_num in range(4):
        norms = [0.5 * (round_num + 1), 3.0, 100.0]
        updates = _updates(rng, shapes, norms)
        output = process.next(state, updates)
        state = output.state
        expected = np.mean([_flat(_clipped(u, clip)) for u in updates], axis=0)
        np.testing.assert_allclose(_flat(output.result), expected, atol=1e-5, rtol=0,
                                   err_msg=f"round {round_num + 1}")


def test_tree_noise_follows_the_tree(tff) -> None:
    # TF Privacy's efficient tree (Honaker): every tree node [a, b] gets its
    # own noise of std sigma = z*clip (then / K), and the cumulative sum after
    # t rounds is read off the tree, each complete node being estimated as the
    # inverse-variance mix of its own noisy value and its children's sum.
    # Noise variance of the cumulative sum, in units of sigma^2:
    #   t=1: leaf [1]                                              1
    #   t=2: node [1,2] (1) mixed with leaves 1+2 (2)              1/(1 + 1/2) = 2/3
    #   t=3: estimate of [1,2] + leaf [3]                          2/3 + 1 = 5/3
    #   t=4: node [1,4] (1) mixed with [1,2] + [3,4] (2/3 + 2/3)   1/(1 + 3/4) = 4/7
    # Independent noise per round would give 1, 2, 3, 4.
    z, clip, k = 1.2, 1.0, 4
    (process, state), shapes = _tree(tff, noise_multiplier=z, clip=clip,
                                     clients_per_round=k)
    zeros = [np.zeros(s, np.float32) for s in shapes]
    total = 0.0
    for round_num, ratio in enumerate([1.0, 2 / 3, 5 / 3, 4 / 7], start=1):
        output = process.next(state, [zeros] * k)
        state = output.state
        total = total + _flat(output.result)
        sigma = z * clip / k * math.sqrt(ratio)
        _assert_noise(total, sigma, wrong={"independent per-round noise":
                                           z * clip / k * math.sqrt(round_num)}
                      if round_num > 1 else {})


# ----- flag validation -------------------------------------------------------------------
@pytest.mark.parametrize("overrides,names", [
    ({"algorithm": "fedavg"}, ["--algorithm=fedavg_unweighted"]),
    ({"algorithm": "fedprox"}, ["--algorithm=fedavg_unweighted"]),
    ({"noise_multiplier": -0.5}, ["--noise_multiplier"]),
    ({"noise_multiplier": math.nan}, ["--noise_multiplier"]),
    ({"clip": 0.0}, ["--clip"]),
    ({"clip": -1.0}, ["--clip"]),
    ({"dp": "none"}, ["--noise_multiplier", "--dp"]),
    ({"dp": "none", "noise_multiplier": 0.0, "target_epsilon": 2.0},
     ["--target_epsilon", "--dp"]),
    ({"dp": "tree"}, ["--dp=tree", "--client_sampling=cyclic"]),
    ({"dp": "fixed", "client_sampling": "cyclic"}, ["--client_sampling=cyclic"]),
    ({"dp": "none", "noise_multiplier": 0.0, "client_sampling": "cyclic"},
     ["--client_sampling=cyclic"]),
    ({"target_epsilon": 3.0}, ["--target_epsilon", "--noise_multiplier"]),
])
def test_bad_dp_combinations_are_one_line_usage_errors(overrides: dict,
                                                       names: list[str]) -> None:
    validate(_dp_config())  # the base is valid: each error below is the override's
    with pytest.raises(UsageError) as error:
        validate(_dp_config(**overrides))
    message = str(error.value)
    assert "\n" not in message
    for name in names:
        assert name in message, message


def test_valid_dp_combinations_pass() -> None:
    for overrides in ({"dp": "tree", "client_sampling": "cyclic"},
                      {"dp": "local", "client_sampling": "poisson"},
                      {"dp": "adaptive", "noise_multiplier": 0.0, "target_epsilon": 5.0},
                      {"noise_multiplier": 0.0}):
        validate(_dp_config(**overrides))


def test_unreachable_target_epsilon_exits_2_with_one_line(emnist_dir: str, tmp_path) -> None:
    # The fixture has 6 clients, so the default delta (6^-1.1 = 0.14) is so
    # large that even epsilon 1e-9 is reachable; a real delta makes it not.
    command = [sys.executable, "-m", "experiments.train", "--dp=fixed",
               "--algorithm=fedavg_unweighted", "--target_epsilon=1e-9",
               "--total_rounds=100000", "--delta=1e-6", "--clients_per_round=3",
               "--model=logistic", f"--data_dir={emnist_dir}",
               f"--root_output_dir={tmp_path}", "--noprogress"]
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-3000:]
    assert re.match(r"train: error: --target_epsilon=1e-09 is unreachable in 100000 rounds",
                    lines[0]), lines[0]
    assert done.stdout == ""


# ----- end to end on the tiny fixture ----------------------------------------------------
def _run(emnist_dir: str, root: str, **overrides) -> tuple[str, list[dict[str, str]]]:
    from experiments import train

    config = ExperimentConfig(**{
        "data_dir": emnist_dir, "root_output_dir": root, "model": "logistic",
        "algorithm": "fedavg_unweighted", "client_sampling": "poisson",
        "clients_per_round": 3, "total_rounds": 3, "rounds_per_eval": 2,
        "client_batch_size": 4, "progress": False, **overrides})
    validate(config)
    path, _ = train.train(config)
    with open(os.path.join(path, results.METRICS), newline="") as f:
        return path, list(csv.DictReader(f))


def test_end_to_end_fixed_dp_reports_the_accountants_epsilon(emnist_dir: str,
                                                             tmp_path) -> None:
    path, rows = _run(emnist_dir, str(tmp_path), dp="fixed", noise_multiplier=1.1)
    population = 6
    delta = population ** -1.1
    config = results.load_hparams(path)["config"]
    assert config["delta"] == pytest.approx(delta, rel=1e-12)
    assert config["noise_multiplier"] == 1.1
    m = accounting.Mechanism("fixed", 1.1, 3, population, "poisson", delta)
    assert [int(r["round"]) for r in rows] == [1, 2, 3]
    epsilons = [float(r["epsilon_rdp"]) for r in rows]
    assert epsilons[0] > 0 and all(b > a for a, b in zip(epsilons, epsilons[1:],
                                                         strict=False))
    for r, row in enumerate(rows, start=1):
        assert float(row["epsilon_rdp"]) == pytest.approx(accounting.epsilon_rdp(m, r),
                                                          rel=1e-12)
        if r == 1:
            assert row["epsilon_pld"] == ""  # not an eval round
        else:
            assert float(row["epsilon_pld"]) == pytest.approx(accounting.epsilon_pld(m, r),
                                                              rel=1e-12)
        assert int(row["clients"]) == sampling.poisson_clients(population, 3, 0, r).size
        assert row["dp_clip"] == ""  # fixed clip: nothing adaptive to report


def test_end_to_end_adaptive_reports_the_adapted_clip(emnist_dir: str, tmp_path) -> None:
    config = dict(dp="adaptive", noise_multiplier=0.2, client_sampling="uniform",
                  initial_clip=0.1, adaptive_clip_learning_rate=0.2)
    _, rows = _run(emnist_dir, str(tmp_path), **config)
    clips = [config["initial_clip"]] + [float(r["dp_clip"]) for r in rows]
    # One geometric step per round: the (noised, then clamped to [0, 1])
    # unclipped fraction moves the log clip by lr * (target - fraction), so by
    # at most lr * max(target, 1 - target) = 0.1.
    for a, b in zip(clips, clips[1:], strict=False):
        assert b != a and abs(math.log(b / a)) <= 0.1 + 1e-6, clips
    m = accounting.Mechanism("adaptive", 0.2, 3, 6, "uniform", 6 ** -1.1)
    assert float(rows[-1]["epsilon_rdp"]) == pytest.approx(accounting.epsilon_rdp(m, 3),
                                                           rel=1e-12)


def test_empty_poisson_round_still_releases_central_noise(tff, emnist_dir: str) -> None:
    from experiments.training.federated_trainer import FederatedTrainer
    from tasks import registry

    seed = 1  # the first round whose Poisson cohort (q = 3/6) is empty
    round_num = next(r for r in range(1, 10_000)
                     if sampling.poisson_clients(6, 3, seed, r).size == 0)
    config = ExperimentConfig(data_dir=emnist_dir, model="logistic",
                              algorithm="fedavg_unweighted", dp="fixed",
                              noise_multiplier=1.0, client_sampling="poisson",
                              clients_per_round=3, seed=seed, progress=False)
    trainer = FederatedTrainer(config, registry.get(config.task, config.task_config()))
    state = trainer.initial_state()
    before = np.concatenate([w.ravel() for w in trainer.model_weights(state)])
    state, row = trainer.run_round(state, round_num)
    after = np.concatenate([w.ravel() for w in trainer.model_weights(state)])
    assert row["clients"] == 0
    # The server step is lr 1 x the noised mean: noise of std z * clip / K.
    _assert_noise(after - before, 1.0 / 3, wrong={})
