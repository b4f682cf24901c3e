import numpy as np
import pytest
from PIL import Image

from patchcore_core import PatchCore
from patchcore_core.data.builtin import DEFECTS, write_builtin_dataset
from patchcore_core.data.mvtec import MVTecCategory, few_shot, image_folder, list_categories
from patchcore_core.pipeline.preprocess import Preprocess
from patchcore_core.util.images import DataError, read_image


def test_builtin_dataset_layout_and_exact_masks(builtin_root, brick):
    assert list_categories(builtin_root) == ["brick", "grass", "gravel"]
    assert len(brick.train) == 24 and brick.defects == sorted(DEFECTS)
    for item in brick.test:
        mask = brick.load_mask(item, Preprocess())
        assert mask.shape == (224, 224)
        assert mask.any() == item.is_anomalous  # every defect lies inside the crop


def test_builtin_dataset_is_deterministic(tmp_path, builtin_root):
    again = write_builtin_dataset(tmp_path / "again", seed=0, categories=["brick"])
    files = ["brick/train/good/000.png", "brick/test/hole/001.png", "brick/ground_truth/patch/000_mask.png"]
    for rel in files:
        assert np.array_equal(np.asarray(Image.open(again / rel)), np.asarray(Image.open(builtin_root / rel)))


def _mvtec(tmp_path, train_images, test_images=(), masks=()):
    root = tmp_path / "data"
    (root / "cat" / "train" / "good").mkdir(parents=True)
    for name, img in train_images:
        img.save(root / "cat" / "train" / "good" / name) if hasattr(img, "save") else \
            (root / "cat" / "train" / "good" / name).write_bytes(img)
    for defect, name, img in test_images:
        (root / "cat" / "test" / defect).mkdir(parents=True, exist_ok=True)
        img.save(root / "cat" / "test" / defect / name)
    for defect, name, img in masks:
        (root / "cat" / "ground_truth" / defect).mkdir(parents=True, exist_ok=True)
        img.save(root / "cat" / "ground_truth" / defect / name)
    return root


def _rgb(size=(64, 64), seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def test_corrupt_training_image_is_named_and_nothing_is_written(tmp_path):
    from patchcore_core.cli.main import main

    root = _mvtec(tmp_path, [("a.png", _rgb()), ("b.png", _rgb(seed=1)), ("bad.png", b"not an image")])
    out = tmp_path / "model.safetensors"
    assert main(["fit", "--data", str(root), "--category", "cat", "--out", str(out), "--quiet"]) == 2
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))
    model = PatchCore(device="cpu").fit(MVTecCategory(root, "cat").train[:2], progress=False)
    bank, threshold = model.bank, model.threshold
    with pytest.raises(DataError, match="bad.png"):
        model.fit(MVTecCategory(root, "cat").train, progress=False)
    assert model.bank is bank and model.threshold == threshold  # a failed fit changes nothing


def test_truncated_image_is_named(tmp_path):
    path = tmp_path / "cut.png"
    _rgb((200, 200)).save(path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataError, match="cut.png"):
        read_image(path)


def test_missing_and_empty_categories_list_what_exists(tmp_path):
    root = _mvtec(tmp_path, [("a.png", _rgb())])
    with pytest.raises(DataError, match="categories found: cat"):
        MVTecCategory(root, "bottle")
    (root / "empty" / "train" / "good").mkdir(parents=True)
    with pytest.raises(DataError, match="no training images.*categories found: cat, empty"):
        MVTecCategory(root, "empty")
    with pytest.raises(DataError, match="no such data folder"):
        list_categories(tmp_path / "nowhere")


def test_mask_of_the_wrong_size(tmp_path):
    root = _mvtec(tmp_path, [("a.png", _rgb())], [("crack", "001.png", _rgb())],
                  [("crack", "001_mask.png", Image.new("L", (32, 32), 255))])
    cat = MVTecCategory(root, "cat")
    with pytest.raises(DataError, match="001_mask.png.*32x32.*64x64"):
        cat.load_mask(cat.test[0], Preprocess())


def test_both_mask_namings_are_found(tmp_path):
    root = _mvtec(tmp_path, [("a.png", _rgb())],
                  [("crack", "001.png", _rgb()), ("crack", "002.png", _rgb())],
                  [("crack", "001_mask.png", Image.new("L", (64, 64), 255)),
                   ("crack", "002.png", Image.new("L", (64, 64), 255))])
    items = MVTecCategory(root, "cat").test
    assert [i.mask_path.name for i in items] == ["001_mask.png", "002.png"]


def test_rgba_16bit_and_grey_images_become_rgb(tmp_path):
    grey16 = np.full((10, 12), 65535, dtype=np.uint16)
    grey16[0, 0] = 0
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    Image.new("RGBA", (12, 10), (255, 0, 0, 255)).save(tmp_path / "rgba.png")
    Image.new("L", (12, 10), 128).save(tmp_path / "grey.png")
    for name in ["g16.png", "rgba.png", "grey.png"]:
        img = read_image(tmp_path / name)
        assert img.mode == "RGB" and img.size == (12, 10)
    g16 = np.asarray(read_image(tmp_path / "g16.png"))
    assert g16.max() == 255 and g16.min() == 0  # scaled, not clipped
    assert np.asarray(read_image(tmp_path / "rgba.png"))[0, 0].tolist() == [255, 0, 0]
    # The model takes them all.
    x = Preprocess()(tmp_path / "g16.png")
    assert x.shape == (3, 224, 224)


def test_giant_image_is_refused_before_decoding(tmp_path, monkeypatch):
    import patchcore_core.util.images as data

    Image.new("L", (3000, 3000)).save(tmp_path / "big.png")
    monkeypatch.setattr(data, "MAX_PIXELS", 4_000_000)
    with pytest.raises(DataError, match="big.png.*9,000,000 pixels.*limit"):
        read_image(tmp_path / "big.png")


def test_non_image_file(tmp_path):
    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(DataError, match="notes.png: not a readable image"):
        read_image(tmp_path / "notes.png")


def test_preprocess_modes():
    tall = Image.new("RGB", (100, 300))
    assert Preprocess.choose_mode([(100, 300)]) == "squash"
    assert Preprocess.choose_mode([(1024, 1024), (1000, 1010)]) == "crop"
    assert Preprocess(mode="squash").display(tall).shape == (224, 224, 3)
    mask = np.zeros((300, 100), bool)
    mask[0:10] = True  # a defect at the border ...
    assert Preprocess(mode="squash").mask(mask).any()      # ... stays in view when squashed
    assert not Preprocess(mode="crop").mask(mask).any()    # ... and is cut away by a centre crop


def test_strict_masks_keep_only_pixels_wholly_inside_the_defect():
    mask = np.zeros((1024, 1024), bool)
    mask[300:700, 300:700] = True  # a square defect; 4 source pixels per model pixel
    pre = Preprocess()
    nearest, strict = pre.mask(mask), pre.mask(mask, "strict")
    assert strict.sum() < nearest.sum()
    assert not (strict & ~nearest).any()  # strict is an erosion of nearest ...
    inner = np.zeros_like(nearest)
    inner[1:-1, 1:-1] = nearest[:-2, 1:-1] & nearest[2:, 1:-1] & nearest[1:-1, :-2] & nearest[1:-1, 2:]
    assert not (inner & ~strict).any()  # ... by no more than the border pixels
    with pytest.raises(ValueError, match="nearest, strict.*'soft'"):
        pre.mask(mask, "soft")


def test_image_folder_and_few_shot(tmp_path):
    for i in range(5):
        _rgb(seed=i).save(tmp_path / f"{i}.png")
    (tmp_path / "readme.txt").write_text("x")
    paths = image_folder(tmp_path)
    assert [p.name for p in paths] == [f"{i}.png" for i in range(5)]
    assert few_shot(paths, 2, seed=0) == few_shot(paths, 2, seed=0) and len(few_shot(paths, 2)) == 2
    assert few_shot(paths, None) == paths
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images") as info:
        image_folder(tmp_path / "empty")
    assert "subfolders" not in str(info.value)


def test_a_folder_of_folders_says_which_subfolders_hold_images(tmp_path):
    """An MVTec test/ given where a folder of images is expected: the error names the way in."""
    test = tmp_path / "test"
    for kind in ("good", "crack", "empty"):
        (test / kind).mkdir(parents=True)
    for kind in ("good", "crack"):
        _rgb(seed=0).save(test / kind / "000.png")
    with pytest.raises(DataError, match=r"no images .*its subfolders crack, good hold images") as info:
        image_folder(test)
    assert f"{test}/*/" in str(info.value) and "empty" not in str(info.value)
