"""Atomic writes: the final file (or directory) appears only after a successful write, and a
failed write leaves neither the final path nor its temp file behind."""

import pytest

from saebench.fileio import atomic_directory, atomic_path, save_figure, write_text


def test_atomic_path_publishes_only_after_the_block_succeeds(tmp_path):
    final = tmp_path / "sub" / "out.txt"  # parent is created
    with atomic_path(final) as tmp:
        tmp.write_text("done")
        assert tmp.parent == final.parent and not final.exists()
    assert final.read_text() == "done"
    assert [p.name for p in final.parent.iterdir()] == ["out.txt"]


def test_atomic_path_failure_leaves_no_final_and_no_temp_file(tmp_path):
    final = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_failed_rewrite_keeps_the_previous_file(tmp_path):
    final = tmp_path / "out.txt"
    write_text(final, "old")
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_text("new")
        raise RuntimeError("crash mid-write")
    assert final.read_text() == "old" and list(tmp_path.iterdir()) == [final]


def test_save_figure_writes_a_png_despite_the_tmp_suffix(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = tmp_path / "plots" / "figure.png"
    save_figure(fig, path, dpi=50)
    plt.close(fig)
    assert path.read_bytes().startswith(b"\x89PNG")
    assert [p.name for p in path.parent.iterdir()] == ["figure.png"]


def test_save_figure_failure_leaves_nothing(tmp_path):
    class Broken:
        def savefig(self, target, **kwargs):
            target.write_bytes(b"partial")
            raise OSError("disk full")

    with pytest.raises(OSError):
        save_figure(Broken(), tmp_path / "figure.png")
    assert list(tmp_path.iterdir()) == []


def test_atomic_directory_publishes_only_after_the_block_succeeds(tmp_path):
    final = tmp_path / "sub" / "entry"  # parent is created
    with atomic_directory(final) as tmp:
        (tmp / "a.txt").write_text("a")
        (tmp / "nested").mkdir()
        (tmp / "nested" / "b.txt").write_text("b")
        assert tmp.parent == final.parent and not final.exists()
    assert (final / "a.txt").read_text() == "a" and (final / "nested" / "b.txt").read_text() == "b"
    assert [p.name for p in final.parent.iterdir()] == ["entry"]


def test_atomic_directory_failure_leaves_no_final_and_no_temp_directory(tmp_path):
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "entry") as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_atomic_directory_replaces_an_old_tree_and_a_failed_rewrite_keeps_it(tmp_path):
    final = tmp_path / "entry"
    with atomic_directory(final) as tmp:
        (tmp / "old_only.txt").write_text("old")
    with atomic_directory(final) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]  # replaced, not merged
    with pytest.raises(RuntimeError), atomic_directory(final) as tmp:
        (tmp / "newer.txt").write_text("newer")
        raise RuntimeError("crash mid-write")
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert list(tmp_path.iterdir()) == [final]  # no temp or set-aside copies left


def test_published_files_and_directories_honour_the_umask(tmp_path):
    import os

    from saebench.fileio import atomic_directory, write_text

    previous = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
        with atomic_directory(tmp_path / "sae") as tmp:
            private = tmp / "weights.bin"
            private.write_bytes(b"w")
            private.chmod(0o600)  # what safetensors does whatever the umask
    finally:
        os.umask(previous)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "sae").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "sae" / "weights.bin").stat().st_mode & 0o777 == 0o644
