"""The Gemma Scope width sweep of the Dark Matter analyses, planned offline from sae-lens's directory."""

import re

from lorasae.darkmatter.plan import gemma_scope_width_sweep
from lorasae.sweep.catalog import gemma_scope_catalog


def test_gemma_scope_width_sweep_is_16k_to_1m_at_the_l0_closest_to_60():
    sweep = gemma_scope_width_sweep("gemma")  # layer 12 of Gemma-2-2B, the paper's L0 ≈ 60
    widths = [re.search(r"width_(\w+)/", s).group(1) for s in sweep]
    assert widths == ["16k", "32k", "65k", "131k", "262k", "524k", "1m"]
    assert all(s.startswith("gemma-scope-2b-pt-res/layer_12/") for s in sweep)
    # 16k has L0 22, 41, 82, 176, 445: 41 is the closest to 60
    assert sweep[0] == "gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_41"
    catalog = gemma_scope_catalog("gemma")
    for source in sweep:
        entry = next(e for e in catalog.entries if e.source == source)
        others = catalog.at(12, entry.width)
        assert abs(entry.l0 - 60) == min(abs(e.l0 - 60) for e in others)


def test_a_cache_key_names_local_paths_relative_to_the_output_root(tmp_path, monkeypatch):
    # the key hashed the absolute SAE path: the same demo in another folder got other linear-map file names
    from lorasae.darkmatter.load import info_key

    keys = []
    for root in (tmp_path / "a", tmp_path / "b"):
        sae = root / "saved_saes" / "tiny" / "normal" / "expansion_8_L0_4" / "model.layers.1"
        adapter = root / "saved_models" / "tiny" / "peft_0-3" / "rank_16"
        sae.mkdir(parents=True)
        adapter.mkdir(parents=True)
        monkeypatch.setenv("LORASAE_ROOT", str(root))
        keys.append(info_key("tiny", str(sae), str(adapter), layer=1, num_tokens=100))
    assert keys[0] == keys[1]
