"""Training datasets (star_vsr.data): clip sampling, captions, motion clips, bad samples, determinism."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from star_vsr.data import (
    BadSampleWarning,
    EpochShuffleSampler,
    ImageMotionDataset,
    VideoClipDataset,
    list_clip_sources,
    make_pair,
    report_skips,
)
from star_vsr.data.video_clips import as_frame_interval, sample_frame_indices
from star_vsr.errors import InputError, VideoNotFoundError
from star_vsr.evalset import COLOUR_TRAINING_PHOTO_NAMES, evaluation_photos, training_photos
from star_vsr.io.synthetic import write_test_video

FRAMES = 4
INDEX_LEVEL_STEP = 8  # red level of frame k in the indexed frame folders: 8 k


def indexed_frames(folder: Path, num_frames: int, size: tuple[int, int] = (24, 32)) -> Path:
    """A frame folder whose frame k has red = 8 k everywhere and green = the column index x 4."""
    folder.mkdir(parents=True)
    h, w = size
    for k in range(num_frames):
        frame = np.zeros((h, w, 3), np.uint8)
        frame[..., 0] = INDEX_LEVEL_STEP * k
        frame[..., 1] = (np.arange(w) * 4)[None, :]
        cv2.imwrite(str(folder / f"frame{k}.png"), frame[..., ::-1])  # OpenCV writes BGR
    return folder


def frame_ids(gt: torch.Tensor) -> list[int]:
    """Frame indices encoded in the red channel of an indexed clip (n, 3, H, W)."""
    return [round(float(level) * 255 / INDEX_LEVEL_STEP) for level in gt[:, 0].mean(dim=(1, 2))]


def same_item(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in ("gt", "lq", "hint")) and a["caption"] == b["caption"]


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return training_photos(channel_orders=False)


# --- scikit-image photos and motion clips --------------------------------------------------------


def test_default_motion_photos_are_colour_training_photos_never_the_evaluation_ones():
    default = ImageMotionDataset(length=1).images
    evaluation = evaluation_photos()
    assert len(default) == len(COLOUR_TRAINING_PHOTO_NAMES)
    for photo in default:
        assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3
        assert not np.array_equal(photo[..., 0], photo[..., 1])  # colour, not grey repeated
        assert not any(photo.shape == held_out.shape and np.array_equal(photo, held_out) for held_out in evaluation)


def test_motion_clip_items_shapes_ranges_and_hint(photos):
    dataset = ImageMotionDataset(photos[:2], num_frames=FRAMES, crop_size=32, scale=4, degradation="light",
                                 length=3, caption="a photo")
    assert len(dataset) == 3
    item = dataset[2]
    assert item["gt"].shape == (FRAMES, 3, 32, 32) and item["hint"].shape == (FRAMES, 3, 32, 32)
    assert item["lq"].shape == (FRAMES, 3, 8, 8)
    assert item["caption"] == "a photo" and item["index"] == 2 and item["num_skipped"] == 0
    for key in ("gt", "lq", "hint"):
        assert item[key].dtype == torch.float32 and 0 <= item[key].min() and item[key].max() <= 1
    expected_hint = F.interpolate(item["lq"], size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(item["hint"], expected_hint)
    clean = ImageMotionDataset(photos[:1], num_frames=2, crop_size=32, degradation=None)[0]
    bicubic = F.interpolate(clean["gt"], size=(8, 8), mode="bicubic", antialias=True, align_corners=False)
    torch.testing.assert_close(clean["lq"], (bicubic.clamp(0, 1) * 255).round() / 255)


@pytest.mark.parametrize("degradation", ["medium", None])
def test_a_pair_is_the_same_on_one_thread_and_on_several(degradation):
    """A DataLoader's workers run torch on one thread, the main process on every core: the hint (the ControlNet's
    input) was bilinear on all of them and differed in the last bit, so a run resumed with another
    dataloader_num_workers trained on other hints (black-box hunt). Run on 2 threads (this machine's cores) and 1."""
    from skimage import data

    photo = torch.from_numpy(data.astronaut()[:128, :192].copy()).permute(2, 0, 1).float() / 255
    clip = torch.stack([torch.roll(photo, (i, 2 * i), (1, 2)) for i in range(4)])  # (4, 3, 128, 192)
    threads = torch.get_num_threads()
    try:
        pairs = []
        for count in (1, max(2, threads)):
            torch.set_num_threads(count)
            pairs.append(make_pair(clip, 4, degradation, seed=5))
    finally:
        torch.set_num_threads(threads)
    for key in ("gt", "lq", "hint"):
        assert torch.equal(pairs[0][key], pairs[1][key]), key


def test_a_bicubic_pair_checks_its_clip_as_the_chain_does():
    # unchecked: 18x16 at x4 gave a 4x4 LR clip of a misaligned pair; 0..255 floats an all-white LR clip
    pair = make_pair(torch.rand(2, 3, 16, 12), 4, None, 0)
    assert pair["lq"].shape == (2, 3, 4, 3) and pair["hint"].shape == (2, 3, 16, 12)
    half = make_pair(torch.rand(2, 3, 16, 12).half(), 4, None, 0)  # was "not implemented for 'Half'"
    assert all(half[key].dtype == torch.float32 for key in ("gt", "lq", "hint"))
    for dtype in (torch.float16, torch.float64):  # through the chain: gt kept its dtype
        chained = make_pair(torch.rand(2, 3, 16, 12, dtype=dtype), 4, "light", 0)
        assert all(chained[key].dtype == torch.float32 for key in ("gt", "lq", "hint"))
    for gt, match in ((torch.rand(2, 3, 18, 16), "Frame size 18x16 is not divisible by scale 4; crop the clip to 16"),
                      (torch.rand(2, 3, 16, 16) * 255, r"gt values must be in \[0, 1\], got \[0"),
                      ((torch.rand(2, 3, 16, 16) * 255).byte(), "gt must be a float tensor in"),
                      (torch.rand(3, 16, 16), r"gt must be shaped \(n, 3, h, w\) with n >= 1, got \(3, 16, 16\)")):
        with pytest.raises(InputError, match=match):
            make_pair(gt, 4, None, 0)
    with pytest.raises(InputError, match="scale"):
        make_pair(torch.rand(2, 3, 16, 16), 5, None, 0)


def test_sharpened_pairs_degrade_and_return_the_unsharp_masked_clip(photos):
    """As Real-ESRGAN and STAR train: the HR clip sharpened (BasicSR's USMSharp), the LR clip degraded from it, and
    the sharpened clip the target (review against their data code: star-vsr trained on the plain clip)."""
    from star_vsr.degradations.sharpen import unsharp_mask

    gt = torch.from_numpy(photos[0][:32, :32]).permute(2, 0, 1)[None].float().repeat(2, 1, 1, 1) / 255  # (2, 3, 32, 32)
    sharpened = unsharp_mask(gt)
    assert (sharpened - gt).abs().mean() > 1 / 255  # a photo has edges to sharpen
    for degradation in ("light", None):
        pair = make_pair(gt, 4, degradation, seed=3, sharpen_gt=True)
        expected = make_pair(sharpened, 4, degradation, seed=3)
        for key in ("gt", "lq", "hint"):
            torch.testing.assert_close(pair[key], expected[key], rtol=0, atol=0)
    with pytest.raises(InputError, match=r"gt values must be in \[0, 1\]"):  # checked before it is sharpened
        make_pair(gt * 255, 4, None, 0, sharpen_gt=True)
    plain = ImageMotionDataset(photos[:1], num_frames=2, crop_size=32, degradation=None)[0]
    sharp = ImageMotionDataset(photos[:1], num_frames=2, crop_size=32, degradation=None, sharpen_gt=True)[0]
    torch.testing.assert_close(sharp["gt"], unsharp_mask(plain["gt"]), rtol=0, atol=0)


def test_a_negative_seed_or_an_unknown_backend_is_refused_where_it_is_given(photos, tmp_path):
    # a negative seed failed at the first item with NumPy's "expected non-negative integer"
    with pytest.raises(InputError, match="seed must be a whole number >= 0, got -1"):
        ImageMotionDataset(photos[:1], num_frames=2, crop_size=16, seed=-1)
    with pytest.raises(InputError, match="seed must be a whole number >= 0, got -1"):
        EpochShuffleSampler(3, seed=-1)
    assert EpochShuffleSampler(3, seed=1.0).seed == 1  # a whole float, accepted as before
    # a negative epoch failed at the next item or iteration, and a scale of 0 with a ZeroDivisionError
    from star_vsr.data.patches import RandomPatchDataset

    dataset = ImageMotionDataset(photos[:1], num_frames=2, crop_size=16)
    for settable in (dataset, EpochShuffleSampler(3)):
        with pytest.raises(InputError, match="epoch must be a whole number >= 0, got -1"):
            settable.set_epoch(-1)
    with pytest.raises(InputError, match="scale must be a whole number >= 1, got 0"):
        RandomPatchDataset(dataset, 8, 0)
    # an unknown backend skipped every source as unreadable and blamed the training data
    video = write_test_video(tmp_path / "a.mp4", 4, size=(16, 16))
    with pytest.raises(InputError, match="backend must be 'auto', 'decord' or 'pyav', got 'ffmpeg'"):
        VideoClipDataset(video, num_frames=2, crop_size=16, backend="ffmpeg")
    # "no" flipped and shuffled, a caption of None failed at the first batch, 2.5 samples were 2 (black-box hunt)
    for flags, message in [({"random_flip": "no"}, "random_flip must be True or False, got 'no'"),
                           ({"default_caption": None}, "default_caption must be text"),
                           ({"caption_dropout": "0.1"}, "caption_dropout must be a finite number from 0 to 1")]:
        with pytest.raises(InputError, match=message):
            VideoClipDataset(video, **{"num_frames": 2, "crop_size": 16, **flags})
    with pytest.raises(InputError, match="shuffle must be True or False, got 'no'"):
        EpochShuffleSampler(3, shuffle="no")
    with pytest.raises(InputError, match="num_samples must be a whole number >= 1, got 2.5"):
        EpochShuffleSampler(2.5)


def test_motion_clips_are_deterministic_per_seed_index_and_epoch(photos):
    dataset = ImageMotionDataset(photos[:2], num_frames=FRAMES, crop_size=16, degradation="medium", length=4)
    first = dataset[1]
    assert same_item(first, dataset[1])
    assert same_item(first, ImageMotionDataset(photos[:2], num_frames=FRAMES, crop_size=16, length=4)[1])
    assert not same_item(first, dataset[3])  # same photo (3 % 2 == 1), another camera move
    assert not same_item(first, ImageMotionDataset(photos[:2], num_frames=FRAMES, crop_size=16, length=4, seed=1)[1])
    dataset.set_epoch(1)
    assert not same_item(first, dataset[1])
    dataset.set_epoch(0)
    assert same_item(first, dataset[1])


def test_motion_from_a_still_is_a_smooth_constant_pan(photos):
    still = ImageMotionDataset(photos[:1], num_frames=5, crop_size=64, degradation=None, max_pan=0.0,
                               zoom_range=(1.0, 1.0), max_rotation=0.0, window_scale_range=(1.0, 1.0))[0]["gt"]
    assert torch.equal(still[0], still[-1])  # no motion asked for: a still clip
    pan = ImageMotionDataset(photos[:1], num_frames=5, crop_size=64, degradation=None, max_pan=0.5,
                             zoom_range=(1.0, 1.0), max_rotation=0.0, window_scale_range=(1.0, 1.0), seed=3)
    gt = pan[0]["gt"]
    grey = [np.float32(frame.mean(0).numpy()) for frame in gt]
    window = cv2.createHanningWindow((64, 64), cv2.CV_32F)
    shifts = np.array([cv2.phaseCorrelate(grey[k], grey[k + 1], window)[0] for k in range(4)])  # (dx, dy)
    speed = np.hypot(*shifts.T)
    assert speed.min() > 0.5  # the camera moves ...
    assert np.abs(shifts - shifts.mean(0)).max() < 0.35  # ... at a constant velocity
    zoom_roll = ImageMotionDataset(photos[:1], num_frames=3, crop_size=32, degradation=None, max_pan=0.0,
                                   zoom_range=(1.2, 1.3), max_rotation=5.0)[0]["gt"]
    assert not torch.equal(zoom_roll[0], zoom_roll[-1])


def test_flip_and_rotate_films_the_photo_in_all_eight_orientations():
    """A photo whose red grows along x and green along y: the gradient directions give the orientation."""
    ramp = np.linspace(0, 255, 200)
    photo = np.stack([np.broadcast_to(ramp[None, :], (200, 200)), np.broadcast_to(ramp[:, None], (200, 200)),
                      np.zeros((200, 200))], axis=2).astype(np.uint8)

    def orientations(flip_and_rotate: bool) -> set:
        dataset = ImageMotionDataset([photo], num_frames=2, crop_size=32, degradation=None, max_pan=0.0,
                                     zoom_range=(1.0, 1.0), max_rotation=0.0, window_scale_range=(1.0, 1.0),
                                     length=40, flip_and_rotate=flip_and_rotate)
        seen = set()
        for i in range(len(dataset)):
            frame = dataset[i]["gt"][0]  # (3, 32, 32)
            # sign of d/dx and d/dy of red and green: one of eight signatures per orientation
            seen.add(tuple(int(np.sign(float(frame[c].diff(dim=axis).mean()))) for c in (0, 1) for axis in (1, 0)))
        return seen

    assert orientations(False) == {(1, 0, 0, 1)}  # red along +x, green along +y
    assert len(orientations(True)) == 8
    dataset = ImageMotionDataset([photo], num_frames=2, crop_size=32, length=2, flip_and_rotate=True)
    assert same_item(dataset[1], dataset[1])


# --- video clips -------------------------------------------------------------------------------


def test_clip_sampling_indices_interval_and_crop(tmp_path):
    indexed_frames(tmp_path / "clips" / "a", num_frames=12)
    for interval in (1, (2, 3)):
        dataset = VideoClipDataset(tmp_path / "clips", num_frames=FRAMES, crop_size=(16, 20), scale=4,
                                   degradation=None, frame_interval=interval, random_flip=False, length=10)
        steps, starts = set(), set()
        for i in range(len(dataset)):
            item = dataset[i]
            assert item["gt"].shape == (FRAMES, 3, 16, 20) and item["lq"].shape == (FRAMES, 3, 4, 5)
            ids = frame_ids(item["gt"])
            diffs = set(np.diff(ids))
            assert len(diffs) == 1 and 0 <= ids[0] and ids[-1] <= 11
            steps |= diffs
            starts.add(ids[0])
        assert steps == ({1} if interval == 1 else {2, 3})
        assert len(starts) > 2  # random starts
    # too long an interval for the video is lowered to fit
    rng = np.random.default_rng(0)
    assert sample_frame_indices(rng, total_frames=7, num_frames=4, frame_interval=(5, 5)) == [0, 2, 4, 6]


def test_frame_interval_takes_whole_floats_like_other_counts():
    """YAML / JSON may give 2.0; the other whole-number settings (check_whole_number) took it, this one refused it."""
    assert as_frame_interval(2) == as_frame_interval(2.0) == (2, 2)
    assert as_frame_interval([1.0, np.int64(3)]) == (1, 3)
    for bad in (1.5, True, [1, 2.5], "2"):
        with pytest.raises(InputError, match="frame_interval must be an int or"):
            as_frame_interval(bad)


def test_random_flips_and_crops(tmp_path):
    indexed_frames(tmp_path / "clips" / "a", num_frames=6)
    dataset = VideoClipDataset(tmp_path / "clips", num_frames=2, crop_size=8, scale=4, degradation=None, length=24)
    flipped = lefts = 0
    for i in range(len(dataset)):
        green = dataset[i]["gt"][0, 1, 0] * 255 / 4  # the column index of each crop pixel
        step = float(green[1] - green[0])
        assert abs(abs(step) - 1) < 1e-3
        flipped += step < 0
        lefts += float(green.min()) < 0.5  # the crop starts at column 0
    assert 4 <= flipped <= 20 and lefts < 24


def test_fingerprint_changes_with_the_files_and_captions_a_data_set_reads(tmp_path, monkeypatch):
    """What a resumed training run compares with its start (train_star.py's train_data.sha256)."""
    import os

    clips = tmp_path / "clips"
    clips.mkdir()
    write_test_video(clips / "a.mp4", num_frames=3, size=(16, 16))

    def fingerprint(source=clips):
        return VideoClipDataset(source, num_frames=2, crop_size=8, scale=4, degradation=None).fingerprint()

    first = fingerprint()
    assert fingerprint() == first and len(first) == 64  # the same files: the same data
    write_test_video(clips / "b.mp4", num_frames=3, size=(16, 16), seed=1)
    added = fingerprint()
    (clips / "b.mp4").unlink()
    assert added != first and fingerprint() == first
    os.utime(clips / "a.mp4", ns=(0, 0))  # replaced (another modification time, as a copy over it gives)
    assert fingerprint() != first
    listing = tmp_path / "list.json"  # the same file with another caption
    listing.write_text(json.dumps([{"path": str(clips / "a.mp4"), "caption": "a cat"}]))
    cat = fingerprint(listing)
    listing.write_text(json.dumps([{"path": str(clips / "a.mp4"), "caption": "a dog"}]))
    assert fingerprint(listing) != cat
    # the files, however named: relative to the working folder, absolute, through a link (a resume named the folder
    # otherwise was refused as changed); earlier runs recorded the names as given, which a resume also accepts
    os.utime(clips / "a.mp4", ns=(1, 1))
    absolute = fingerprint()
    (tmp_path / "link").symlink_to(clips)
    monkeypatch.chdir(tmp_path)
    assert fingerprint(Path("clips")) == fingerprint(tmp_path / "link") == absolute
    as_given = VideoClipDataset(Path("clips"), num_frames=2, crop_size=8, scale=4, degradation=None).fingerprint(
        as_given=True)
    assert as_given != absolute and as_given != fingerprint(tmp_path / "link")
    (tmp_path / "loop.mp4").symlink_to(tmp_path / "loop.mp4")  # a list's entry: skipped when read, not a traceback
    looped = VideoClipDataset([tmp_path / "loop.mp4", clips / "a.mp4"], num_frames=2, crop_size=8, scale=4,
                              degradation=None)
    assert len(looped.fingerprint()) == 64  # (Path.resolve raises RuntimeError on a loop in Python 3.11)
    shutil.copytree(clips, tmp_path / "moved")  # moved with their times (cp -a): the same data
    assert fingerprint(tmp_path / "moved") == absolute
    frames = tmp_path / "frames" / "clip"  # frames swapped by renaming them: sizes, count, latest time unchanged
    frames.mkdir(parents=True)
    for index in range(3):
        cv2.imwrite(str(frames / f"{index}.png"), np.full((16, 16, 3), 60 * index, np.uint8))
    before = fingerprint(tmp_path / "frames")
    (frames / "0.png").rename(frames / "swap.png")
    (frames / "1.png").rename(frames / "0.png")
    (frames / "swap.png").rename(frames / "1.png")
    assert fingerprint(tmp_path / "frames") != before
    photos = ImageMotionDataset(training_photos()[:2], num_frames=2, crop_size=8, scale=4, degradation=None)
    assert photos.fingerprint() != ImageMotionDataset(training_photos()[:3], num_frames=2, crop_size=8, scale=4,
                                                      degradation=None).fingerprint()


def test_video_files_decord_and_captions_from_lists(tmp_path):
    write_test_video(tmp_path / "clip.mp4", num_frames=10, size=(32, 48))
    (tmp_path / "clip.txt").write_text("a sliding texture\n")
    write_test_video(tmp_path / "other.mkv", num_frames=8, size=(32, 32), seed=1)
    dataset = VideoClipDataset(tmp_path, num_frames=FRAMES, crop_size=16, scale=2, degradation="light",
                               default_caption="default")
    assert [s.path.name for s in dataset.sources] == ["clip.mp4", "other.mkv"]
    assert dataset[0]["caption"] == "a sliding texture" and dataset[1]["caption"] == "default"
    (tmp_path / "clip.txt").write_text(" \n")  # empty: the default caption (it was "", where a CSV gives the default)
    dataset = VideoClipDataset(tmp_path, num_frames=FRAMES, crop_size=16, scale=2, degradation="light",
                               default_caption="default")
    # the source keeps "" as earlier versions read it: the data's fingerprint, which a resumed training run
    # compares, is unchanged
    assert dataset[0]["caption"] == "default" and dataset.sources[0].caption == ""
    (tmp_path / "clip.txt").write_text("a sliding texture\n")
    assert dataset[0]["gt"].shape == (FRAMES, 3, 16, 16) and dataset[0]["lq"].shape == (FRAMES, 3, 8, 8)
    assert same_item(dataset[0], dataset[0])

    (tmp_path / "list.csv").write_text("path,caption\nclip.mp4,from csv\nother.mkv,\n")
    csv_sources = list_clip_sources(tmp_path / "list.csv")
    assert [(s.path.name, s.caption) for s in csv_sources] == [("clip.mp4", "from csv"), ("other.mkv", None)]
    (tmp_path / "list.json").write_text(json.dumps([{"path": "other.mkv", "caption": "from json"}, "clip.mp4"]))
    json_sources = list_clip_sources(tmp_path / "list.json")
    assert [(s.path, s.caption) for s in json_sources] == [(tmp_path / "other.mkv", "from json"),
                                                            (tmp_path / "clip.mp4", None)]
    (tmp_path / "excel.csv").write_text("\ufeffpath,caption\nclip.mp4,saved by Excel\n", encoding="utf-8")  # a BOM
    assert [s.caption for s in list_clip_sources(tmp_path / "excel.csv")] == ["saved by Excel"]
    (tmp_path / "empty.json").write_text("[]")
    with pytest.raises(InputError, match="lists no clips"):
        list_clip_sources(tmp_path / "empty.json")
    (tmp_path / "bad.csv").write_text("file\nclip.mp4\n")
    with pytest.raises(InputError, match="'path' column"):
        list_clip_sources(tmp_path / "bad.csv")
    with pytest.raises(VideoNotFoundError):
        VideoClipDataset(tmp_path / "missing")
    with pytest.raises(InputError, match="divisible"):
        VideoClipDataset(tmp_path, crop_size=18, scale=4)


def test_clip_lists_and_captions_as_spreadsheets_and_editors_write_them(tmp_path):
    """A header "path, caption" or "Caption" dropped every caption silently; a caption file with a BOM gave three
    garbage tokens per caption; cp1252 files, a JSON path that is no string and a row left empty were tracebacks
    or a puzzling "got {}" (black-box review)."""
    (tmp_path / "clip.mp4").write_bytes(b"")  # the lists are read, not the videos
    (tmp_path / "spaced.csv").write_text("path, Caption\r\n clip.mp4 , a red car \r\n,\r\n\r\n")
    assert [(s.path.name, s.caption) for s in list_clip_sources(tmp_path / "spaced.csv")] == [("clip.mp4", "a red car")]
    (tmp_path / "clip.txt").write_text("\ufeffa red car\n", encoding="utf-8")  # Notepad's "UTF-8 with BOM"
    assert list_clip_sources(tmp_path / "clip.mp4")[0].caption == "a red car"
    (tmp_path / "clip.txt").write_bytes("caf\xe9 at night".encode("cp1252"))
    with pytest.raises(InputError, match=r"clip.txt is not UTF-8 text .*; save it as UTF-8"):
        list_clip_sources(tmp_path / "clip.mp4")
    (tmp_path / "windows.csv").write_bytes("path,caption\nclip.mp4,caf\xe9\n".encode("cp1252"))
    with pytest.raises(InputError, match=r"windows.csv is not UTF-8 text .*Excel: CSV UTF-8"):
        list_clip_sources(tmp_path / "windows.csv")
    (tmp_path / "no_path.csv").write_text("path,caption\nclip.mp4,one\n,a caption without its clip\n")
    with pytest.raises(InputError, match=r"no_path.csv, line 3: no path in this row"):
        list_clip_sources(tmp_path / "no_path.csv")
    (tmp_path / "list.json").write_text(json.dumps([{"path": ["clip.mp4"]}]))
    with pytest.raises(InputError, match=r"a clip's path must be a file or folder name, got \['clip.mp4'\]"):
        list_clip_sources(tmp_path / "list.json")
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)  # a RecursionError traceback (review)
    with pytest.raises(InputError, match=r"deep.json is not valid JSON \(nested too deep to read"):
        list_clip_sources(tmp_path / "deep.json")
    for suffix in (".jsonl", ".tsv", ".txt"):  # read as one video, refused at the first item as a broken video
        (tmp_path / f"list{suffix}").write_text('{"path": "clip.mp4"}\n')
        with pytest.raises(InputError, match=rf"list\{suffix} looks like a list of clips, but clip lists are CSV"):
            list_clip_sources(tmp_path / f"list{suffix}")


def test_clip_lists_are_read_as_written_or_refused(tmp_path):
    """A caption's unquoted comma cut the caption there; a column named twice was read from its last copy; a JSON
    caption that is a list became "['a', 'b']", an empty one stayed empty (a CSV's gave the default caption); one
    dict given as the list read its keys as file names; a broken link in a folder was left out without a word
    (black-box hunt of the Python API)."""
    (tmp_path / "clip.mp4").write_bytes(b"")  # the lists are read, not the videos
    (tmp_path / "comma.csv").write_text("path,caption\nclip.mp4,\"a dog, running\"\nclip.mp4,a dog, running\n")
    with pytest.raises(InputError, match=r"comma.csv, line 3: more fields than columns \( running left over\); a "
                                         r"caption that holds a comma needs quotes"):
        list_clip_sources(tmp_path / "comma.csv")
    (tmp_path / "comma.csv").write_text("path,caption\nclip.mp4,\"a dog, running\"\nclip.mp4,,\n")  # (an empty field)
    assert [s.caption for s in list_clip_sources(tmp_path / "comma.csv")] == ["a dog, running", None]
    (tmp_path / "twice.csv").write_text("path,Path\nclip.mp4,other.mp4\n")
    with pytest.raises(InputError, match=r"twice.csv: the columns path are named twice; keep one of each"):
        list_clip_sources(tmp_path / "twice.csv")
    (tmp_path / "notes.csv").write_text("path,notes,notes\nclip.mp4,a,b\n")  # columns it does not read: fine
    assert [s.path.name for s in list_clip_sources(tmp_path / "notes.csv")] == ["clip.mp4"]
    (tmp_path / "list.json").write_text(json.dumps([{"path": "clip.mp4", "caption": ["a", "b"]}]))
    with pytest.raises(InputError, match=r"a clip's caption must be text, got \['a', 'b'\] for clip.mp4"):
        list_clip_sources(tmp_path / "list.json")
    (tmp_path / "list.json").write_text(json.dumps([{"path": "clip.mp4", "caption": " "}]))
    assert list_clip_sources(tmp_path / "list.json")[0].caption is None
    with pytest.raises(InputError, match=r"the training data is one \{'path': ..., 'caption': ...\} object; give a "
                                         r"list of them"):
        list_clip_sources({"path": str(tmp_path / "clip.mp4"), "caption": "x"})
    (tmp_path / "gone.mp4").symlink_to(tmp_path / "moved.mp4")
    with pytest.warns(UserWarning, match=rf"skipped {tmp_path / 'gone.mp4'}: it is a link to .*moved.mp4, which does "
                                         r"not exist"):
        assert [s.path.name for s in list_clip_sources(tmp_path)] == ["clip.mp4"]


def test_caption_dropout_rate(photos):
    def captions(p: float) -> list[str]:
        dataset = ImageMotionDataset([photos[0][:64, :64]], num_frames=1, crop_size=8, scale=2, degradation=None,
                                     length=300,
                                     caption="text", caption_dropout=p)
        return [dataset[i]["caption"] for i in range(len(dataset))]

    dropped = captions(0.3).count("")
    assert 0.22 * 300 < dropped < 0.38 * 300  # binomial(300, 0.3): mean 90, std 8
    assert "" not in captions(0.0) and set(captions(1.0)) == {""}


# --- bad samples -----------------------------------------------------------------------------


def test_photo_datasets_take_a_folder_and_read_photos_as_the_commands_do(tmp_path):
    """ImageMotionDataset("photos") made one image per character of the name; 16-bit photos came out white (PIL's
    convert("RGB") clips at 255) and EXIF orientation was ignored, unlike every command's reading of a photo."""
    from PIL import Image, ImageOps

    folder = tmp_path / "photos"
    folder.mkdir()
    sideways = Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8))
    exif = sideways.getexif()
    exif[0x0112] = 6  # turn 90 degrees clockwise to show
    sideways.save(folder / "photo10.png", exif=exif)
    cv2.imwrite(str(folder / "photo2.png"), np.full((32, 32), 40000, np.uint16))  # 16-bit grey, 61 % of white
    (folder / "._photo2.png").write_bytes(b"macOS AppleDouble, not a photo")
    for images in (str(folder), folder):
        dataset = ImageMotionDataset(images, num_frames=2, crop_size=8, degradation=None)
        assert [Path(name).name for name in dataset.images] == ["photo2.png", "photo10.png"]  # natural order
    grey, upright = dataset._image(0), dataset._image(1)
    assert grey.dtype == np.uint8 and grey.shape == (32, 32, 3) and abs(int(grey[0, 0, 0]) - 156) <= 1
    assert np.array_equal(upright, np.asarray(ImageOps.exif_transpose(Image.open(folder / "photo10.png"))))
    assert upright.shape == (40, 24, 3)
    assert ImageMotionDataset(str(folder / "photo10.png"), num_frames=2, crop_size=8).images == [folder / "photo10.png"]
    with pytest.raises(VideoNotFoundError, match="does not exist; give a folder of photos"):
        ImageMotionDataset(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no photos"):
        ImageMotionDataset(tmp_path / "empty")


def test_bad_samples_are_skipped_with_a_warning_and_counted(tmp_path, photos):
    data = tmp_path / "videos"
    data.mkdir()
    write_test_video(data / "a_good.mp4", num_frames=8, size=(32, 32))
    (data / "b_corrupt.mp4").write_bytes(b"this is not a video" * 10)
    write_test_video(data / "c_short.mp4", num_frames=2, size=(32, 32))
    write_test_video(data / "d_small.mp4", num_frames=8, size=(16, 16))
    dataset = VideoClipDataset(data, num_frames=FRAMES, crop_size=24, scale=4, degradation=None)
    assert len(dataset) == 4
    with pytest.warns(BadSampleWarning) as caught:
        items = [dataset[i] for i in range(4)]
    assert all(item["gt"].shape == (FRAMES, 3, 24, 24) for item in items)
    assert [item["num_skipped"] for item in items] == [0, 3, 2, 1]  # each bad one falls through to a_good
    reasons = {Path(name).name: why for name, why in dataset.bad_sources.items()}
    assert set(reasons) == {"b_corrupt.mp4", "c_short.mp4", "d_small.mp4"}
    assert "cannot be read" in reasons["b_corrupt.mp4"]
    assert "2 frames" in reasons["c_short.mp4"] and "smaller than the crop" in reasons["d_small.mp4"]
    assert len(caught) == 3  # one warning per bad source, not per item
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataset[1]  # already known: no new warning

    only_bad = VideoClipDataset([data / "b_corrupt.mp4", data / "c_short.mp4"], num_frames=FRAMES, crop_size=24)
    with pytest.warns(BadSampleWarning), pytest.raises(InputError, match="no usable source"):
        only_bad[0]
    # a list's entry that is a folder of clips: the reader advised `star-vsr upscale-batch` (black-box hunt)
    listed = VideoClipDataset([data, data / "a_good.mp4"], num_frames=FRAMES, crop_size=24, degradation=None)
    with pytest.warns(BadSampleWarning, match=r"videos: is a folder of clips, where a clip list names one video \(or "
                                              r"one folder of frames\) an entry; list its clips, or give the folder"):
        assert listed[0]["num_skipped"] == 1

    (tmp_path / "broken.png").write_bytes(b"not a png")
    images = ImageMotionDataset([tmp_path / "broken.png", photos[0], np.zeros((20, 20, 3), np.uint8)],
                                num_frames=2, crop_size=16, degradation=None)
    with pytest.warns(BadSampleWarning):
        assert [images[i]["num_skipped"] for i in range(3)] == [1, 0, 2]  # 2 -> 0 (broken) -> 1


def test_an_item_tries_every_source_before_it_fails(tmp_path):
    """Items tried their own source and the next 32: 40 one-frame clips sorted after good ones failed items 4 to 11
    (a training run died at a random step). Past its neighbours an item draws the sources it tries."""
    data = tmp_path / "clips"
    def grey_frames(folder: Path, num_frames: int, level: int) -> None:
        folder.mkdir(parents=True)
        for k in range(num_frames):
            cv2.imwrite(str(folder / f"frame{k}.png"), np.full((16, 16, 3), level, np.uint8))

    for i in range(4):  # frame folders of one grey level each, to tell from an item which one it came from
        grey_frames(data / f"good_{i}", num_frames=3, level=40 * (i + 1))
    for i in range(40):
        grey_frames(data / f"short_{i:02d}", num_frames=1, level=0)
    dataset = VideoClipDataset(data, num_frames=2, crop_size=8, scale=4, degradation=None)
    with pytest.warns(BadSampleWarning):
        items = [dataset[i] for i in range(len(dataset))]  # none fails
    levels = [round(float(item["gt"].mean()) * 255) for item in items]
    assert levels[:4] == [40, 80, 120, 160] and [item["num_skipped"] for item in items[:4]] == [0] * 4
    assert all(item["num_skipped"] >= 1 for item in items[4:])
    assert levels[-32:] == [40] * 32  # within 32 of the run's end: the next good clip, as before (reproducible)
    assert len(set(levels[4:12])) > 1  # the 8 that failed: drawn from all sources, not the next good one
    again = [dataset[i] for i in range(len(dataset))]  # drawn from (seed, epoch, index): the same every time
    assert all(torch.equal(a["gt"], b["gt"]) and a["num_skipped"] == b["num_skipped"] for a, b in zip(items, again))
    only_bad = VideoClipDataset([data / f"short_{i:02d}" for i in range(40)], num_frames=2, crop_size=8)
    message = r"no usable source among the 40 training sources \(item 7 tried them all: .*short_07"
    with pytest.warns(BadSampleWarning), pytest.raises(InputError, match=message):
        only_bad[7]


def test_skips_in_dataloader_workers_are_warned_of_once_by_the_training_loop(tmp_path):
    """A worker's copy of the dataset is made afresh every epoch, so each worker warned of a bad source again every
    epoch, from a line inside torch; workers now list their skips and the loop says each once (``report_skips``)."""
    data = tmp_path / "videos"
    data.mkdir()
    write_test_video(data / "a_good.mp4", num_frames=8, size=(32, 32))
    (data / "b_corrupt.mp4").write_bytes(b"this is not a video" * 10)
    dataset = VideoClipDataset(data, num_frames=FRAMES, crop_size=24, scale=4, degradation=None, length=4)
    loader = DataLoader(dataset, batch_size=1, num_workers=2)
    said: set[str] = set()
    with pytest.warns(BadSampleWarning) as caught:
        for epoch in range(2):
            dataset.set_epoch(epoch)
            for batch in loader:
                report_skips(batch["unreported_skips"], said)  # the loop's line
    assert len(caught) == 1 and caught[0].filename == __file__ and said == {str(data / "b_corrupt.mp4")}
    assert str(caught[0].message).startswith(f"skipping training sample {data / 'b_corrupt.mp4'}: cannot be read")
    with pytest.warns(BadSampleWarning, match="b_corrupt.mp4: cannot be read"):
        assert json.loads(dataset[1]["unreported_skips"]) == {}  # the main process warns itself
    # said by the main process first (train_star reads item 0 before the loop): the workers' copies know it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for batch in loader:
            assert batch["unreported_skips"] == ["{}"]


# --- workers and order ---------------------------------------------------------------------------


def test_dataloader_workers_give_the_same_items_and_sampler_is_seeded(photos):
    dataset = ImageMotionDataset(photos[:3], num_frames=2, crop_size=16, degradation="medium", length=4)
    in_process = [dataset[i] for i in range(4)]
    loader = DataLoader(dataset, batch_size=2, num_workers=2, shuffle=False)
    batches = list(loader)
    assert all(torch.equal(batches[i // 2]["lq"][i % 2], in_process[i]["lq"]) for i in range(4))
    # the same memory layout too: items had channels-last strides (frames decoded as (n, H, W, 3)), which a
    # loader kept without workers and made contiguous with them, so train_star rounded differently (weights
    # differed between --dataloader_num_workers 0 and 2)
    unworked = list(DataLoader(dataset, batch_size=2, num_workers=0, shuffle=False))
    for key in ("gt", "lq", "hint"):
        assert all(item[key].is_contiguous() for item in in_process)
        assert [b[key].stride() for b in unworked] == [b[key].stride() for b in batches], key

    sampler = EpochShuffleSampler(10, seed=5)
    first = list(sampler)
    assert sorted(first) == list(range(10)) and first == list(EpochShuffleSampler(10, seed=5))
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert list(EpochShuffleSampler(4, shuffle=False)) == [0, 1, 2, 3]


def test_persistent_dataloader_workers_see_each_new_epoch(photos):
    """A DataLoader with persistent_workers=True kept its workers' copies of the dataset from epoch 0 on: set_epoch
    reached only the main process's, and every epoch repeated epoch 0's camera moves and degradations."""
    dataset = ImageMotionDataset(photos[:2], num_frames=2, crop_size=16, degradation="medium", length=2)
    loader = DataLoader(dataset, batch_size=2, num_workers=1, persistent_workers=True)
    for epoch in (0, 1, 0):
        dataset.set_epoch(epoch)
        expected = [dataset[i]["lq"] for i in range(2)]
        (batch,) = list(loader)
        assert all(torch.equal(batch["lq"][i], expected[i]) for i in range(2)), epoch
    dataset.set_epoch(1)
    assert not torch.equal(dataset[0]["lq"], expected[0])  # (epochs differ: the test could fail)


def test_a_dataset_is_made_where_there_is_no_shared_memory(photos, monkeypatch):
    """The epoch's shared tensor stopped the dataset from being made where /dev/shm is missing or full; it is made
    then, with a warning to load without workers (which need shared memory for their batches too)."""
    def no_shared_memory(self):
        raise RuntimeError("unable to open shared memory object </torch_1_2_3> in read-write mode")

    monkeypatch.setattr(torch.Tensor, "share_memory_", no_shared_memory)
    with pytest.warns(UserWarning, match=r"no shared memory for the dataset's epoch \(unable to open .*\); "
                                         r"DataLoader workers need it too: load in the main process \(num_workers=0"):
        dataset = ImageMotionDataset(photos[:2], num_frames=2, crop_size=16, degradation="medium", length=2)
    first = dataset[0]["lq"]
    dataset.set_epoch(1)
    assert dataset.epoch == 1 and not torch.equal(dataset[0]["lq"], first)
    (batch,) = list(DataLoader(dataset, batch_size=2, num_workers=0))
    assert torch.equal(batch["lq"][0], dataset[0]["lq"])


def test_an_epoch_shorter_than_the_sources_goes_on_through_them():
    """--dataset_length below the number of videos trained on the first ones only: item i was source i in every
    epoch, and the rest were never read."""
    from star_vsr.data.base import ClipPairDataset

    class Recorded(ClipPairDataset):
        def __init__(self, length):
            super().__init__(6, 1, 8, 4, None, 0.0, 0, length)
            self.read = []

        def source_name(self, source):
            return f"source {source}"

        def load_clip(self, source, rng):
            self.read.append(source)
            return np.zeros((1, 8, 8, 3), np.uint8), ""

    short = Recorded(length=4)
    for epoch in range(3):
        short.set_epoch(epoch)
        _ = [short[i] for i in range(4)]
    assert short.read == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]
    whole = Recorded(length=None)  # one item per source (or more): item i is source i mod 6, every epoch
    for epoch in range(2):
        whole.set_epoch(epoch)
        _ = [whole[i] for i in range(6)]
    assert whole.read == [0, 1, 2, 3, 4, 5] * 2


def test_make_pair_takes_a_preset_name_as_the_datasets_do():
    gt = torch.rand(2, 3, 16, 16)
    pair = make_pair(gt, 4, "medium", 5)  # was "TypeError: 'str' object is not callable"
    assert pair["lq"].shape == (2, 3, 4, 4) and torch.equal(pair["lq"], make_pair(gt, 4, "medium", 5)["lq"])
    with pytest.raises(InputError, match="unknown degradation 'meduim'"):
        make_pair(gt, 4, "meduim", 5)


def test_random_patches_are_aligned_seeded_and_checked():
    from star_vsr.data.patches import RandomPatchDataset

    class Clips:
        epoch = 0

        def __len__(self) -> int:
            return 3

        def __getitem__(self, index: int) -> dict:
            gt = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(0))  # one clip: patches differ by position only
            return {"gt": gt, "hint": gt.clone(), "lq": F.avg_pool2d(gt, 4), "caption": ""}

    clips = Clips()
    patches = RandomPatchDataset(clips, patch_size=16, scale=4, seed=0)
    positions = set()
    for index in range(3):
        item = patches[index]
        assert item["gt"].shape == (2, 3, 16, 16) and item["lq"].shape == (2, 3, 4, 4)
        assert torch.allclose(F.avg_pool2d(item["gt"], 4), item["lq"], atol=1e-6)  # LR and HR patches aligned
        assert torch.equal(item["hint"], item["gt"])
        assert torch.equal(patches[index]["lq"], item["lq"])  # same (seed, epoch, index), same patch
        positions.add(tuple(item["lq"][0, 0, 0].tolist()))
    assert len(positions) == 3
    clips.epoch = 1
    assert not torch.equal(patches[0]["lq"], RandomPatchDataset(Clips(), 16, 4, seed=0)[0]["lq"])
    with pytest.raises(InputError, match="multiple of the scale"):
        RandomPatchDataset(clips, patch_size=10, scale=4)
    with pytest.raises(InputError, match="smaller than"):
        RandomPatchDataset(clips, patch_size=64, scale=4)[0]
    # refused where given (black-box hunt): pairs of another scale were cut out of line, a negative seed failed at
    # the first item, a float patch size in slicing
    clips.scale = 4
    with pytest.raises(InputError, match=r"scale 2 is not the scale of the dataset's pairs \(4\)"):
        RandomPatchDataset(clips, patch_size=16, scale=2)
    with pytest.raises(InputError, match="seed must be a whole number >= 0, got -1"):
        RandomPatchDataset(clips, patch_size=16, scale=4, seed=-1)
    with pytest.raises(InputError, match=r"patch_size must be a whole number >= 1, got 16.5"):
        RandomPatchDataset(clips, patch_size=16.5, scale=4)
    assert RandomPatchDataset(clips, patch_size=16.0, scale=4)[0]["gt"].shape == (2, 3, 16, 16)


def test_dataset_arguments_are_checked_where_given(photos):
    """One photo's array was read as its rows (hundreds of 1-pixel-high photos, refused at the first item); a
    fractional frame count or length was cut down; a zoom range of one number, a NaN pan were tracebacks at the
    first item (black-box hunt of the Python API)."""
    with pytest.raises(InputError, match=r"images is one array of shape \(.*\); give a list of pictures"):
        ImageMotionDataset(photos[0], num_frames=2, crop_size=16)
    for flags, message in [({"num_frames": 2.5}, "num_frames must be a whole number >= 1, got 2.5"),
                           ({"length": 2.5}, "length must be a whole number >= 1, got 2.5"),
                           ({"zoom_range": 1.0}, r"zoom_range must be a \(min, max\) pair of numbers, got 1.0"),
                           ({"max_pan": float("nan")}, "max_pan must be a finite number >= 0, got nan"),
                           # a string for a number was a TypeError, a caption that is no text failed at the first
                           # batch, "no" was taken as True (black-box hunt of the Python API)
                           ({"max_pan": "1"}, "max_pan must be a finite number >= 0, got '1'"),
                           ({"max_rotation": -1}, "max_rotation must be a finite number >= 0, got -1"),
                           ({"caption_dropout": "0.5"},
                            "caption_dropout must be a finite number from 0 to 1, got '0.5'"),
                           ({"caption_dropout": True}, "caption_dropout must be a finite number from 0 to 1, got True"),
                           ({"caption": None}, r"caption must be text \(a str, \"\" for none\), got None"),
                           ({"sharpen_gt": "no"}, "sharpen_gt must be True or False, got 'no'"),
                           ({"flip_and_rotate": 1}, "flip_and_rotate must be True or False, got 1")]:
        with pytest.raises(InputError, match=message):
            ImageMotionDataset(photos[:1], **{"num_frames": 2, "crop_size": 16, **flags})
    assert ImageMotionDataset(photos[:1], num_frames=2, crop_size=16, sharpen_gt=np.bool_(True)).sharpen_gt is True
    assert len(ImageMotionDataset(photos[:1], num_frames=2.0, crop_size=16, length=3.0)) == 3
    # what worked stays (review): a (n, h, w, 3) stack is n photos, a range may be a NumPy pair
    stack = np.stack([photos[0][:64, :64]] * 2)
    assert len(ImageMotionDataset(stack, num_frames=2, crop_size=16, zoom_range=np.array([0.9, 1.1])).images) == 2
    for strings in (("a", "b"), ("0.9", "1.1")):  # (the second passed, then failed in a comparison; review)
        with pytest.raises(InputError, match=r"zoom_range must be a \(min, max\) pair of numbers, got \('"):
            ImageMotionDataset(photos[:1], num_frames=2, crop_size=16, zoom_range=strings)


def test_training_folder_of_videos_with_a_poster_lists_the_videos(tmp_path):
    """A folder of videos with a picture beside them was read as one clip: a frame folder of that picture."""
    for name in ("a.mp4", "b.mkv"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "poster.png").write_bytes(b"")
    with pytest.warns(UserWarning, match=r"the picture beside them is left out \(poster\.png\)"):
        sources = list_clip_sources(tmp_path)
    assert [s.path.name for s in sources] == ["a.mp4", "b.mkv"]
    # a subfolder of videos: its videos were left out of the training data without a word (cache-teacher said so)
    (tmp_path / "poster.png").unlink()
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "c.mp4").write_bytes(b"")
    (tmp_path / "frames").mkdir()  # a clip, not left out
    (tmp_path / "frames" / "0.png").write_bytes(b"")
    with pytest.warns(UserWarning, match=rf"subfolders of {tmp_path} without frame images are left out \(more\); "
                                         r"the videos inside a subfolder are not searched: give that subfolder itself"):
        sources = list_clip_sources(tmp_path)
    assert [s.path.name for s in sources] == ["a.mp4", "b.mkv", "frames"]
