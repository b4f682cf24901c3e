"""The notebooks' concept quizzes, one per notebook, by exercise id ("NN.k").

Each notebook lists a question's options in its Markdown (a test checks that
the texts here appear there) and checks an answer with
``teaching.quiz.check(quiz_k, "NN.k")``; the grader's hidden test
(``notebooks/grading/tests/NN.k.py``) holds the same key. The explanations
say why an option is right or wrong from what the notebook shows, and match
the paper (Roth et al., CVPR 2022) and this package's code.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Option:
    """One choice: what it says, and why it is right or wrong."""

    text: str
    why: str


@dataclass(frozen=True)
class Question:
    """Options by letter (``{"a": Option(...)}`` or ``{"a": ("text", "why")}``) and the right letter."""

    options: dict[str, Option]
    key: str
    stem: str = field(default="")  # the question itself, as the notebook asks it

    def __post_init__(self):
        options = {letter.lower(): o if isinstance(o, Option) else Option(*o)
                   for letter, o in self.options.items()}
        object.__setattr__(self, "options", options)
        object.__setattr__(self, "key", self.key.lower())
        if self.key not in options:
            raise ValueError(f"the key {self.key!r} is not one of the options {sorted(options)}")

    @property
    def letters(self) -> list[str]:
        return sorted(self.options)


QUESTIONS: dict[str, Question] = {
    "00.3": Question(
        stem="Where does the threshold come from, if PatchCore never saw a defect?",
        key="b",
        options={
            "a": Option("The score that best separates the good and the defective test images.",
                        "No: that needs defects, and `fit` never sees one. A threshold chosen with the "
                        "test labels is F1-max's hindsight (notebook 04), an upper bound that a factory "
                        "does not have."),
            "b": Option("The highest score of a few good training images, each scored against a memory "
                        "bank built without it.",
                        "Yes: the cell under the heatmaps prints it. The held-out good images show how "
                        "high a normal image's score goes; a score above the highest of them is called "
                        "anomalous, so `normalised_score = score / threshold` above 1 means anomalous."),
            "c": Option("Always 1.0: an image is anomalous when its score is above 1.",
                        "No: 1.0 is the threshold of the *normalised* score (score / threshold). The "
                        "threshold itself is a distance between patch features, printed above in those "
                        "units."),
            "d": Option("It is learned by training the backbone on the good images.",
                        "No: nothing is trained. The backbone is a frozen ImageNet CNN; `fit` stores the "
                        "good images' patch features (the memory bank) and scores a few held-out good "
                        "images."),
        }),
    "01.3": Question(
        stem="One feature of the stride-8 layer sits at one cell of the 28 x 28 grid. Which is true?",
        key="d",
        options={
            "a": Option("It describes the 8 x 8 pixels of its own grid cell (224 / 28 = 8).",
                        "No: 8 pixels is the stride, the step between neighbouring grid cells. The "
                        "receptive-field figure measures the pixels one feature depends on: a window far "
                        "wider than 8 pixels, so neighbouring patches see overlapping windows."),
            "b": Option("3x3 aggregation moves it to a coarser grid, a third as many cells per side, each "
                        "seeing 24 x 24 pixels.",
                        "No: aggregation averages each cell with its neighbours at stride 1, so the grid "
                        "stays 28 x 28 (printed under \"Two layers on one grid\"); each cell gains "
                        "context without losing resolution."),
            "c": Option("It sees the whole image equally, like every feature of a deep CNN.",
                        "No: the measured extent grows with depth, and even where the theoretical window "
                        "is wide the influence is concentrated around the patch: the bright core of the "
                        "figure, the *effective* receptive field."),
            "d": Option("It depends on a window of pixels much wider than 8, centred on its cell, and 3x3 "
                        "aggregation widens that window further while the grid stays 28 x 28.",
                        "Yes: the stride (8) is how far apart patches are; the receptive field is what "
                        "each one sees (measured by backpropagation above). Averaging a 3x3 neighbourhood "
                        "widens it by two strides without going deeper."),
        }),
    "02.3": Question(
        stem="A greedy coreset leaves a covering radius r over the memory bank. What does r bound?",
        key="c",
        options={
            "a": Option("No other set of as many patches has a smaller covering radius: greedy finds the "
                        "optimum.",
                        "No: the k-center problem is NP-hard. Greedy's radius is at most twice the "
                        "optimum (Gonzalez, 1985), as the brute-force table checks, and usually much "
                        "closer."),
            "b": Option("Every test patch, defective ones included, lies within r of a kept patch.",
                        "No: r is measured over the training patches, the bank. A defective test patch "
                        "can be far from every normal patch, and that distance is its score; if every "
                        "test patch were within r, no defect could score above r."),
            "c": Option("The distance of any patch to its nearest kept patch exceeds its distance to the "
                        "nearest patch of the full bank by at most r.",
                        "Yes: a patch's nearest patch in the full bank lies within r of some kept patch, "
                        "so by the triangle inequality its distance to the kept patches is at most its "
                        "full-bank distance plus r (and never less, the coreset being part of the bank). "
                        "This holds for test patches too, normal or defective: the coreset raises any "
                        "patch score by at most r."),
            "d": Option("Image AUROC drops by at most r compared with the full bank.",
                        "No: r is a distance between features, AUROC a ranking of images. Every score "
                        "rises by at most r; the ranking changes only where scores rise unevenly, which "
                        "the greedy-against-random table measures rather than bounds."),
        }),
    "03.3": Question(
        stem="What does Eq. 7 do, and does it run when PatchCore is used with the package's defaults?",
        key="a",
        options={
            "a": Option("It multiplies `s*` by a weight near 1 when `m*` is an isolated bank patch and near "
                        "`1 - 1/b` when `m*`'s neighbours are about as close; with the package's defaults "
                        "it does not run, and the image score is `s*`.",
                        "Yes: the weight is 1 minus the softmax share of `m*`, in `[1 - 1/b, 1)` (worked "
                        "above). The default `model.config.reweight_neighbours` is 0, which keeps the "
                        "largest patch score `s*`; set it to `b` to turn Eq. 7 on."),
            "b": Option("It raises the score of an image whose nearest bank patch `m*` is isolated, so that "
                        "rare defects stand out; it runs by default.",
                        "No, twice. The weight is below 1, so Eq. 7 never makes a score larger than `s*`; "
                        "the paper's \"increase\" is relative to a dense neighbourhood, where the "
                        "discount is largest. And by default it does not run: see "
                        "`model.config.reweight_neighbours`."),
            "c": Option("It replaces the largest patch score by the mean of the `b` largest patch scores, "
                        "which is steadier.",
                        "No: Eq. 7 keeps the one most anomalous patch and rescales its score `s*` by a "
                        "weight from the softmax of its distances to the `b` bank patches nearest to `m*` "
                        "(`m*` included)."),
            "d": Option("The package always computes it with `b = 3`: the `score` of every prediction is "
                        "the reweighted `s`.",
                        "No: `b = 3` is what this notebook chose to show Eq. 7 (`eq7_breakdown(..., "
                        "b=3)`). The model's own setting is `model.config.reweight_neighbours`, 0 by "
                        "default, which keeps `s*`."),
        }),
    "04.4": Question(
        stem="A test image has a large stain (about 2,000 defective pixels) that its anomaly map finds, "
             "and a small scratch (about 20 pixels) that the map misses. Which metric does the missed "
             "scratch pull down most?",
        key="c",
        options={
            "a": Option("Pixel AUROC, because it counts every defective pixel.",
                        "No: the scratch is 20 of about 2,020 defective pixels, about 1%. Pixel AUROC "
                        "ranks all defective pixels against all normal ones, so it hardly moves: large "
                        "defects dominate it."),
            "b": Option("Image AUROC.",
                        "No: the image score is the largest patch score, and the stain already makes it "
                        "high; the image ranks as it did."),
            "c": Option("AUPRO, because each defect region weighs the same, whatever its size.",
                        "Yes: PRO averages the overlap over connected defect regions, each counted once, "
                        "so the missed 20-pixel scratch costs as much as a missed 2,000-pixel stain "
                        "would. That is what makes PRO fair to small defects."),
            "d": Option("F1-max, because the scratch is a missed defect.",
                        "No: F1-max is computed from image scores (at the best threshold in hindsight); "
                        "this image is flagged anyway, because of the stain."),
        }),
    "05.3": Question(
        stem="Why can a 1% coreset be close to the full memory bank on MVTec AD, yet fall short on a "
             "training set of a few dozen images?",
        key="a",
        options={
            "a": Option("What counts is the number of patches kept, not the ratio: 1% of a few dozen "
                        "images' patches is a few hundred, 1% of hundreds of images is thousands.",
                        "Yes: every image adds its grid of patches (784 at 224 px) to the bank, so the "
                        "same ratio keeps ten times the patches from ten times the images. A varied "
                        "texture needs enough kept patches to cover its normal variation (the bank sizes "
                        "are printed under the coreset sweep)."),
            "b": Option("Greedy selection fails on small training sets; random subsampling is better "
                        "there.",
                        "No: the sampling sweep compares both at the same size, and greedy is usually "
                        "ahead. A random subset can lead only with very few picks on some textures, "
                        "because greedy's first picks are the rarest patches."),
            "c": Option("The ratio is applied per image: each image keeps 1% of its own patches.",
                        "No: the coreset is chosen from the whole bank, the patches of all training "
                        "images together; greedy may keep many patches of one image and none of another."),
            "d": Option("1% is always enough: the covering radius does not depend on how many patches are "
                        "kept.",
                        "No: the covering radius shrinks as the coreset grows (notebook 02's curves). "
                        "With few kept patches, normal test patches lie far from every kept one and score "
                        "like defects."),
        }),
    "06.3": Question(
        stem="Your model was fitted on photos taken in daylight. On the line the light changes to LED "
             "lamps, and nearly every good part is flagged. Why, and what fixes it?",
        key="d",
        options={
            "a": Option("The threshold is too low: raise it until the good parts pass.",
                        "Not a cure: the threshold comes from held-out good images under the old light. "
                        "Raised by hand to pass the new light, it also lets through defects that score "
                        "below the new level; the patches themselves are now unlike the bank."),
            "b": Option("The coreset dropped the patches that would match: raise `coreset_ratio`.",
                        "No: the coreset covers the training patches within its covering radius (notebook "
                        "02). No training patch was lit by LED lamps, so even the full bank holds no "
                        "twin."),
            "c": Option("An ImageNet backbone cannot see under LED light: use a bigger backbone.",
                        "No: the backbone describes the new images well, only differently from the "
                        "training images, and PatchCore flags whatever is unlike its good images."),
            "d": Option("PatchCore learned the daylight as part of normal: fit again with good images "
                        "taken under the new light (or add them).",
                        "Yes: the checklist's first point. The memory bank holds the good images' patches "
                        "as they were photographed, lighting included; under a new light every patch is "
                        "farther from its nearest normal patch. Normal is what the good images show."),
        }),
    "07.4": Question(
        stem="With `ivf_flat` and a small `nprobe`, recall@1 is below 1: for some test patches the "
             "nearest bank row sits in a cell that was not scanned. What happens to those patches' scores?",
        key="b",
        options={
            "a": Option("They come out lower than the exact scores, so defects may be missed.",
                        "No: the index returns a row of the bank, and no row is nearer than the nearest "
                        "one; missing the nearest row can only make the distance larger."),
            "b": Option("They come out at or above the exact scores, never below.",
                        "Yes: an approximate index can only miss the nearest row, never find a nearer "
                        "one. Good images' scores rise too, which is why image AUROC forgives many missed "
                        "rows before the ranking of the images changes."),
            "c": Option("They can come out higher or lower: the k-means cells blur the distances.",
                        "No: `ivf_flat` keeps the rows as they are and computes exact distances to the "
                        "rows it scans; only which rows are scanned is approximate (and `ivf_pq` re-ranks "
                        "its best candidates by their exact distance)."),
            "d": Option("They are unchanged: each cell's centroid stands in for its rows.",
                        "No: the centroids only decide which cells are scanned. The distance returned is "
                        "to a bank row in a scanned cell: when the nearest row was not scanned, a farther "
                        "one."),
        }),
    "08.3": Question(
        stem="Your run on MVTec AD with the package's default backbone gives an image AUROC a point or "
             "two below the paper's for some categories. What do you check before calling it a bug?",
        key="d",
        options={
            "a": Option("Rerun with more seeds until the gap closes.",
                        "No: seeds show how much one setting varies (the few-shot plot's error bars); "
                        "they do not close a gap that comes from a different setting."),
            "b": Option("The threshold: a better one would raise the AUROC.",
                        "No: AUROC needs no threshold; it ranks the images by score. The threshold "
                        "decides false alarms and misses, not AUROC."),
            "c": Option("Average over all 15 categories first: the per-category gaps cancel out.",
                        "No: an average hides what matters for one product. Compare category by category "
                        "(the comparison figure), measured alike."),
            "d": Option("Whether the run was measured like the paper's: the same backbone, image size and "
                        "coreset ratio.",
                        "Yes: published figures compare with a run only when measured alike. The default "
                        "EfficientNet-Lite0 is about 14x smaller than the paper's WideResNet-50 (the "
                        "comparison figure's title says when the backbone differs), and a point or two of "
                        "AUROC is what that can cost."),
        }),
    "09.3": Question(
        stem="A good assembly image is moved a few pixels to the right. Why does PaDiM's score climb "
             "while PatchCore's stays near the unshifted good images'?",
        key="c",
        options={
            "a": Option("PaDiM's covariances are singular with few training images, so its scores are "
                        "noisy.",
                        "A real weakness, but not this one: the unshifted good images score normally with "
                        "the same covariances; only the moved image climbs."),
            "b": Option("The mirrored border is a defect that only PaDiM is sensitive enough to see.",
                        "No: all three methods score the same features of the same moved image; PatchCore "
                        "and SPADE find close normal twins for those patches."),
            "c": Option("PaDiM compares each patch only with the Gaussian of its own grid position, "
                        "fitted to what was there in training; PatchCore looks for the nearest normal "
                        "patch from any position.",
                        "Yes: a part moved onto positions where training only ever showed plate is far "
                        "from those positions' Gaussians, although nothing is wrong. PatchCore and SPADE "
                        "find the part's twin wherever it was."),
            "d": Option("PatchCore's coreset happens to contain shifted copies of the parts.",
                        "No: the training images are not shifted. PatchCore finds a twin because it "
                        "compares a patch with the patches of every position, so a part matches the part "
                        "wherever it was."),
        }),
    "10.3": Question(
        stem="An `extra` kit holds a second copy of one part. Why does PatchCore's image score stay low?",
        key="b",
        options={
            "a": Option("The memory bank holds no patches of the parts: the coreset kept only plate.",
                        "No: greedy keeps the rare patches first (notebook 02), and the parts' patches "
                        "are in the bank; that is exactly why the second copy finds a close twin."),
            "b": Option("Each patch of the second copy has a close twin among the training patches, and "
                        "PatchCore scores patches one by one, wherever their twin was.",
                        "Yes: nothing in a nearest-patch distance counts parts. Every patch looks like "
                        "some normal patch (the explanation figure shows one and its twin), so the image "
                        "score stays low."),
            "c": Option("A part is smaller than one 8-pixel patch, so no patch sees it.",
                        "No: 8 pixels is the grid's stride, not what a patch sees (notebook 01), and a "
                        "part spans many patches; the explanation figure shows a patch on the second copy "
                        "and its normal twin."),
            "d": Option("The threshold is too high: lowered, it would catch the extra kits without false "
                        "alarms.",
                        "No: the image AUROC of `extra` against the good images (in the table) is low, so "
                        "no threshold separates them: their scores sit among the good ones'."),
        }),
    "11.8": Question(
        stem="Every step's check passed, and on the built-in data your image AUROC matches the package's. "
             "On another set the two image AUROCs differ by 0.03. What does that most likely mean?",
        key="b",
        options={
            "a": Option("One of your steps is wrong on that set: the checks only tried small cases.",
                        "Unlikely: the assembly compares your distances with the package's on the data in "
                        "use and asserts they agree, whatever the set."),
            "b": Option("A few images with nearly equal scores swapped places in the ranking: on a small "
                        "test set one swapped good/defective pair moves image AUROC by 1 / (good x "
                        "defective images).",
                        "Yes: your coreset and the package's are greedy covers of the same patches from "
                        "different random projections, so scores differ slightly and near-ties swap. The "
                        "assembly prints what one swap is worth on the data in use."),
            "c": Option("Greedy k-center is random, so every run gives a different AUROC.",
                        "No: given its first pick and the projection's seed, greedy k-center is "
                        "deterministic; rerun it and you get the same picks."),
            "d": Option("AUROC depends on the threshold, and yours differs from the package's.",
                        "No: AUROC sweeps every threshold; it depends only on how the scores rank the "
                        "images."),
        }),
    "12.3": Question(
        stem="The fp32 export's scores match PyTorch's to about one part in a million; the int8 export "
             "flips a few verdicts. Why?",
        key="b",
        options={
            "a": Option("The export runs another algorithm than PyTorch, so some gap is expected either way.",
                        "No: the fp32 export computes the same features and the same search; its gap is "
                        "float rounding, as the parity check printed."),
            "b": Option("int8 rounds the backbone's weights and activations to 8-bit integers, so every "
                        "patch feature moves a little; the recalibrated threshold absorbs the average shift, "
                        "but images scored near the threshold can land on the other side.",
                        "Yes: quantisation changes the features, not the method. The difference image shows "
                        "the whole map moving a little, and the images that flip are those whose score was "
                        "close to the threshold."),
            "c": Option("int8 makes the nearest-neighbour search approximate, so some patches find a "
                        "farther bank patch.",
                        "No: only the backbone is quantised; the search over the bank stays exact (faiss)."),
            "d": Option("The flips mean the parity check failed, so the int8 folder was not written.",
                        "No: the 1e-4 parity bound is for the fp32 export; for int8 the export prints how "
                        "many verdicts flip and the largest score change, and writes the folder."),
        }),
}
