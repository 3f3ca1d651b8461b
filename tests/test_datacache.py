"""The decoded-data cache: one per content, under the user's cache folder, never beside a source."""

import numpy as np
import pytest
from test_data import data_cfg, tar_folder, write_image_folder, write_official_folder

from conftest import make_config
from prune_bench.data import load_arrays
from prune_bench.data import sources as data_module


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def archive_copies(tmp_path):
    """The same image-folder tarball in two read-only-looking places, and what they hold."""
    write_image_folder(tmp_path / "imgs")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    tar_folder(tmp_path / "imgs", tmp_path / "a" / "data.tar.gz", "x")
    (tmp_path / "b" / "copy.tar.gz").write_bytes((tmp_path / "a" / "data.tar.gz").read_bytes())
    return tmp_path / "a" / "data.tar.gz", tmp_path / "b" / "copy.tar.gz"


def test_one_cache_per_content_and_nothing_beside_the_source(tmp_path, archive_copies, monkeypatch, capsys):
    first_copy, second_copy = archive_copies
    before = listing(first_copy.parent), listing(second_copy.parent)
    cache = tmp_path / "cache"
    first, _ = load_arrays(data_cfg(tmp_path, path=str(first_copy), cache_dir=str(cache)))
    assert len(listing(cache)) == 1
    monkeypatch.setattr(data_module, "decode_image_tarball", lambda path: pytest.fail("decoded twice"))
    second, _ = load_arrays(data_cfg(tmp_path, path=str(second_copy), cache_dir=str(cache)))
    np.testing.assert_array_equal(first.train_images, second.train_images)
    assert len(listing(cache)) == 1  # the copy found the first one's cache: keyed by content
    assert (listing(first_copy.parent), listing(second_copy.parent)) == before  # nothing written beside


def test_the_cache_lives_under_data_root_by_default(tmp_path, archive_copies):
    load_arrays(data_cfg(tmp_path, path=str(archive_copies[0])))
    assert len(listing(tmp_path / "root" / "cache")) == 1


def test_prune_bench_cache_names_the_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNE_BENCH_CACHE", str(tmp_path / "elsewhere"))
    assert make_config([]).data.cache_dir == str(tmp_path / "elsewhere")
    monkeypatch.delenv("PRUNE_BENCH_CACHE")
    assert make_config([]).data.cache_dir is None  # then data.root/cache


def test_changed_content_is_decoded_again(tmp_path, monkeypatch):
    write_image_folder(tmp_path / "imgs")
    cfg = data_cfg(tmp_path, path=str(tmp_path / "imgs"), cache_dir=str(tmp_path / "cache"))
    before, _ = load_arrays(cfg)
    image = tmp_path / "imgs" / "train" / "airplane" / "0000.png"
    from PIL import Image

    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(image)
    after, _ = load_arrays(cfg)
    assert len(listing(tmp_path / "cache")) == 2  # a folder's cache is keyed by what its files hold
    assert after.train_images[0].sum() == 0 and before.train_images[0].sum() > 0


def test_an_extracted_folder_is_cached_by_content_too(tmp_path, monkeypatch):
    write_official_folder(tmp_path / "one" / "cifar-10-batches-py")
    write_official_folder(tmp_path / "two" / "cifar-10-batches-py")  # the same bytes elsewhere
    cache = tmp_path / "cache"
    load_arrays(data_cfg(tmp_path, path=str(tmp_path / "one" / "cifar-10-batches-py"), cache_dir=str(cache)))
    monkeypatch.setattr(data_module, "decode_extracted", lambda *a: pytest.fail("decoded twice"))
    load_arrays(data_cfg(tmp_path, path=str(tmp_path / "two" / "cifar-10-batches-py"), cache_dir=str(cache)))
    assert len(listing(cache)) == 1


def test_decoding_says_how_long_it_took(tmp_path, archive_copies, capsys):
    cfg = data_cfg(tmp_path, path=str(archive_copies[0]), cache_dir=str(tmp_path / "cache"))
    load_arrays(cfg)
    out = capsys.readouterr().out
    assert f"decoding {archive_copies[0]}" in out and "decoded in " in out and " s; cached at " in out
    load_arrays(cfg)
    assert "decod" not in capsys.readouterr().out


def test_an_unwritable_cache_folder_is_a_warning_not_a_failure(tmp_path, archive_copies, capsys):
    (tmp_path / "file").write_text("in the way")
    arrays, _ = load_arrays(data_cfg(tmp_path, path=str(archive_copies[0]), cache_dir=str(tmp_path / "file" / "c")))
    assert len(arrays.train_labels) > 0
    assert "warning: could not write the data cache" in capsys.readouterr().out
