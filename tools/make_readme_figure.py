"""Draw docs/heatmaps.png: built-in test images and their PatchCore heatmaps."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from patchcore_core import PatchCore  # noqa: E402
from patchcore_core.data.builtin import builtin_root  # noqa: E402
from patchcore_core.data.mvtec import MVTecCategory  # noqa: E402
from patchcore_core.util.viz import overlay_heatmap  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "heatmaps.png"


def main():
    root = builtin_root()
    picks = [("brick", "good"), ("brick", "hole"), ("grass", "hole"), ("gravel", "scratch"),
             ("gravel", "patch")]
    fig, axes = plt.subplots(2, len(picks), figsize=(3 * len(picks), 7.2))
    models = {}
    for col, (cat_name, defect) in enumerate(picks):
        cat = MVTecCategory(root, cat_name)
        if cat_name not in models:
            models[cat_name] = PatchCore(device="cpu").fit(cat.train, progress=False)
        model = models[cat_name]
        item = next(t for t in cat.test if t.defect == defect)
        pred = model.predict(item.path)[0]
        image = model.display(item.path)
        axes[0, col].imshow(image)
        axes[0, col].set_title(f"{cat_name}: {defect}", fontsize=12)
        axes[1, col].imshow(overlay_heatmap(image, pred.anomaly_map, 0.55, 0, 2 * model.threshold))
        axes[1, col].set_title(f"{pred.verdict}: score/threshold {pred.normalised_score:.2f}", fontsize=10)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("PatchCore on the built-in data (EfficientNet-Lite0, 10% coreset)", fontsize=13)
    fig.tight_layout()
    OUT.parent.mkdir(exist_ok=True)
    fig.savefig(OUT, dpi=80)
    print(OUT)


if __name__ == "__main__":
    main()
