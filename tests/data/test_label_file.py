"""Labels from a file: CSV tables, label arrays, bad files, labels back out."""

import csv
import os
import shutil
import tarfile
import types

import numpy as np
import pytest

from mwnet_tf import data as data_lib
from mwnet_tf import label_audit
from mwnet_tf.data import label_file
from mwnet_tf.data import tfds_source

from data_fakes import listing, make_folder, prepare_folder, write_image

CLASSES = ("ant", "bee", "cat")


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def _table_rows(table):
    """(path, class name, split) rows of the folder's own labels (a run
    with synthetic noise has the noisy ones as `labels`)."""
    labels = table.labels if table.clean_labels is None else table.clean_labels
    return [(f, table.class_names[label], split) for f, label, split in
            zip(table.files, labels, table.splits)]


@pytest.fixture
def tree(tmp_path):
    return make_folder(tmp_path / "tree", CLASSES, {"train": 10, "test": 3})


def test_a_csv_of_the_class_folders_gives_the_same_data(tree, tmp_path):
    cache = str(tmp_path / "cache")
    from_folders = prepare_folder(tree, cache)
    labels = _write_csv(tmp_path / "labels.csv", ["path", "label", "split"],
                        _table_rows(from_folders.label_table))
    from_file = prepare_folder(tree, cache, labels_file=labels)
    for field in ("labels", "clean_labels", "index", "files", "images"):
        np.testing.assert_array_equal(
            getattr(from_file.train_examples, field),
            getattr(from_folders.train_examples, field))
    assert from_file.statistics["labels_file"]["kind"] == "csv"
    assert ({k: v for k, v in from_file.statistics.items()
             if k != "labels_file"}
            == {k: v for k, v in from_folders.statistics.items()
                if k != "labels_file"})
    meta = [batch[1].numpy() for batch in from_file.meta_eval]
    meta_folders = [batch[1].numpy() for batch in from_folders.meta_eval]
    np.testing.assert_array_equal(np.concatenate(meta),
                                  np.concatenate(meta_folders))


def _flat_tree(root, rng):
    """Images in one flat folder under names that say nothing of the class;
    returns the CSV rows (path, class name, split) and each image's class."""
    rows = []
    for split, count in (("train", 8), ("test", 2)):
        for label, name in enumerate(CLASSES):
            for _ in range(count):
                file = f"img/{rng.integers(1 << 40):011x}.png"
                write_image(os.path.join(root, file), np.full(
                    (8, 8, 3), 60 * label + 20, np.uint8))
                rows.append((file, name, split))
    return rows


def test_a_flat_tree_in_an_archive_with_integer_labels(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "flat"
    rows = _flat_tree(root, rng)
    rows = [(f, CLASSES.index(name), split) for f, name, split in rows]
    archive = tmp_path / "flat.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="flat")  # Wrapped in one folder.
    labels = _write_csv(tmp_path / "labels.csv", ["path", "label", "split"],
                        rows)
    data = prepare_folder(str(archive), str(tmp_path / "cache"),
                          labels_file=labels, label_classes=list(CLASSES),
                          noise="none", meta_source="given_draw")
    assert data.class_names == CLASSES
    examples = data.train_examples
    # Each image's colour is its class: the labels went to the right files.
    np.testing.assert_array_equal(
        (examples.images[:, 0, 0, 0].astype(int) - 20) // 60, examples.labels)
    assert data.num_test == 6 and examples.clean_labels is None


def test_true_labels_and_trusted_rows_of_a_csv(tree, tmp_path):
    table = prepare_folder(tree, str(tmp_path / "c0")).label_table
    rows = []
    for f, name, split in _table_rows(table):
        if split == "train" and f.endswith(("000.png", "001.png")):
            split = "meta"  # Trusted rows: the meta set.
        wrong = (split == "train" and f.endswith("009.png"))
        given = CLASSES[(CLASSES.index(name) + 1) % 3] if wrong else name
        rows.append((f, given, split, name if split == "train" else ""))
    labels = _write_csv(tmp_path / "labels.csv",
                        ["path", "label", "split", "clean_label"], rows)
    data = prepare_folder(tree, str(tmp_path / "cache"), labels_file=labels,
                          noise="none", meta_per_class=None)
    assert data.meta_source == "trusted" and data.num_meta == 6
    assert data.statistics["realised_noise_rate"] == pytest.approx(3 / 24)
    examples = data.train_examples
    assert ((examples.labels != examples.clean_labels)
            == np.char.endswith(examples.files.astype(str), "009.png")).all()
    with pytest.raises(ValueError, match="already noisy, so use noise='none'"):
        prepare_folder(tree, str(tmp_path / "cache"), labels_file=labels)


def test_a_csv_without_trusted_rows_gets_a_pseudo_clean_meta_set(tree,
                                                                 tmp_path):
    table = prepare_folder(tree, str(tmp_path / "c0")).label_table
    labels = _write_csv(tmp_path / "labels.csv", ["path", "label", "split"],
                        _table_rows(table))
    data = prepare_folder(tree, str(tmp_path / "cache"), labels_file=labels,
                          noise="none", meta_per_class=None,
                          pseudo_clean_per_class=2)
    assert data.meta_source == "pseudo_clean"
    with pytest.raises(ValueError, match="clean_draw"):
        prepare_folder(tree, str(tmp_path / "cache"), labels_file=labels,
                       noise="none", meta_source="clean_draw")


BAD_CSVS = {
    "empty": ([], [], "is empty"),
    "no rows": (["path", "label", "split"], [], "no rows"),
    "no label column": (["path", "class"], [["train/ant/000.png", "ant"]],
                        "no column 'label'"),
    "unknown class": (["path", "label", "split"],
                      [["train/ant/000.png", "ant", "train"],
                       ["train/ant/001.png", "wasp", "train"]],
                      "line 3: unknown class 'wasp'"),
    "out of range": (["path", "label", "split"],
                     [["train/ant/000.png", "7", "train"]],
                     "label 7 in column 'label' is out of range 0..2"),
    "duplicate": (["path", "label", "split"],
                  [["train/ant/000.png", "ant", "train"],
                   ["train/ant/001.png", "ant", "train"],
                   ["./train/ant/000.png", "bee", "train"]],
                  "line 4: 'train/ant/000.png' is listed again .first at "
                  "line 2"),
    "outside the root": (["path", "label", "split"],
                         [["../secret/000.png", "ant", "train"]],
                         "outside the data root"),
    "absolute path": (["path", "label", "split"],
                      [["/etc/000.png", "ant", "train"]],
                      "outside the data root"),
    "unknown split": (["path", "label", "split"],
                      [["train/ant/000.png", "ant", "validation"]],
                      "split 'validation' is not one of train, test, meta"),
    "mixed names and integers": (["path", "label", "split"],
                                 [["train/ant/000.png", "ant", "train"],
                                  ["train/ant/001.png", "1", "train"]],
                                 "mix class names and integers"),
}


@pytest.mark.parametrize("case", sorted(BAD_CSVS))
def test_a_bad_csv_is_refused_in_one_line_before_any_image(case, tree,
                                                          tmp_path):
    header, rows, message = BAD_CSVS[case]
    path = tmp_path / "labels.csv"
    if header:
        _write_csv(path, header, rows)
    else:
        path.write_text("")
    cache = tmp_path / "cache"
    before = listing(tree)
    # Unknown names and integers out of range are so against a class list.
    classes = (list(CLASSES) if case in ("out of range", "unknown class")
               else None)
    with pytest.raises(ValueError, match=message) as raised:
        prepare_folder(tree, str(cache), labels_file=str(path), noise="none",
                       label_classes=classes)
    assert "\n" not in str(raised.value)
    assert not cache.exists() and listing(tree) == before


def test_missing_images_and_missing_splits_are_named(tree, tmp_path):
    table = prepare_folder(tree, str(tmp_path / "c0")).label_table
    rows = _table_rows(table)
    missing = _write_csv(tmp_path / "missing.csv", ["path", "label", "split"],
                         rows + [("train/ant/gone.png", "ant", "train")])
    with pytest.raises(FileNotFoundError, match="1 of the 40 images listed"
                       r".*e\.g\. train/ant/gone\.png"):
        prepare_folder(tree, str(tmp_path / "cache"), labels_file=missing,
                       noise="none")
    no_test = _write_csv(tmp_path / "no_test.csv", ["path", "label"],
                         [(f, name) for f, name, split in rows
                          if split == "train"])
    with pytest.raises(ValueError, match="has no 'test' rows; add a 'split'"):
        prepare_folder(tree, str(tmp_path / "cache"), labels_file=no_test,
                       noise="none")


def test_label_file_arguments_are_checked_before_reading(tmp_path):
    with pytest.raises(ValueError, match="labels_key is for a labels file"):
        data_lib.prepare("cifar10", labels_key="worse_label")
    with pytest.raises(ValueError, match="neither a CSV"):
        data_lib.prepare("cifar10", labels_file="labels.txt", noise="none")
    with pytest.raises(ValueError, match="CSV labels file names image files"):
        data_lib.prepare("cifar10", labels_file="labels.csv", noise="none")
    with pytest.raises(ValueError, match="needs clean_labels_key"):
        data_lib.prepare("folder", path=str(tmp_path),
                         labels_file="labels.npz", noise="none")
    with pytest.raises(ValueError, match="use noise='none', not 'uniform'"):
        data_lib.prepare("cifar10", labels_file="labels.npz")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data_lib.prepare("cifar10", labels_file=str(tmp_path / "x.npz"),
                         noise="none")


def _save_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def test_bad_label_arrays_are_refused(tmp_path):
    labels = np.zeros(50000, np.int64)
    cases = [
        (_save_npz(tmp_path / "short.npz", worse=labels[:49999]), "worse",
         "holds 49999 labels, but the training split has 50000"),
        (_save_npz(tmp_path / "keys.npz", worse=labels, clean=labels), None,
         "holds several arrays .worse, clean.; say which"),
        (_save_npz(tmp_path / "key.npz", worse=labels), "aggre",
         "has no array 'aggre'; its arrays are worse"),
        (_save_npz(tmp_path / "2d.npz", worse=labels.reshape(-1, 2)), "worse",
         r"must be a 1-D array of integer labels; got shape \(25000, 2\)"),
        (_save_npz(tmp_path / "range.npz", worse=labels + 10), "worse",
         "labels 10 at position 0 is out of range 0..9"),
    ]
    np.save(tmp_path / "one.npy", labels)
    cases.append((str(tmp_path / "one.npy"), "worse", "is a .npy"))
    for path, key, message in cases:
        with pytest.raises(ValueError, match=message):
            data_lib.prepare("cifar10", labels_file=path, labels_key=key,
                             noise="none")


def test_tfds_ids_give_the_canonical_order():
    ids = np.array([b"train_00002", b"train_00000", b"train_00001"])
    np.testing.assert_array_equal(
        label_file.canonical_positions_of_ids(ids), [2, 0, 1])
    with pytest.raises(ValueError, match="ids do not number the examples"):
        label_file.canonical_positions_of_ids(
            np.array([b"train_00000", b"train_00000"]))
    with pytest.raises(ValueError, match="not of the form train_<number>"):
        label_file.canonical_positions_of_ids(np.array([b"a9f3"]))


def _fake_cifar10(monkeypatch, seed=0):
    """tfds' cifar10 as 50,000 tiny images stored shuffled, each image's
    pixel the canonical position (mod 251), ids as tfds forms them."""
    rng = np.random.default_rng(seed)
    canonical_labels = rng.integers(0, 10, 50000)
    stored = rng.permutation(50000)  # Stored example j is canonical stored[j].
    images = np.zeros((50000, 2, 2, 3), np.uint8)
    images[:, 0, 0, 0] = stored % 251
    images[:, 0, 0, 1] = stored // 251
    ids = np.array([f"train_{i:05d}".encode() for i in stored])
    test = (np.zeros((20, 2, 2, 3), np.uint8), np.arange(20) % 10,
            np.array([f"test_{i:05d}".encode() for i in range(20)]))
    info = types.SimpleNamespace(features={"label": types.SimpleNamespace(
        names=[f"c{i}" for i in range(10)])})
    monkeypatch.setattr(
        tfds_source, "_load_splits", lambda name, data_dir, download: (
            (images, canonical_labels[stored], ids), test, info))
    return canonical_labels


def test_a_label_array_follows_tfds_ids(monkeypatch, tmp_path):
    truth = _fake_cifar10(monkeypatch)
    noisy = (truth + (np.arange(50000) % 5 == 0)) % 10  # Every 5th wrong.
    path = _save_npz(tmp_path / "cifar10n.npz", worse_label=noisy,
                     clean_label=truth)
    data = data_lib.prepare("cifar10", labels_file=path,
                            labels_key="worse_label",
                            clean_labels_key="clean_label", noise="none",
                            batch_size=100, meta_batch_size=10)
    examples = data.train_examples
    position = (examples.images[:, 0, 0, 0].astype(int)
                + 251 * examples.images[:, 0, 0, 1].astype(int))
    # Each image carries the label the array gives at its canonical place.
    np.testing.assert_array_equal(examples.index, position)
    np.testing.assert_array_equal(examples.labels, noisy[position])
    np.testing.assert_array_equal(examples.clean_labels, truth[position])
    assert data.statistics["realised_noise_rate"] == pytest.approx(0.2)
    assert data.meta_source == "pseudo_clean"
    shifted = _save_npz(tmp_path / "shifted.npz", worse_label=noisy,
                        clean_label=np.roll(truth, 1))
    with pytest.raises(ValueError, match="differ from cifar10's at .* not "
                       "in the canonical order"):
        data_lib.prepare("cifar10", labels_file=shifted,
                         labels_key="worse_label",
                         clean_labels_key="clean_label", noise="none")


def test_a_label_array_on_a_cifar_like_folder(tmp_path):
    # File k of a class folder is that class's k-th example in canonical
    # order; each image's pixel says (class, k).
    rng = np.random.default_rng(1)
    truth = rng.permutation(np.repeat(np.arange(3), 6))
    for label, name in enumerate(CLASSES):
        for k in range(6):
            write_image(str(tmp_path / "tree" / "train" / name / f"{k:04d}.png"),
                        np.full((4, 4, 3), (label, k, 0), np.uint8))
        for k in range(2):
            write_image(str(tmp_path / "tree" / "test" / name / f"{k:04d}.png"),
                        np.full((4, 4, 3), label, np.uint8))
    noisy = (truth + (np.arange(18) % 3 == 0)) % 3
    path = _save_npz(tmp_path / "n.npz", noisy=noisy, clean_label=truth)
    data = prepare_folder(str(tmp_path / "tree"), str(tmp_path / "cache"),
                          labels_file=path, labels_key="noisy",
                          clean_labels_key="clean_label", noise="none",
                          meta_source="given_draw", meta_per_class=1,
                          batch_size=3, meta_batch_size=3)
    examples = data.train_examples
    rank = np.array([np.sum(truth[:i] == truth[i]) for i in range(18)])
    image_class = examples.images[:, 0, 0, 0]
    image_rank = examples.images[:, 0, 0, 1]
    np.testing.assert_array_equal(image_class, truth[examples.index])
    np.testing.assert_array_equal(image_rank, rank[examples.index])
    np.testing.assert_array_equal(examples.labels, noisy[examples.index])
    wrong_count = _save_npz(tmp_path / "w.npz", noisy=noisy,
                            clean_label=np.sort(truth)[::-1] * 0)
    with pytest.raises(ValueError, match="not the same examples"):
        prepare_folder(str(tmp_path / "tree"), str(tmp_path / "cache"),
                       labels_file=wrong_count, labels_key="noisy",
                       clean_labels_key="clean_label", noise="none",
                       meta_source="given_draw")


def _audit_of(data, suspect_every=3):
    """An Audit of `data`'s training examples whose suggestion differs from
    the given label at every `suspect_every`-th example."""
    examples = data.train_examples
    n = len(examples)
    suggested = examples.labels.copy()
    suggested[::suspect_every] = (suggested[::suspect_every] + 1) % len(
        data.class_names)
    return label_audit.LabelAudit(
        index=examples.index, file=examples.files,
        given_label=examples.labels, predicted_label=suggested,
        predicted_probability=np.full(n, 0.9, np.float32),
        loss=np.linspace(0, 2, n).astype(np.float32),
        weight=np.linspace(1, 0, n).astype(np.float32), corrupted=None,
        suggested_label=suggested,
        suggested_probability=np.full(n, 0.8, np.float32))


def test_labels_go_back_out_as_a_csv_to_train_on(tree, tmp_path):
    cache = str(tmp_path / "cache")
    data = prepare_folder(tree, cache, noise="none", meta_source="given_draw")
    audit = _audit_of(data)
    out = str(tmp_path / "labels.csv")
    label_file.write_labels(out, data.label_table, audit,
                            data.train_table_rows)
    with open(out, newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == len(data.label_table) == 39
    by_path = {row["path"]: row for row in rows}
    for i, path in enumerate(data.train_examples.files):
        row = by_path[path]
        assert row["label"] == CLASSES[data.train_examples.labels[i]]
        assert row["suggested_label"] == CLASSES[audit.suggested_label[i]]
        assert row["verdict"] == ("suspect" if audit.suspect[i] else "keep")
    not_audited = [row for row in rows if row["verdict"] == "not_audited"]
    # The test images and the meta draw, with their labels as suggestions.
    assert len(not_audited) == 9 + 6
    assert all(row["suggested_label"] == row["label"] for row in not_audited)
    # Trained on again, the suggestions are the labels.
    again = prepare_folder(tree, cache, noise="none",
                           meta_source="given_draw", labels_file=out,
                           labels_key="suggested_label")
    suggestion_of = dict(zip(data.train_examples.files,
                             audit.suggested_label))
    relabelled = [(label, suggestion_of[f]) for f, label in zip(
        again.train_examples.files, again.train_examples.labels)
        if f in suggestion_of]
    assert len(relabelled) >= 18
    assert all(label == suggestion for label, suggestion in relabelled)


def test_labels_go_back_out_as_an_array(monkeypatch, tmp_path):
    truth = _fake_cifar10(monkeypatch)
    path = _save_npz(tmp_path / "c.npz", label=truth)
    data = data_lib.prepare("cifar10", labels_file=path, noise="none",
                            batch_size=100, meta_batch_size=10)
    audit = _audit_of(data)
    out = str(tmp_path / "labels.npz")
    label_file.write_labels(out, data.label_table, audit,
                            data.train_table_rows)
    with np.load(out) as written:
        np.testing.assert_array_equal(written["label"], truth)
        suggested = written["suggested_label"]
        np.testing.assert_array_equal(suggested[data.train_examples.index],
                                      audit.suggested_label)
        assert (written["suspect"][data.train_examples.index]
                == audit.suspect).all()
    # Read back as the labels of a next run.
    again = label_file.read_label_array(out, "suggested_label")
    np.testing.assert_array_equal(again, suggested)
