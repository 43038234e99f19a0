"""The DFFG generator: vocabulary, decoding rules, dynamic fusion gates, missing inputs, and the shipped
model (loads strictly, drafts without XXXX, with and without images, with per-view 16x16 gates)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from xr.config import ASSETS
from xr.decode.beam import banned_ngram_tokens, beam_search, greedy
from xr.decode.generation import GenerationConfig
from xr.decode.model import DFFGConfig, DFFGModel
from xr.decode.processing import Example, collate
from xr.decode.vocab import EOS, SEP, Vocabulary
from xr.findings import FINDINGS
from xr.fuse import DynamicFusion
from xr.views import FRONTAL, LATERAL

REPORTS = ["The heart is normal in size. The lungs are clear. No pneumothorax.",
           "Heart size is normal. XXXX opacity in the right lung. No pleural effusion.",
           "The lungs are clear. No focal consolidation. Heart size normal. XXXX XXXX."] * 4


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary.build(REPORTS, ["chest pain", "cough"], min_freq=1)


def tiny(vocab: Vocabulary, open_gates: bool = False) -> DFFGModel:
    torch.manual_seed(0)
    m = DFFGModel(DFFGConfig(vocab_size=len(vocab), d=32, n_heads=2, n_layers=1, k=2, grid=16)).eval()
    if open_gates:  # random gate heads, as training leaves them: a fresh model gives every token the same gate
        for mlp in (m.fusion.visual_gate, m.fusion.text_gate):
            torch.nn.init.normal_(mlp[2].weight, std=1.0)
    return m


def example(vocab, rng, regions: int = 0, **kw) -> Example:
    return Example(indication="chest pain", indication_emb=rng.normal(size=384).astype(np.float32),
                   prompt=rng.random(17).astype(np.float32), retrieved=REPORTS[:2],
                   regions=[rng.normal(size=(16, 16, 512)).astype(np.float32) for _ in range(regions)],
                   views=[FRONTAL, LATERAL][:regions], target=vocab.encode_target(REPORTS[0], "No acute disease."), **kw)


def test_vocabulary_round_trip_and_placeholder_never_an_output(vocab, tmp_path):
    ids = vocab.encode_target("The lungs are clear. No pneumothorax.", "Normal heart.")
    findings, impression = vocab.decode(ids[1:])
    assert findings == "The lungs are clear. No pneumothorax."
    assert impression == "Normal heart."
    assert "xxxx" in vocab.stoi and not vocab.output_mask()[vocab.stoi["xxxx"]]
    assert vocab.output_mask()[EOS] and vocab.output_mask()[SEP] and not vocab.output_mask()[:2].any()
    vocab.save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json").itos == vocab.itos


def test_placeholder_is_never_generated_even_when_most_likely(vocab):
    m = tiny(vocab)
    x = vocab.stoi["xxxx"]
    real = m.step

    def biased(*args):
        logits = real(*args)
        logits[..., x] += 100.0
        return logits

    m.step = biased
    b = collate([example(vocab, np.random.default_rng(0))], vocab, m.config)
    fused = m.encode(b)
    allowed = vocab.output_mask()
    short = GenerationConfig(num_beams=3, max_new_tokens=30, min_new_tokens=3)
    for seq in (greedy(m, fused, allowed, short)[0], beam_search(m, fused, allowed, short)):
        assert seq and x not in seq
        assert "xxxx" not in " ".join(vocab.decode(seq)).lower()


def test_no_repeat_ngrams_in_beam_search(vocab):
    assert banned_ngram_tokens([5, 6, 7, 5, 6], 3) == {7}
    m = tiny(vocab)
    a, b_ = vocab.stoi["the"], vocab.stoi["lungs"]

    def loop(token, *args):  # always wants "the lungs the lungs ..."
        logits = torch.zeros(token.shape[0], len(vocab))
        logits[:, a] = 10.0
        logits[:, b_] = 9.0
        return logits

    m.step = loop
    fused = m.encode(collate([example(vocab, np.random.default_rng(0))], vocab, m.config))
    seq = beam_search(m, fused, vocab.output_mask(),
                      GenerationConfig(num_beams=2, max_new_tokens=20, min_new_tokens=5, no_repeat_ngram_size=3))
    grams = [tuple(seq[i:i + 3]) for i in range(len(seq) - 2)]
    assert len(grams) == len(set(grams))


@pytest.mark.parametrize("prefix", [False, True])
def test_incremental_decoding_matches_teacher_forcing(vocab, prefix):
    torch.manual_seed(0)
    m = DFFGModel(DFFGConfig(vocab_size=len(vocab), d=32, n_heads=2, n_layers=2, k=2, prompt_prefix=prefix)).eval()
    rng = np.random.default_rng(3)
    b = collate([example(vocab, rng, regions=1), Example(retrieved=REPORTS[:1], target=vocab.encode_target(REPORTS[1]))],
                vocab, m.config)
    with torch.no_grad():
        f = m.encode(b)
        assert (f.prefix is not None) == prefix
        full = m.decode(b.target[:, :-1], f)
        cache = [{} for _ in m.blocks]
        steps = torch.stack([m.step(b.target[:, t], t, f, cache)
                             for t in range(b.target.shape[1] - 1)], 1)
    assert torch.allclose(steps, full, atol=1e-5)


def test_gates_have_the_right_shape_range_and_depend_on_each_case(vocab):
    m = tiny(vocab, open_gates=True)
    rng = np.random.default_rng(1)
    b = collate([example(vocab, rng, regions=2), example(vocab, rng, regions=1)], vocab, m.config)
    with torch.no_grad():
        f = m.encode(b)
    g = f.visual_gate
    assert g.shape == (2, 2 * 256)
    assert (g >= 0).all() and (g <= 1).all()
    assert g[0, :256].std() > 0  # per region
    assert not torch.allclose(g[0, :256], g[1, :256])  # per case
    assert (g[1, 256:] == 0).all()  # the second case has one view: its missing view has no gate
    assert f.text_gate.shape[1] == f.memory.shape[1] - 1 - 2 * 256
    assert torch.isfinite(f.memory).all() and torch.isfinite(f.bias).all()


def test_fusion_modes():
    torch.manual_seed(0)
    fu = DynamicFusion(16)
    v, t = torch.randn(1, 4, 16), torch.randn(1, 3, 16)
    vm, tm = torch.ones(1, 4, dtype=torch.bool), torch.ones(1, 3, dtype=torch.bool)
    fu.mode = "fixed"
    assert torch.allclose(fu(v, vm, t, tm).visual_gate, torch.full((1, 4), 0.5))
    fu.mode = "visual"
    out = fu(v, vm, t, tm)
    assert (out.bias[0, 5:] < -1e3).all() and (out.visual_gate == 1).all()
    fu.mode = "text"
    assert (fu(v, vm, t, tm).bias[0, 1:5] < -1e3).all()


def test_missing_modalities_train_and_generate(vocab):
    m = tiny(vocab)
    rng = np.random.default_rng(2)
    cases = [Example(target=vocab.encode_target(REPORTS[0])),  # nothing at all
             Example(indication="cough", target=vocab.encode_target(REPORTS[1])),  # indication words only
             example(vocab, rng, regions=1),  # one view
             Example(retrieved=[REPORTS[2]], target=vocab.encode_target(REPORTS[2]))]  # one retrieved report only
    m.train()
    loss = m(collate(cases, vocab, m.config))
    assert torch.isfinite(loss)
    loss.backward()
    m.eval()
    for ex in cases:
        fused = m.encode(collate([ex], vocab, m.config))
        assert torch.isfinite(fused.memory).all()
        assert beam_search(m, fused, vocab.output_mask(), GenerationConfig(num_beams=2, max_new_tokens=15, min_new_tokens=2))


def test_a_new_model_keeps_the_fusion_gates_initialisation(vocab):
    """The model's weight initialisation visits every Linear layer; the fusion's gate heads keep their own
    (weights 0, bias 1: every gate starts at sigmoid(1), whatever the case)."""
    m = tiny(vocab)
    fresh = DynamicFusion(m.config.d)
    for mlp, want in ((m.fusion.visual_gate, fresh.visual_gate), (m.fusion.text_gate, fresh.text_gate)):
        assert (mlp[2].weight == 0).all() and (mlp[2].bias == 1).all()
        assert torch.equal(mlp[2].weight, want[2].weight) and torch.equal(mlp[2].bias, want[2].bias)
    assert m.fusion.visual_gate[0].weight.std() > 0  # the layers before the heads are initialised as usual
    rng = np.random.default_rng(4)
    with torch.no_grad():
        f = m.encode(collate([example(vocab, rng, regions=1), example(vocab, rng, regions=2)], vocab, m.config))
    assert torch.allclose(f.visual_gate[1], torch.full_like(f.visual_gate[1], torch.sigmoid(torch.tensor(1.0)).item()))


def test_generation_config_round_trip_and_defaults(tmp_path):
    g = GenerationConfig(num_beams=5, min_new_tokens=4)
    g.save_pretrained(tmp_path)
    assert GenerationConfig.from_pretrained(tmp_path) == g
    assert GenerationConfig.from_pretrained(tmp_path / "no-such-copy") == GenerationConfig()  # a copy without the file
    assert GenerationConfig.from_pretrained(SHIPPED) == GenerationConfig()  # the shipped file: the defaults


# ---- the shipped model ---------------------------------------------------------------------------
SHIPPED = ASSETS / "dffg"


@pytest.fixture(scope="module")
def drafter(tmp_path_factory):
    if not (SHIPPED / "model.safetensors").exists():
        pytest.skip("no shipped DFFG weights")
    from xr.draft.dffg import DFFGDrafter
    from xr.encode.cache import FeatureCache
    from xr.encode.vision import VisionEncoder
    return DFFGDrafter(encoder=VisionEncoder(cache=FeatureCache(tmp_path_factory.mktemp("cache"))))


def test_shipped_model_loads_strictly():
    if not (SHIPPED / "model.safetensors").exists():
        pytest.skip("no shipped DFFG weights")
    from safetensors.torch import load_file
    m = DFFGModel.from_pretrained(SHIPPED)  # strict=True inside
    assert set(load_file(str(SHIPPED / "model.safetensors"))) == set(m.state_dict())
    assert Vocabulary.load(SHIPPED / "vocab.json").itos.__len__() == m.config.vocab_size


@pytest.mark.parametrize("finding", ["Cardiomegaly", "Lung Opacity"])
def test_shipped_generator_follows_the_finding_prompt(drafter, finding):
    """The fix of the generator that wrote the normal report whatever the prompt: the finding it is
    told is present is written (the labeler reads it back), and not when it is told it is absent.
    (The two findings the shipped model follows from the prompt alone; see its model card.)"""
    from xr.evaluate.labeler import POSITIVE, label_report
    retrieved = drafter.memory.findings[:3]
    normal = np.zeros(len(FINDINGS), np.float32)
    normal[FINDINGS.index("No Finding")] = 1.0
    told = normal.copy()
    told[FINDINGS.index("No Finding")], told[FINDINGS.index(finding)] = 0.0, 1.0
    texts = {}
    for name, prompt in (("absent", normal), ("present", told)):
        findings, impression, _, _ = drafter.generate(Example(prompt=prompt, retrieved=retrieved))
        texts[name] = findings + " " + impression
    assert label_report(texts["present"])[finding] == POSITIVE, texts["present"]
    assert label_report(texts["absent"])[finding] != POSITIVE, texts["absent"]


def test_shipped_drafter_without_images(drafter):
    from xr.ingest.study import IngestedStudy
    d = drafter.draft(IngestedStudy(key="none", images=[]), "Chest pain, shortness of breath")
    assert d.findings_text.strip() and "XXXX" not in d.report.upper()
    assert d.views == [] and d.model == "dffg"
    assert set(d.findings) and all(0 <= p <= 1 for p in d.findings.values())
    assert any(s.via == "report" for s in d.similar_cases)


def test_shipped_drafter_with_an_image(drafter, shared):
    from xr.ingest import load_study
    # a film on which the eye backs a hedge (out of fold, Lung Opacity from 0.34): the draft says that and no more
    study = load_study([shared / "data" / "nih_cxr14_sample" / "images" / "00000442_000.png"])
    d = drafter.draft(study, "")
    assert d.stances["Lung Opacity"] == "possible" and "cannot be excluded" in d.findings_text
    assert "XXXX" not in d.report.upper()
    assert len(d.views) == 1
    w = np.array(d.views[0].fusion_weights)
    assert w.shape == (16, 16) and (w >= 0).all() and (w <= 1).all()
    assert d.to_json()["fusion_weights"]["0"] == d.views[0].fusion_weights


def test_pseudo_reports_match_the_labels_and_vary_among_equals():
    """Issue 33: a film without a report gets a training report stating its findings (fewest differing labels)."""
    from xr.data.pseudo_reports import match_reports

    reports = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 1, 1], [1, 1, 0]], dtype=np.float32)
    films = np.array([[0, 1, 0]] * 40 + [[0, 0, 1], [1, 1, 1]], dtype=np.float32)
    rows = match_reports(films, reports, np.random.default_rng(0))
    assert set(rows[:40]) == {1, 2}  # both exact matches, drawn at random
    assert rows[40] == 3  # no report has the third finding alone: the nearest (one label apart)
    assert rows[41] in {3, 4}  # two labels of three shared: either nearest
    assert np.array_equal(rows, match_reports(films, reports, np.random.default_rng(0)))  # seeded


def test_gate_statistics_tell_a_flat_map_from_one_that_follows_the_evidence():
    from xr.encode.vision import lung_share
    from xr.evaluate.fusion import gate_statistics, is_flat

    mask = np.zeros((256, 256), bool)
    mask[32:224, 16:112] = mask[32:224, 144:240] = True
    lungs = lung_share(mask)
    assert lungs.shape == (16, 16) and lungs[8, 3] == 1 and lungs[8, 8] == 0 and lungs[0, 0] == 0
    rng = np.random.default_rng(0)
    evidence = rng.random((5, 16, 16))
    follows = 0.3 + 0.6 * evidence * (lungs >= 0.5)  # high where the evidence is, in the lungs
    flat = np.full((5, 16, 16), 0.99) + rng.normal(0, 0.001, (5, 16, 16))
    s_follow = gate_statistics(follows, np.stack([lungs] * 5), evidence)
    s_flat = gate_statistics(flat, np.stack([lungs] * 5), evidence)
    assert s_follow["evidence_correlation"] > 0.99 and abs(s_flat["evidence_correlation"]) < 0.5
    assert s_follow["inside_lungs"] > s_follow["outside_lungs"] + 0.2
    assert s_flat["flat_films"] == 5 and s_follow["flat_films"] == 0
    assert is_flat(flat[0]) and not is_flat(follows[0])
