"""woflo finds its plugins' entry points as ``importlib.metadata.entry_points(group=...)`` does
(the same entry points, order, distribution names and versions, and errors), reading plain
directories itself so that a program's start does not import ``importlib.metadata``; any
other layout is left to ``importlib.metadata``."""

from __future__ import annotations

import importlib.metadata
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from woflo import _entrypoints


def ours(group: str) -> list[tuple[Any, ...]]:
    return [(e.name, e.value, e.distribution, e.version) for e in _entrypoints.entry_points(group)]


def importlibs(group: str) -> list[tuple[Any, ...]]:
    """importlib.metadata's answer (a missing Name or Version: None, as woflo takes it, where
    ``metadata[...]`` warns on 3.12 and raises on 3.14)."""
    return [
        (e.name, e.value, e.dist.metadata.get("Name"), e.dist.metadata.get("Version"))
        if e.dist
        else (e.name, e.value, None, None)
        for e in importlib.metadata.entry_points(group=group)
    ]


def dist(site: Path, directory: str, metadata: str | None, entry_points: str | None) -> None:
    info = site / directory
    info.mkdir(parents=True)
    if metadata is not None:
        (info / ("PKG-INFO" if directory.endswith(".egg-info") else "METADATA")).write_text(
            metadata
        )
    if entry_points is not None:
        (info / "entry_points.txt").write_text(entry_points)


@pytest.fixture
def read_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail if the scan hands over to importlib.metadata (the layout is a plain one). The
    ``importlib_metadata`` backport, where it is installed (dask needs it before Python
    3.12), puts a finder of its own on ``sys.meta_path``, which reads the same directories:
    it is there for these tests then, whichever test imported it first."""
    try:
        import importlib_metadata  # noqa: F401
    except ImportError:
        pass

    def refuse(group: str) -> Any:
        raise AssertionError("importlib.metadata was asked for a plain layout")

    monkeypatch.setattr(_entrypoints, "_from_importlib", refuse)


@pytest.mark.parametrize("group", ["woflo", "console_scripts", "pytest11"])
def test_the_installed_distributions_give_what_importlib_metadata_gives(group: str) -> None:
    assert ours(group) == importlibs(group)
    if group == "woflo":
        assert ("sequential", "woflo_plugins.sequential", "woflo") in [e[:3] for e in ours(group)]


def plain_layout(tmp_path: Path) -> list[str]:
    a, b, cwd = tmp_path / "a", tmp_path / "b", tmp_path / "cwd"
    dist(
        a,
        "Foo_Bar-1.0.dist-info",
        "Metadata-Version: 2.1\nName: Foo-Bar\nVersion: 1.0\n\nName: not this\n",
        "# a comment\n\n[g]\n  x =  mod:func [extra]\ny=mod\n[other]\nz = elsewhere:thing\n",
    )
    dist(a, "second-2.0.egg-info", "Name: second\nVersion: 2.0\n", "[other]\nq = m\n[g]\nw = m2\n")
    dist(a, "quiet-1.0.dist-info", "Name: quiet\nVersion: 1.0\n", None)  # no entry points
    (a / "legacy-0.1.egg-info").write_text("Name: legacy\n")  # distutils' single file
    dist(b, "foo.bar-9.0.dist-info", "Name: foo.bar\nVersion: 9.0\n", "[g]\nx = shadowed\n")
    dist(
        b,
        "folded-3.0.dist-info",
        "Name: folded\nSummary: one\n  two\nVersion:\t3.0\nVersion: 4.0\n",
        "[g]\nf = folded.mod:attr.sub\n",
    )
    dist(cwd, "here-1.0.dist-info", "Name: here\nVersion: 1.0\n", "[g]\nh = here\n")
    return [str(a), str(b), str(tmp_path / "missing"), ""]


def test_a_plain_layout_is_read_directly_as_importlib_metadata_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_directly: None
) -> None:
    path = plain_layout(tmp_path)
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setattr(sys, "path", path)
    found = ours("g")
    assert sorted(found) == sorted(  # (in each directory, in the order the OS lists it)
        [
            ("x", "mod:func [extra]", "Foo-Bar", "1.0"),
            ("y", "mod", "Foo-Bar", "1.0"),
            ("w", "m2", "second", "2.0"),
            ("f", "folded.mod:attr.sub", "folded", "3.0"),
            ("h", "here", "here", "1.0"),
        ]
    )
    assert found == importlibs("g")


def test_an_entry_point_loads_the_attribute_it_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_directly: None
) -> None:
    dist(tmp_path, "pkg-1.0.dist-info", "Name: pkg\n", "[g]\ne = woflo_ep_mod:outer.inner\n")
    (tmp_path / "woflo_ep_mod.py").write_text("class outer:\n    inner = 42\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    monkeypatch.delitem(sys.modules, "woflo_ep_mod", raising=False)
    (found,) = _entrypoints.entry_points("g")
    assert found.load() == 42


def test_other_layouts_are_left_to_importlib_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A zip archive, an upper-case suffix, a finder of its own: importlib.metadata is asked,
    and gives its own answer."""
    shouting = tmp_path / "shouting"
    dist(shouting, "Loud-1.0.DIST-INFO", "Name: Loud\nVersion: 1.0\n", "[g]\nl = loud\n")
    archive = tmp_path / "zipped.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("zipped-1.0.dist-info/METADATA", "Name: zipped\nVersion: 1.0\n")
        z.writestr("zipped-1.0.dist-info/entry_points.txt", "[g]\nz = zipped\n")
    own = tmp_path / "own"
    dist(own, "found-1.0.dist-info", "Name: found\nVersion: 1.0\n", "[g]\no = own\n")

    class OwnFinder:
        @staticmethod
        def find_spec(*args: Any) -> None:
            return None

        @staticmethod
        def find_distributions(context: Any = None) -> Any:
            return iter([importlib.metadata.Distribution.at(own / "found-1.0.dist-info")])

    for path, meta_path in [
        ([str(shouting)], sys.meta_path),
        ([str(archive)], sys.meta_path),
        ([], [*sys.meta_path, OwnFinder]),  # (nothing on sys.path: only the finder has it)
    ]:
        monkeypatch.setattr(sys, "path", path)
        monkeypatch.setattr(sys, "meta_path", meta_path)
        assert _entrypoints._plain("g") is None  # (handed over)
        assert ours("g") == importlibs("g")
    # (what importlib.metadata finds in the first two depends on whether the importlib_metadata
    # backport was imported: then it reads no zip archive, nor an upper-case suffix)
    assert ("o", "own", "found", "1.0") in ours("g")


def test_a_malformed_entry_points_file_fails_as_importlib_metadata_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist(tmp_path, "bad-1.0.dist-info", "Name: bad\n", "[elsewhere]\nno equals sign here\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    with pytest.raises(Exception) as theirs:  # noqa: PT011  (whatever importlib.metadata raises)
        importlibs("g")
    with pytest.raises(type(theirs.value)) as mine:
        ours("g")
    assert str(mine.value) == str(theirs.value)


@pytest.mark.parametrize(
    ("directory", "metadata"),
    [
        ("bom-1.0.dist-info", "\ufeffName: bom\nVersion: 1.0\n"),
        ("feed-1.0.dist-info", "Name: feed\nSummary: a\x0cb\nVersion: 1.0\n"),
        ("nokey-1.0.dist-info", ":x\nName: nokey\nVersion: 1.0\n"),
        ("mbox-1.0.dist-info", "From nobody\nName: mbox\nVersion: 1.0\n"),
        ("folded-1.0.dist-info", "Name: folded\n  more\nVersion: 1.0\n"),
        ("wide-1.0.dist-info", "Naïve: x\nName: wide\nVersion: 1.0\n"),
        ("-1.0.dist-info", "Name: unnamed\nVersion: 1.0\n"),  # (named by its metadata)
        ("bytes-1.0.dist-info", None),  # (METADATA that is not UTF-8)
    ],
)
def test_metadata_not_written_the_plain_way_is_left_to_importlib_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, directory: str, metadata: str | None
) -> None:
    dist(tmp_path, directory, metadata, "[g]\ne = mod\n")
    if metadata is None:
        (tmp_path / directory / "METADATA").write_bytes(b"Name: bytes\nSummary: \xff\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    assert _entrypoints._plain("g") is None
    try:
        expected: Any = importlibs("g")
    except Exception as exc:  # (the same error, then)
        with pytest.raises(type(exc)):
            ours("g")
    else:
        assert ours("g") == expected


def test_without_the_path_finder_nothing_is_read_directly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist(tmp_path, "pkg-1.0.dist-info", "Name: pkg\nVersion: 1.0\n", "[g]\ne = mod\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    from importlib.machinery import PathFinder

    monkeypatch.setattr(sys, "meta_path", [f for f in sys.meta_path if f is not PathFinder])
    assert ours("g") == importlibs("g")
