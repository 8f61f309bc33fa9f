"""Discovery's pure parts: token order, bags of codes / TF-IDF, clustering metrics, the LSTM's causality
and capacity, and the frozen Transformer's reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from discovery_helpers import planted, to_windows, vector_table

from laps_ray.core.cluster_metrics import hungarian_accuracy, label_metrics, purity, stability
from laps_ray.core.clustering import ClusteringConfig, choose_k, cluster
from laps_ray.core.sequence_features import (
    bag_of_codes,
    idf_weights,
    max_len_from_lengths,
    segment_sequence,
    tf_features,
    tfidf_features,
    token_order,
)
from laps_ray.models.embedder import EmbedderConfig, LSTMEmbedder, next_token_loss, to_tokens
from laps_ray.models.frozen_transformer import FrozenTransformerConfig, build_frozen_transformer, pad_vectors
from laps_ray.models.fsq_levels import true_codebook_size


@pytest.fixture(autouse=True)
def one_thread():
    """One torch / OpenMP thread: on a loaded 2-core machine two spinning threads cost 100x (measured:
    150 LSTM steps 0.2 s with one thread, 47 s with two while another job held both cores)."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


def test_overlapping_windows_give_each_step_once():
    seq = np.arange(100, 131)  # 31 steps = 5 windows of 15 at stride 4
    codes = to_windows(seq)
    got, _ = segment_sequence(codes, np.arange(len(codes)), stride=4)
    assert got.tolist() == seq.tolist()
    # A gap of gated windows (ids 0, 1, then 5): the window after the gap contributes all its tokens.
    pairs = token_order([0, 1, 5], num_tokens=15, stride=4)
    assert len(pairs) == 15 + 4 + 15
    assert pairs[15:19] == [(1, t) for t in range(11, 15)] and pairs[19] == (2, 0)
    with pytest.raises(ValueError, match="increase"):
        token_order([3, 2], 15, 4)


def test_bag_of_codes_uses_the_true_code_count_and_tfidf_differs_from_tf():
    k = true_codebook_size(2048)
    assert k == 1920
    seqs = [np.array([0, 0, 5]), np.array([0, 7, 7, 7]), np.array([0, 1919])]
    counts = bag_of_codes(seqs, k)
    assert counts.shape == (3, 1920) and counts[0, 0] == 2 and counts[2, 1919] == 1
    with pytest.raises(ValueError, match="outside"):
        bag_of_codes([np.array([1920])], k)
    idf = idf_weights(counts)
    assert idf[0] == pytest.approx(1.0)  # code 0 is in every segment
    assert idf[5] == pytest.approx(np.log(4 / 2) + 1)  # in one of three
    tf, tfidf = tf_features(counts), tfidf_features(counts)
    assert np.allclose(tf.sum(1), 1)
    # Normalised TF would keep code 0's share in segment 0 at 2/3; TF-IDF lowers it against code 5.
    assert tfidf[0, 0] / tfidf[0, 5] == pytest.approx(2 * 1.0 / (1 * idf[5]), rel=1e-5)
    assert not np.allclose(tf / np.linalg.norm(tf, axis=1, keepdims=True), tfidf)


def test_max_len_covers_the_percentile_rounded_up():
    assert max_len_from_lengths([10, 20, 30, 40, 200], 80, 16) == 80  # p80 = 40 + 0.2 * 160 = 72 -> 80
    assert max_len_from_lengths([15, 15, 15], 98, 16) == 16
    assert max_len_from_lengths([15, 19, 500], 100, 16, cap=64) == 64
    with pytest.raises(ValueError):
        max_len_from_lengths([0, 0], 98, 16)


def test_label_metrics_by_hand():
    pred = np.array([1, 1, 1, 0, 0, 2])
    truth = np.array(["a", "a", "b", "b", "b", "c"])
    acc, mapping = hungarian_accuracy(pred, truth)
    assert acc == pytest.approx(5 / 6) and mapping == {0: "b", 1: "a", 2: "c"}
    assert purity(pred, truth) == pytest.approx(5 / 6)
    perfect = label_metrics(np.array([2, 2, 0, 0]), np.array(["x", "x", "y", "y"]))
    assert perfect["ari"] == perfect["nmi"] == perfect["hungarian_accuracy"] == 1.0
    assert stability([np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0])]) == 1.0
    assert stability([np.array([0, 1])]) is None


@pytest.mark.parametrize("kind", ["bow", "tfidf", "mean", "transformer"])
def test_planted_generators_are_recovered_by_every_fixed_feature(kind):
    seqs, y = planted(k=4, per_kind=30, seed=0)
    table = vector_table(0)
    counts = bag_of_codes(seqs, 1920)
    if kind == "bow":
        x = tf_features(counts)
    elif kind == "tfidf":
        x = tfidf_features(counts)
    elif kind == "mean":
        x = np.stack([table[s].mean(0) for s in seqs])
    else:
        v, n = pad_vectors([table[s] for s in seqs], 512)
        x = (
            build_frozen_transformer(FrozenTransformerConfig(input_dim=16, num_layers=2))
            .forward(v, n)
            .numpy()
        )
    res = cluster(x, ClusteringConfig(k=4, stability_seeds=1), dense=kind in ("mean", "transformer"))
    assert label_metrics(res.labels, y.astype(str))["ari"] >= 0.9
    assert res.metrics["stability_ari"] is not None and res.confidence.min() >= 0


def test_standardized_codes_are_not_swamped_by_codes_every_segment_has():
    # Most tokens of every segment are three "idle" codes in proportions that vary from segment to
    # segment, whatever the kind; the kinds differ only in their few own codes. Unstandardised, the
    # PCA axes follow the idle codes' variance and KMeans splits by it; z-scored, the kinds come out.
    rng = np.random.default_rng(0)
    seqs, truth = [], []
    for kind in range(4):
        own = np.arange(100 + 10 * kind, 106 + 10 * kind)
        for _ in range(20):
            n_idle = rng.integers(40, 55)
            idle = rng.choice(3, p=rng.dirichlet([0.3] * 3), size=n_idle)
            seqs.append(np.concatenate([idle, rng.choice(own, size=60 - n_idle)]))
            truth.append(kind)
    x = tfidf_features(bag_of_codes(seqs, 1920))
    aris = {}
    for st in ("false", "true"):
        labels = cluster(x, ClusteringConfig(k=4, standardize=st), False).labels
        aris[st] = label_metrics(labels, np.array(truth))["ari"]
    assert aris["true"] >= 0.95 and aris["false"] < 0.3, aris
    assert ClusteringConfig().standardize == "true"


def test_same_seed_same_assignments_and_k_chosen_by_silhouette():
    seqs, y = planted(k=3, per_kind=20, seed=1)
    x = tfidf_features(bag_of_codes(seqs, 1920))
    cfg = ClusteringConfig(k=0, k_min=2, k_max=6, seed=3)
    a, b = cluster(x, cfg, False), cluster(x, cfg, False)
    assert np.array_equal(a.labels, b.labels) and a.k == 3
    assert [r["k"] for r in a.selection] == [2, 3, 4, 5, 6]
    best = max(a.selection, key=lambda r: r["silhouette"])
    assert best["k"] == a.k  # well separated: the highest silhouette is also the smallest k near it
    for method in ("gmm", "hdbscan"):
        r = cluster(x, ClusteringConfig(method=method, k=3, hdbscan_min_cluster_size=5), False)
        assert label_metrics(r.labels, y.astype(str))["ari"] >= 0.9


def test_choose_k_takes_the_smallest_k_near_the_best_silhouette():
    rows = [
        {"k": k, "silhouette": s} for k, s in [(2, 0.148), (3, 0.170), (4, 0.155), (9, 0.173), (10, 0.1731)]
    ]
    assert choose_k(rows, 0.0) == 10  # the highest
    assert choose_k(rows, 0.05) == 3  # 0.170 >= 0.1731 * 0.95; 0.148 is not
    assert choose_k(rows, 0.2) == 2
    negative = [{"k": 2, "silhouette": -0.12}, {"k": 3, "silhouette": -0.104}, {"k": 4, "silhouette": -0.10}]
    negative.append({"k": 5, "silhouette": None})
    assert choose_k(negative, 0.05) == 3  # within |best| * 5 % below a negative best
    with pytest.raises(ValueError, match="no k gave"):
        choose_k([{"k": 2, "silhouette": None}], 0.05)


def test_lstm_is_causal_a_later_token_never_changes_an_earlier_prediction():
    torch.manual_seed(0)
    model = LSTMEmbedder(EmbedderConfig(num_codes=50, max_len=12, embed_dim=16, num_layers=2)).eval()
    tokens, _ = to_tokens([np.arange(10) % 50], 12)
    changed = tokens.clone()
    changed[0, 7] = 33
    with torch.no_grad():
        a, _ = model(tokens)
        b, _ = model(changed)
    assert torch.equal(a[:, :7], b[:, :7])  # positions 0..6 do not see token 7
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_lstm_overfits_a_tiny_corpus():
    torch.manual_seed(0)
    seqs = [np.array([3, 9, 4, 1, 7, 2]), np.array([5, 5, 8, 0, 6]), np.array([2, 4, 6, 8])]
    model = LSTMEmbedder(EmbedderConfig(num_codes=10, max_len=8, embed_dim=32, num_layers=1, dropout=0.0))
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    tokens, _ = to_tokens(seqs, 8)
    first = None
    for _ in range(150):
        loss, _, counts = next_token_loss(model(tokens)[0], tokens)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    loss, _, counts = next_token_loss(model(tokens)[0], tokens)
    assert counts[0] == 12  # 5 + 4 + 3 predicted tokens, padding ignored
    assert loss.item() < 0.05 * first and counts[1] == counts[0]  # every next token right


def test_frozen_transformer_is_reproducible_and_stays_in_eval_mode():
    cfg = FrozenTransformerConfig(input_dim=8, d_model=16, num_layers=2, num_heads=2, ff_dim=32, seed=5)
    rng = np.random.default_rng(0)
    x, n = pad_vectors([rng.normal(size=(k, 8)).astype(np.float32) for k in (3, 7, 5)], 64)
    torch.manual_seed(123)  # the global RNG must not matter
    a = build_frozen_transformer(cfg).train()(x, n)
    torch.manual_seed(999)
    b = build_frozen_transformer(cfg)(x, n)
    assert torch.equal(a, b)
    other = build_frozen_transformer(FrozenTransformerConfig(**{**cfg.__dict__, "seed": 6}))(x, n)
    assert not torch.allclose(a, other)
    # Padding does not leak into the mean: one sequence alone equals its row in the batch.
    alone = build_frozen_transformer(cfg)(x[1:2, :7], n[1:2])
    assert torch.allclose(alone, a[1:2], atol=1e-5)


@pytest.mark.parametrize("method", ["kmeans", "gmm", "hdbscan"])
def test_a_fitted_model_assigns_new_segments_and_flags_outliers(method):
    from discovery_helpers import generators, sample

    seqs, y = planted(k=4, per_kind=30, seed=0)
    res = cluster(tfidf_features(bag_of_codes(seqs, 1920)), ClusteringConfig(method=method, k=4), dense=False)
    # The fitted segments again: nearest centroid reproduces the clustering.
    again, _, _ = res.model.assign(tfidf_features(bag_of_codes(seqs, 1920)))
    assert label_metrics(again, res.labels.astype(str))["ari"] >= 0.95
    # New segments of the same generators (weighted with the fitted IDF) land in their kind's cluster.
    rng = np.random.default_rng(99)
    gens = generators(4, 0)
    new = [sample(gens[i % 4], 31, rng) for i in range(40)]
    idf = idf_weights(bag_of_codes(seqs, 1920))
    got, conf, outlier = res.model.assign(tfidf_features(bag_of_codes(new, 1920), idf))
    assert label_metrics(got, np.arange(40) % 4)["ari"] >= 0.9 and conf.min() >= 0 and outlier.mean() < 0.2
    # A segment of codes no generator uses is an outlier wherever it lands.
    stranger = [np.arange(1800, 1831)]
    _, _, flag = res.model.assign(tfidf_features(bag_of_codes(stranger, 1920), idf))
    assert flag.all()
