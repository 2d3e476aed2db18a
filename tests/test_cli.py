"""The command line end to end, as a user drives it: in-process through click's runner for most commands,
and as a real `assetry` subprocess for the installed entry point and the demo."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from assetry.cli import _config_argument, cli, main


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory with `assetry init` done, as a user would start."""
    result = CliRunner().invoke(cli, ["init", "--dimension", "4"])
    assert result.exit_code == 0, result.output
    return tmp_path


def run(*args: str, input: str | None = None) -> Result:
    main_args = list(args)
    from assetry.cli import _plugin_commands

    _plugin_commands(main_args)
    return CliRunner().invoke(cli, main_args, input=input, catch_exceptions=False)


def ok(*args: str) -> Result:
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result


def test_init_creates_config_and_store(project: Path) -> None:
    assert (project / "assetry.toml").is_file()
    assert (project / ".assetry").is_dir()
    again = run("init")
    assert again.exit_code == 1
    assert "already exists" in again.output


def test_a_failed_init_leaves_nothing_behind_and_init_says_where_the_store_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSETRY_VECTORS__DIMENSION", "wide")
    failed = run("init", "first")
    assert failed.exit_code == 1
    assert "vectors.dimension" in failed.output
    assert not (tmp_path / "first").exists()  # nor the directory it made: a second try is not refused
    monkeypatch.delenv("ASSETRY_VECTORS__DIMENSION")
    assert "in .assetry/ with" in ok("init", "first").output

    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("ASSETRY_STORE__ROOT", str(elsewhere))
    assert f"in {elsewhere} with" in ok("init", "second").output
    assert elsewhere.is_dir()
    assert not (tmp_path / "second" / ".assetry").exists()


@contextlib.contextmanager
def read_only_directory(path: Path) -> Iterator[Path]:
    """A directory init cannot write in, as the tester made it (chattr +i) when running as root."""
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
    elif subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False).returncode != 0:
        pytest.skip("root, and chattr cannot make a directory immutable here")
    try:
        yield path
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(0o755)


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="Unix permissions")
def test_init_reports_a_directory_it_cannot_write_in_one_line(tmp_path: Path) -> None:
    """An OSError writing assetry.toml or making the directory was a traceback."""
    with read_only_directory(tmp_path / "ro") as readonly:
        reason = "(Permission denied|Operation not permitted)"  # chmod, chattr
        refused = run("init", "ro/new/deeper")
        assert refused.exit_code == 1
        assert re.fullmatch(rf"Error: ro/new: {reason}\n", refused.output)
        refused = run("init", "ro")
        assert refused.exit_code == 1
        assert re.fullmatch(rf"Error: ro/assetry.toml: {reason}\n", refused.output)
        assert list(readonly.iterdir()) == []
    (tmp_path / "file").write_text("")
    assert run("init", "file/store").output == "Error: file/store: Not a directory\n"
    (tmp_path / "link").mkdir()
    (tmp_path / "link" / "assetry.toml").symlink_to(tmp_path / "elsewhere" / "assetry.toml")
    assert run("init", "link").output == "Error: link/assetry.toml: File exists\n"
    assert (tmp_path / "link" / "assetry.toml").is_symlink()  # the user's, left alone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "link", "ro"]


@pytest.mark.parametrize(
    "command",
    [
        ["ls"],
        ["show", "0123456789abcdef"],
        ["cat", "0123456789abcdef"],
        ["search", "cat"],
        ["export", "0123456789abcdef", "--to", "out"],
        ["rm", "0123456789abcdef", "--yes"],
        ["gc", "--quota", "1MB"],
        ["stats"],
        ["url", "0123456789abcdef"],
        ["compact"],
    ],
)
def test_commands_that_do_not_add_refuse_a_root_with_no_store(tmp_path: Path, command: list[str]) -> None:
    """A mistyped --root is an error, not an empty store created where it points."""
    result = run("--root", "typo", *command)
    assert result.exit_code == 1
    assert f"no store at {tmp_path / 'typo'}" in result.output
    assert "`assetry init` or `assetry add` creates one" in result.output
    assert not (tmp_path / "typo").exists()
    assert not (tmp_path / "out").exists()


def test_add_of_a_tree_holding_the_store_leaves_the_store_out(tmp_path: Path) -> None:
    (tmp_path / "assetry.toml").write_text('[store]\nroot = "st"\n\n[vectors]\ndimension = 4\n')
    (tmp_path / "renders").mkdir()
    (tmp_path / "renders" / "a.txt").write_text("a")
    ok("add", "renders")  # the store now has locks, catalog manifests and a blob, none of them hidden
    added = json.loads(ok("add", ".", "--allow-empty", "--json").output)["assets"]
    assert sorted(a["label"] for a in added) == ["a.txt", "assetry.toml"]
    refused = run("add", "st")
    assert refused.exit_code == 1
    assert "st: is this store's own directory" in refused.output


def test_add_of_an_empty_path_is_refused(project: Path) -> None:
    (project / "stray.txt").write_text("not to be added")
    result = run("add", "")
    assert result.exit_code == 2
    assert "PATHS: an empty path" in result.output
    assert json.loads(ok("stats", "--json").output)["usage"]["assets"] == 0


def test_add_ls_show_cat(project: Path) -> None:
    (project / "in").mkdir()
    for i in range(3):
        (project / "in" / f"img{i}.txt").write_text(f"image {i}")
    added = json.loads(
        ok(
            "add",
            "in",
            "--tag",
            "batch",
            "--prompt",
            "a red cat",
            "--seed",
            "5",
            "--meta",
            "score=0.5",
            "--meta",
            "source=test",
            "--json",
        ).output
    )
    assert added["added"] == 3
    assets = added["assets"]
    assert all(a["tags"] == ["batch"] for a in assets)
    assert assets[0]["extra"] == {"score": 0.5, "source": "test"}
    listing = json.loads(ok("ls", "--tag", "batch", "--json").output)
    assert listing["total"] == 3
    assert listing["next_cursor"] is None
    first_page = json.loads(ok("ls", "--tag", "batch", "-n", "2", "--json").output)
    rest = json.loads(
        ok("ls", "--tag", "batch", "-n", "2", "--after", first_page["next_cursor"], "--json").output
    )
    assert [a["id"] for a in first_page["items"] + rest["items"]] == [a["id"] for a in listing["items"]]
    assert rest["offset"] == 2
    assert rest["next_cursor"] is None
    footer = run("ls", "--tag", "batch", "-n", "1", "--after", first_page["next_cursor"]).output
    assert "(3-3 of 3)" in footer  # the last page: no next
    middle = run("ls", "--tag", "batch", "-n", "1").output
    assert "next page: --offset 1" in middle
    cursor = json.loads(ok("ls", "--tag", "batch", "-n", "1", "--json").output)["next_cursor"]
    second = ["ls", "--tag", "batch", "-n", "1", "--after", cursor]
    after_second = json.loads(ok(*second, "--json").output)["next_cursor"]
    assert f"(2-2 of 3; next page: --after {after_second})" in run(*second).output
    wrong = run("ls", "-n", "2", "--after", first_page["next_cursor"])  # without the tag it was made for
    assert wrong.exit_code == 1
    assert "after: was made for other filters" in wrong.output
    table = ok("ls").output
    assert "img0.txt" in table
    assert "a red cat" in table
    first = assets[0]["id"]
    shown = ok("show", first[:20]).output
    assert "a red cat" in shown
    assert "seed" in shown
    assert ok("cat", first).output == "image 0"


def test_add_glob_and_embedding_file(project: Path) -> None:
    for name in ("a.png", "b.png", "c.txt"):
        (project / name).write_bytes(name.encode())
    (project / "vectors.json").write_text(json.dumps({"a.png": [1, 0, 0, 0], "b.png": [0, 1, 0, 0]}))
    out = json.loads(ok("add", "*.png", "--embedding-file", "vectors.json", "--json").output)
    assert sorted(a["label"] for a in out["assets"]) == ["a.png", "b.png"]
    assert all(a["has_embedding"] for a in out["assets"])
    a_id = next(a["id"] for a in out["assets"] if a["label"] == "a.png")
    hits = json.loads(ok("search", "--similar-to", a_id, "--json").output)
    assert [h["asset"]["label"] for h in hits] == ["b.png"]


def test_embedding_file_keys_are_paths_and_a_name_must_be_unambiguous(project: Path) -> None:
    """Keys were matched by file name only: with m1/same.bin and m2/same.bin added, one vector silently
    overwrote the other."""
    for d, content in (("m1", "one"), ("m2", "two"), ("m3", "three")):
        (project / d).mkdir()
        (project / d / "same.bin").write_text(content)
    vectors = {"m1/same.bin": [1, 0, 0, 0], str(project / "m2" / "same.bin"): [0, 1, 0, 0]}
    (project / "vm.json").write_text(json.dumps(vectors))
    added = json.loads(ok("add", "m1", "m2", "--embedding-file", "vm.json", "--json").output)["assets"]
    embeddings = {
        ok("cat", a["id"]).output: json.loads(ok("show", a["id"], "--json", "--embedding").output)[
            "embedding"
        ]
        for a in added
    }
    assert embeddings == {"one": [1, 0, 0, 0], "two": [0, 1, 0, 0]}
    # A bare name (or a path written elsewhere) still matches when one file added has that name.
    (project / "name.json").write_text('{"elsewhere/same.bin": [0, 0, 1, 0]}')
    ok("add", "m3", "--embedding-file", "name.json")
    for keys, message in [
        (
            '{"same.bin": [1, 0, 0, 0]}',
            "key 'same.bin' matches several files added (m1/same.bin, m2/same.bin)",
        ),
        ('{"m3/same.bin": [1, 0, 0, 0]}', "key 'm3/same.bin' names none of the files added"),
        ('{"x.bin": [1, 0, 0, 0]}', "key 'x.bin' names none of the files added"),
        (
            '{"m1/same.bin": [1, 0, 0, 0], "./m1/same.bin": [0, 1, 0, 0]}',
            "keys 'm1/same.bin' and './m1/same.bin' both name 'm1/same.bin'",
        ),
        ('{"m1/same.bin": [1, 0, 0, 0], "m1/same.bin": [0, 1, 0, 0]}', "key 'm1/same.bin' is given twice"),
    ]:
        (project / "keys.json").write_text(keys)
        result = run("add", "m1", "m2", "--embedding-file", "keys.json", "--on-duplicate", "keep")
        assert result.exit_code == 1
        assert result.output.startswith(f"Error: keys.json: {message}"), result.output
    assert json.loads(ok("stats", "--json").output)["usage"]["assets"] == 3


def run_unless_blocked(fifo: Path, *args: str) -> Result:
    """`run`, in a thread: should the command block opening the FIFO, it is let go (end of file) and the
    test fails, instead of hanging."""
    results: list[Result] = []
    thread = threading.Thread(target=lambda: results.append(run(*args)), daemon=True)
    thread.start()
    thread.join(30)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(60)
        pytest.fail(f"{args} blocked on the FIFO")
    return results[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_vector_files_must_be_regular_files(project: Path) -> None:
    """A FIFO given as --embedding-file or --vector-file hung the command forever."""
    (project / "e1.bin").write_bytes(b"e1")
    os.mkfifo(project / "ff")
    for args in (("add", "e1.bin", "--embedding-file", "ff"), ("search", "--vector-file", "ff")):
        result = run_unless_blocked(project / "ff", *args)
        assert result.exit_code == 1
        assert result.output == "Error: ff: is not a regular file\n", args
    if Path("/dev/null").exists():  # a device: /dev/zero would never end
        assert run("search", "--vector-file", "/dev/null").output == "Error: null: is not a regular file\n"
    assert json.loads(ok("stats", "--json").output)["usage"]["assets"] == 0


def test_vector_file_errors_name_the_file(project: Path) -> None:
    (project / "e1.bin").write_bytes(b"e1")
    (project / "object.json").write_text(json.dumps({"e1.bin": [1, 0, 0, 0]}))
    (project / "short.json").write_text("[1, 0]")
    # search adds no files: the object is not "naming a file not among the files added".
    result = run("search", "--vector-file", "object.json")
    assert result.exit_code == 1
    assert result.output == "Error: object.json: expected a JSON list of numbers, got an object\n"
    result = run("search", "--vector-file", "short.json")
    assert result.exit_code == 1
    assert result.output == "Error: short.json: vector: has 2 dimensions; the store uses 4\n"
    result = run("add", "e1.bin", "--embedding-file", "short.json")
    assert result.exit_code == 1
    assert result.output.startswith("Error: short.json: embedding: has 2 dimensions;")
    assert json.loads(ok("stats", "--json").output)["usage"]["assets"] == 0


def test_show_embedding_does_what_its_help_says_and_json_keys_are_stable(project: Path) -> None:
    """show --json lost has_embedding with --embedding; --embedding without --json printed the length only."""
    (project / "a.txt").write_text("a")
    (project / "b.txt").write_text("b")
    (project / "v.json").write_text("[0.5, 0, 0, 1]")
    with_vector = json.loads(ok("add", "a.txt", "--embedding-file", "v.json", "--json").output)["assets"][0][
        "id"
    ]
    without = json.loads(ok("add", "b.txt", "--json").output)["assets"][0]["id"]
    for asset_id, has in ((with_vector, True), (without, False)):
        plain = json.loads(ok("show", asset_id, "--json").output)
        full = json.loads(ok("show", asset_id, "--json", "--embedding").output)
        assert plain["has_embedding"] is full["has_embedding"] is has
        assert "embedding" not in plain
        assert full["embedding"] == ([0.5, 0, 0, 1] if has else None)
    assert "embedding  4 dimensions" in ok("show", with_vector).output
    assert "embedding  [0.5, 0.0, 0.0, 1.0]" in ok("show", with_vector, "--embedding").output
    assert "print the embedding vector" in " ".join(ok("show", "--help").output.split())


def test_search_by_text(project: Path) -> None:
    (project / "x.bin").write_bytes(b"x")
    (project / "y.bin").write_bytes(b"y")
    ok("add", "x.bin", "--prompt", "lighthouse in a storm")
    ok("add", "y.bin", "--prompt", "quiet meadow")
    hits = json.loads(ok("search", "lighthouse", "--json").output)
    assert [h["asset"]["label"] for h in hits] == ["x.bin"]
    assert "lighthouse" in ok("search", "storm").output


def test_metadata_cannot_drive_the_terminal(project: Path) -> None:
    """A prompt written by another user of a shared store could set the window title or hide text
    behind a carriage return; `show`, `ls` and `search` print control characters escaped."""
    (project / "x.bin").write_bytes(b"x")
    prompt = "cat\x1b]0;PWNED\x07\rdog\nline two\ttabbed"
    asset_id = json.loads(ok("add", "x.bin", "--prompt", prompt, "--tag", "t\x1b[2J", "--json").output)[
        "assets"
    ][0]["id"]
    for output in (ok("show", asset_id).output, ok("ls").output, ok("search", "cat").output):
        assert "\x1b" not in output
        assert "\r" not in output
        assert "cat\\x1b]0;PWNED\\x07" in output
    shown = ok("show", asset_id).output
    assert "cat\\x1b]0;PWNED\\x07\\x0ddog" in shown
    assert "t\\x1b[2J" in shown
    assert "dog\nline two\ttabbed" in shown  # newlines and tabs in a prompt are text
    assert json.loads(ok("show", asset_id, "--json").output)["provenance"]["prompt"] == prompt  # data as is


def test_rm_gc_stats_export(project: Path) -> None:
    for i in range(4):
        (project / f"f{i}.bin").write_bytes(bytes([i]) * 1000)
    ids = [
        a["id"]
        for a in json.loads(ok("add", "f0.bin", "f1.bin", "f2.bin", "f3.bin", "--json").output)["assets"]
    ]
    stats = json.loads(ok("stats", "--json").output)
    assert stats["usage"]["assets"] == 4
    exported = json.loads(ok("export", ids[0], "--to", "out", "--json").output)
    assert Path(exported[ids[0]]).read_bytes() == b"\x00" * 1000
    plan = json.loads(ok("gc", "--quota", "2KB", "--dry-run", "--json").output)
    assert plan["dry_run"] is True
    assert len(plan["evicted"]) == 2
    assert json.loads(ok("stats", "--json").output)["usage"]["assets"] == 4
    # f0 was exported (used) so it is not among the least recently used.
    done = json.loads(ok("gc", "--quota", "2KB", "--json").output)
    assert ids[0] not in [e["asset_id"] for e in done["evicted"]]
    assert done["after"] <= 2000
    ok("rm", "--yes", ids[0])
    assert json.loads(ok("stats", "--json").output)["usage"]["assets"] == 1
    declined = run("rm", ids[3], input="n\n")
    assert declined.exit_code == 1
    assert json.loads(ok("stats", "--json").output)["usage"]["assets"] == 1


def test_errors_are_one_clear_line(project: Path) -> None:
    missing = run("add", "nope.png")
    assert missing.exit_code == 1
    assert "nope.png: no such file" in missing.output
    assert "Traceback" not in missing.output
    (project / "a.txt").write_text("a")
    bad_label = run("add", "a.txt", "--label", "../../x")
    assert bad_label.exit_code == 1
    assert "Error: --label: '../../x' contains a path separator" in bad_label.output
    # Errors name the option as typed, not the API's field behind it.
    for args, start in [
        (("ls", "--min-size", "3x"), "Error: --min-size: '3x' is not a size"),
        (("--tenant", "", "ls"), "Error: --tenant: must not be empty"),
        (("gc", "--quota", "5ib"), "Error: --quota: '5ib' is not a size"),
        (("add", "a.txt", "--tag", "a,b"), "Error: --tag: 'a,b' is not a valid tag"),
    ]:
        assert run(*args).output.startswith(start), args
    bad_meta = run("add", "a.txt", "--meta", "novalue")
    assert bad_meta.exit_code == 2
    unknown = run("show", "ffffffffffff")
    assert unknown.exit_code == 1
    assert "no asset with id" in unknown.output
    assert json.loads(ok("stats", "--json").output)["usage"]["assets"] == 0
    no_quota = run("gc")
    assert no_quota.exit_code == 1
    assert "quota" in no_quota.output


def test_meta_errors_name_the_option_and_the_key(project: Path) -> None:
    """--meta x=NaN was "extra: cannot be stored as JSON" (the API's field); --meta x=1 --meta x=2 kept 2."""
    (project / "a.txt").write_text("a")
    for value in ("NaN", "Infinity", "1e999", "[1, -Infinity]"):
        result = run("add", "a.txt", "--meta", "ok=1", "--meta", f"x={value}")
        assert result.exit_code == 1
        assert result.output.startswith(f"Error: --meta: 'x={value}': cannot be stored as JSON: "), (
            result.output
        )
    twice = run("add", "a.txt", "--meta", "x=1", "--meta", " x=2")
    assert twice.exit_code == 1
    assert twice.output == "Error: --meta: key 'x' is given twice\n"
    assert json.loads(ok("stats", "--json").output)["usage"]["assets"] == 0


@pytest.mark.parametrize(
    "option", ["--tag", "--any-tag", "--project", "--mime", "--model", "--agent", "--conversation", "--task"]
)
def test_empty_filter_values_are_refused(project: Path, option: str) -> None:
    """`ls --tag ''` matched nothing and `ls --mime ''` everything, while `add --tag ''` is an error."""
    (project / "a.txt").write_text("a")
    ok("add", "a.txt", "--tag", "t", "--project", "p")
    for command in (["ls"], ["search", "a"]):
        result = run(*command, option, "x", option, "")
        assert result.exit_code == 1
        assert result.output == f"Error: {option}: must not be empty\n", command


def test_empty_files_need_allow_empty(project: Path) -> None:
    (project / "empty.png").write_bytes(b"")
    refused = run("add", "empty.png")
    assert refused.exit_code == 1
    assert "empty.png: is empty (0 bytes); pass allow_empty (--allow-empty)" in refused.output
    added = json.loads(ok("add", "empty.png", "--allow-empty", "--json").output)
    assert added["assets"][0]["size"] == 0


def test_corrupt_config_is_reported(project: Path) -> None:
    (project / "assetry.toml").write_text("[store\n")
    result = run("ls")
    assert result.exit_code == 1
    assert "assetry.toml: not valid TOML" in result.output


def test_config_shows_effective_values_without_secrets(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSETRY_STORAGE__OPTIONS__SECRET", "hunter2")
    out = json.loads(ok("config", "--json").output)
    assert out["source"] == "assetry.toml"
    assert out["vectors"]["dimension"] == 4
    assert out["storage"]["options"]["secret"] == "***"
    assert "hunter2" not in ok("config").output
    as_toml = tomllib.loads(ok("config").output)  # (copied into an assetry.toml, it loads)
    assert as_toml["vectors"]["dimension"] == 4
    assert as_toml["storage"]["options"] == {"secret": "***"}
    assert "quota" not in as_toml["gc"]  # not set: a comment
    # The arguments count, plugin tables come with their defaults and are checked as a store checks them.
    out = json.loads(ok("--tenant", "alice", "config", "--json").output)
    assert out["store"]["tenant"] == "alice"
    assert out["media"]["sniff"] is True
    with (project / "assetry.toml").open("a") as f:
        f.write("\n[nonsense]\nx = 1\n")
    refused = run("config")
    assert refused.exit_code == 1
    assert "nonsense: unknown section" in refused.output


def test_plugin_commands_see_the_config_however_the_option_is_spelt(tmp_path: Path) -> None:
    for argv in (["--config", "f.toml", "ls"], ["--config=f.toml", "ls"], ["-c", "f.toml"], ["-cf.toml"]):
        assert _config_argument(argv) == "f.toml", argv
    for argv in (["ls", "-c", "other"], ["--root", "-cx", "ls"], ["--tenant", "t", "ls"]):
        assert _config_argument(argv) is None, argv  # a command's own option, an option's value
    # In a real process (the commands of the process before would still be registered here):
    blocked = tmp_path / "blocked.toml"
    blocked.write_text('[vectors]\ndimension = 4\n[plugins]\nblock = ["assetry-media"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSETRY_")}
    result = subprocess.run(
        [sys.executable, "-m", "assetry", f"--config={blocked}", "demo", "--help"],  # demo: assetry-media's
        env={**env, "ASSETRY_DAEMON": "0"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "No such command 'demo'" in result.stderr


def test_plugins_lists_builtins(project: Path) -> None:
    out = json.loads(ok("plugins", "--json").output)
    names = {p["name"]: p for p in out}
    assert {"assetry-fsspec", "assetry-lancedb", "assetry-media"} <= set(names)
    assert "assetry_ingest" in names["assetry-media"]["hooks"]
    only = ok("plugins", "--hook", "assetry_catalog_backends").output.split()
    assert only[0] == "assetry-lancedb"
    assert "assetry-fsspec" not in only
    assert "assetry_catalog_backends" not in only  # hooks are listed with --all only
    assert "    assetry_catalog_backends" in ok("plugins", "--all").output


def test_url_on_local_storage_says_it_cannot_sign(project: Path) -> None:
    (project / "a.txt").write_text("a")
    asset_id = json.loads(ok("add", "a.txt", "--json").output)["assets"][0]["id"]
    result = run("url", asset_id)
    assert result.exit_code == 1
    assert "cannot sign" in result.output


# The minimum (where the used and pinned images hold every blob), one more, and the default.
@pytest.mark.parametrize("count", [6, 7, 24])
def test_demo_gc_keeps_the_used_and_pinned_assets_and_its_hint_names_one_that_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    out = ok("demo", "--count", str(count)).output
    kept = re.search(r"Recently used and pinned assets kept: (\d+)/(\d+)", out)
    assert kept is not None
    assert kept[1] == kept[2], out
    monkeypatch.chdir(tmp_path / "assetry-demo")
    read = re.findall(r"^([0-9a-f]{12}) .* read \d+x", out, flags=re.MULTILINE)
    pinned = re.findall(r"^Pinned ([0-9a-f]{12})", out, flags=re.MULTILINE)
    hint = re.findall(r"assetry show ([0-9a-f]+)", out)
    assert len(read) == 2
    assert len(pinned) == len(hint) == 1
    for asset_id in [*read, *pinned, *hint]:
        ok("show", asset_id)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_output_that_cannot_be_written_is_one_error_line(project: Path) -> None:
    """A full disk behind standard output gave a traceback; a closed pipe (`| head -0`) stays quiet."""
    (project / "a.txt").write_text("a" * 100)
    asset_id = json.loads(ok("add", "a.txt", "--json").output)["assets"][0]["id"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSETRY_")} | {"ASSETRY_DAEMON": "0"}
    command = [sys.executable, "-m", "assetry"]
    for args in (["ls", "--json"], ["stats"], ["cat", asset_id]):
        with open("/dev/full", "w") as full:
            result = subprocess.run(
                [*command, *args], stdout=full, stderr=subprocess.PIPE, text=True, env=env, check=False
            )
        assert result.returncode == 1, args
        assert result.stderr == "Error: standard output: No space left on device\n", args
    closed = subprocess.Popen([*command, "ls"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert closed.stdout is not None
    assert closed.stderr is not None
    closed.stdout.close()
    assert closed.stderr.read() == b""
    assert closed.wait() == 1


def test_main_entry_point_in_a_subprocess(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSETRY_")}
    (tmp_path / "a.txt").write_text("a")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "assetry", "--root", "s", *args]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)

    missing = run("stats", "--json")
    assert missing.returncode == 1
    assert f"no store at {tmp_path / 's'}" in missing.stderr
    assert not (tmp_path / "s").exists()  # a read-only command creates nothing
    assert run("add", "a.txt").returncode == 0
    result = run("stats", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["usage"]["assets"] == 1
    assert callable(main)


def test_demo_in_a_directory_it_cannot_make_is_one_error_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("a file where the demo's parent directory would go")
    result = run("demo", "--dir", "file/demo", "--count", "6")
    assert result.exit_code == 1
    assert result.output.startswith("Error: ")
    assert "Not a directory" in result.output
    assert "Traceback" not in result.output


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "assetry", "demo", "--count", "12"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    out = result.stdout
    assert "Ingest" in out
    assert "deduplicated" in out
    assert "Evicted" in out
    # The store is left behind for the user to explore.
    explore = subprocess.run(
        [sys.executable, "-m", "assetry", "ls", "--json"],
        cwd=tmp_path / "assetry-demo",
        capture_output=True,
        text=True,
        check=False,
    )
    assert explore.returncode == 0, explore.stderr
    items = json.loads(explore.stdout)["items"]
    assert items
    assert all(a["provenance"]["prompt"] for a in items)  # extracted from the PNG files
    # Running it again starts afresh instead of failing.
    again = subprocess.run(
        [sys.executable, "-m", "assetry", "demo", "--count", "6"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 0, again.stderr
