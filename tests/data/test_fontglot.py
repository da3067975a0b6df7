import json
import time

import numpy as np
import pytest
import torch

from mlcourse.data import FontGlot
from mlcourse.data import fontglot as fg
from mlcourse.data import glyphs
from mlcourse.data.glyphs import COURSE_FONTS, COURSE_FONTS_DIGEST, fonts_digest, render_glyph, script_of, usable_fonts


def test_render_glyph_fills_box_and_has_holes():
    font = next(f for f in usable_fonts() if f.name == "DejaVuSans.ttf")
    img = render_glyph(font, ord("O"), size=56)
    assert img.shape == (56, 56) and 0.0 <= img.min() and img.max() <= 1.0
    rows, cols = np.nonzero(img > 0.5)
    assert 0.7 * 56 <= rows.max() - rows.min() + 1 <= 0.85 * 56  # longer side spans `fill`
    assert img[28, 28] < 0.1  # the counter of O is empty (even-odd fill)
    assert render_glyph(font, 0x10FFFD) is None  # not in the font


def test_computer_modern_is_mapped_through_glyph_names():
    cmr = next(f for f in usable_fonts() if f.name == "cmr10.ttf")
    assert render_glyph(cmr, ord("A")) is not None
    assert render_glyph(cmr, 0x0393) is not None  # Greek capital Gamma, named "Gamma"


def test_script_of_keeps_base_letters_only():
    assert script_of(ord("a")) == "LATIN"
    assert script_of(ord("é")) is None  # decomposes into e + accent
    assert script_of(ord("1")) is None
    assert script_of(0x1401) == "CANADIAN SYLLABICS"


def test_splits_are_disjoint_by_script(tiny_root):
    arrays = fg.load_fontglot("tiny", root=tiny_root, progress=False)
    scripts = {sp: {a.split(" ")[0] for a in arrays["alphabets"][arrays["splits"] == sp]}
               for sp in ("background", "validation", "evaluation")}
    assert scripts["evaluation"].isdisjoint(scripts["background"] | scripts["validation"])
    assert set(arrays["alphabets"][arrays["splits"] == "validation"]).isdisjoint(
        arrays["alphabets"][arrays["splits"] == "background"])
    for split in ("background", "validation", "evaluation"):
        d = FontGlot(split, preset="tiny", root=tiny_root, progress=False)
        assert d.n_classes >= 10
        assert np.all(np.bincount(d.targets) == 20)  # 20 drawers per character
        x, y = d[0]
        assert x.shape == (1, 28, 28) and 0 <= float(x.min()) and float(x.max()) <= 1
        assert d.images.float().mean() > 10  # there is ink


def test_drawers_differ_and_classes_differ(tiny_eval):
    imgs = tiny_eval.images.float()
    same = imgs[tiny_eval.targets == 0]
    assert len({bytes(i.numpy().astype(np.uint8)) for i in same}) == 20


def test_build_is_deterministic_for_a_seed():
    settings = fg._preset("tiny", 3)
    a = fg.build_fontglot(settings, progress=False)
    b = fg.build_fontglot(settings, progress=False)
    np.testing.assert_array_equal(a["images"], b["images"])
    c = fg.build_fontglot(fg._preset("tiny", 4), progress=False)
    assert not np.array_equal(a["images"], c["images"])


def test_tiny_build_is_fast():
    start = time.perf_counter()
    fg.build_fontglot(fg._preset("tiny", 0), progress=False)
    assert time.perf_counter() - start < 20  # about a second here; generous for slow machines


def test_corrupt_cache_is_detected_and_rebuilt(tmp_path):
    first = FontGlot("evaluation", preset="tiny", root=tmp_path, progress=False)
    path = fg.fontglot_path("tiny", root=tmp_path)
    fg._MEMO.clear()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="unusable"):
        again = FontGlot("evaluation", preset="tiny", root=tmp_path, progress=False)
    assert np.array_equal(first.images.numpy(), again.images.numpy())
    fg._MEMO.clear()
    path.write_bytes(b"not a zip")
    path.with_suffix(".sha256").write_text(fg._sha256(path))  # checksum matches, content is junk
    with pytest.warns(UserWarning, match="unusable"):
        FontGlot("evaluation", preset="tiny", root=tmp_path, progress=False)


def test_stale_settings_get_a_new_cache_file(tmp_path):
    assert fg.fontglot_path("tiny", seed=0, root=tmp_path) != fg.fontglot_path("tiny", seed=1, root=tmp_path)
    assert fg.fontglot_path("tiny", root=tmp_path) != fg.fontglot_path("full", root=tmp_path)


def test_meta_records_settings(tiny_root):
    meta = json.loads(str(fg.load_fontglot("tiny", root=tiny_root, progress=False)["meta"]))
    assert meta["settings"]["drawers"] == 20 and "DejaVuSans.ttf" in meta["fonts"]


def test_bad_arguments_are_explained(tiny_root):
    with pytest.raises(ValueError, match="unknown split"):
        FontGlot("train", preset="tiny", root=tiny_root)
    with pytest.raises(ValueError, match="unknown FontGlot preset"):
        FontGlot("background", preset="huge", root=tiny_root)


def test_subset_classes_renumbers_and_keeps_images(tiny_eval):
    sub = tiny_eval.subset_classes(7, seed=1)
    assert sub.n_classes == 7 and len(sub) == 7 * 20
    assert sorted(set(sub.targets.tolist())) == list(range(7))
    name = sub.classes[3]
    original = tiny_eval.classes.index(name)
    assert torch.equal(sub.images[sub.targets == 3], tiny_eval.images[torch.as_tensor(tiny_eval.targets == original)])
    with pytest.raises(ValueError, match="between 1 and"):
        tiny_eval.subset_classes(10_000)


def test_course_fonts_are_the_reference_fonts():
    """The fonts found here are, byte for byte, those the shipped results were measured on."""
    fonts = usable_fonts()
    assert [f.name for f in fonts] == list(COURSE_FONTS)
    assert fonts_digest(fonts) == COURSE_FONTS_DIGEST


def test_a_font_matplotlib_lacks_comes_from_mlcourse(tmp_path, monkeypatch):
    """On a matplotlib without cmti10 (before 3.11) the builds still use the same 22 files."""
    for f in usable_fonts():
        if f.name != "cmti10.ttf":
            (tmp_path / f.name).symlink_to(f)
    monkeypatch.setattr(glyphs, "font_dir", lambda: tmp_path)
    usable_fonts.cache_clear()
    try:
        fonts = usable_fonts()
        assert fonts[COURSE_FONTS.index("cmti10.ttf")].parent.name == "fonts"
        assert fonts_digest(fonts) == COURSE_FONTS_DIGEST
        (tmp_path / "cmr10.ttf").unlink()
        (tmp_path / "cmr10.ttf").write_bytes(b"not the reference font")
        usable_fonts.cache_clear()
        with pytest.warns(UserWarning, match="shipped results will not reproduce"):
            usable_fonts()
        (tmp_path / "cmr10.ttf").unlink()
        with pytest.raises(FileNotFoundError, match="cmr10.ttf"):
            glyphs.font_path("cmr10.ttf")
    finally:
        usable_fonts.cache_clear()


def test_a_preset_with_a_font_outside_the_course_fonts_is_refused():
    with pytest.raises(ValueError, match="not among the course's fonts"):
        fg.build_fontglot(fg.FontGlotSettings(fonts=("Arial.ttf",)), progress=False)
