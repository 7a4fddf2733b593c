"""What a flow run may read (``vcfstream.vcf.confinement``): the inbox and the configured roots,
resolved once, no URL unless its scheme is allowed, manifests and folders checked before they are
read, errors that name a file, line and rule but never what a file holds; the CLI owner's
exemption only inside ``owner_run``."""

from __future__ import annotations

import contextvars
import os
import shutil
import stat
import threading
from pathlib import Path

import pysam
import pytest
from paths import REAL

from vcfstream.cohort import MAX_REFUSED_LINES, cohort_files
from vcfstream.errors import ConfigurationError
from vcfstream.settings import load_settings
from vcfstream.vcf.confinement import (
    UNCONFINED,
    ConfinementError,
    InputPolicy,
    input_policy,
    owner_run,
    url_scheme,
)
from vcfstream.vcf.normalize import Normalizer
from vcfstream.vcf.source import open_source

SECRET = "pg_password=Zq8-not-a-path-9xK"  # what a secret file used as a manifest holds


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """An input root holding a real VCF, and a folder beside it that is no root."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    shutil.copy(REAL / "sample.vcf.gz", root / "sample.vcf.gz")
    shutil.copy(REAL / "sample.vcf.gz", outside / "sample.vcf.gz")
    return root, outside


def refusal(call: object, *args: object) -> ConfinementError:
    with pytest.raises(ConfinementError) as caught:
        call(*args)  # type: ignore[operator]
    return caught.value


def write_fasta(path: Path) -> Path:
    path.write_text(">chr1\nACGTACGTAC\n")
    return path


# -- files ------------------------------------------------------------------------------------


def test_a_file_inside_a_root_is_accepted_as_its_resolved_path(folders: tuple[Path, Path]) -> None:
    root, _ = folders
    policy = InputPolicy(roots=(root,))

    assert policy.check_file(str(root / "sub" / ".." / "sample.vcf.gz")) == root / "sample.vcf.gz"
    assert open_source(str(root / "sample.vcf.gz"), policy).path == str(root / "sample.vcf.gz")


def test_a_file_outside_the_roots_is_refused_naming_the_rule_and_the_roots(folders: tuple[Path, Path]) -> None:
    root, outside = folders
    error = refusal(open_source, str(outside / "sample.vcf.gz"), InputPolicy(roots=(root,)))

    assert error.rule == "input.outside_roots"
    assert str(error) == (f"{outside / 'sample.vcf.gz'}: [input.outside_roots] outside the input roots ({root}); "
                          f"see VCFSTREAM_INPUT_ROOTS")


def test_a_link_inside_a_root_is_followed_before_it_is_checked(folders: tuple[Path, Path]) -> None:
    root, outside = folders
    (root / "link.vcf.gz").symlink_to(outside / "sample.vcf.gz")
    (root / "linked_folder").symlink_to(outside)
    policy = InputPolicy(roots=(root,))

    assert refusal(policy.check_file, str(root / "link.vcf.gz")).rule == "input.outside_roots"
    assert refusal(policy.check_file, str(root / "linked_folder" / "sample.vcf.gz")).rule == "input.outside_roots"
    assert refusal(policy.check_file, str(root / ".." / "outside" / "sample.vcf.gz")).rule == "input.outside_roots"


def test_an_index_beside_the_file_that_links_outside_the_roots_refuses_the_file(folders: tuple[Path, Path]) -> None:
    root, outside = folders
    shutil.copy(REAL / "sample.vcf.gz.tbi", outside / "sample.vcf.gz.tbi")
    policy = InputPolicy(roots=(root,))
    assert open_source(str(root / "sample.vcf.gz"), policy).index is None  # no index: read sequentially

    (root / "sample.vcf.gz.tbi").symlink_to(outside / "sample.vcf.gz.tbi")
    error = refusal(open_source, str(root / "sample.vcf.gz"), policy)
    assert error.rule == "input.outside_roots" and "its index (sample.vcf.gz.tbi) is a link" in str(error)
    assert open_source(str(root / "sample.vcf.gz")).index == str(root / "sample.vcf.gz.tbi")  # unconfined


def test_missing_folders_pipes_and_devices_are_refused_without_blocking(folders: tuple[Path, Path]) -> None:
    root, _ = folders
    os.mkfifo(root / "pipe.vcf")
    policy = InputPolicy(roots=(root, Path("/dev")))

    assert refusal(policy.check_file, str(root / "missing.vcf")).rule == "input.missing"
    assert refusal(policy.check_file, str(root)).rule == "input.directory"
    assert refusal(policy.check_file, str(root / "pipe.vcf")).rule == "input.not_a_file"
    assert refusal(policy.check_file, "/dev/zero").rule == "input.not_a_file"


@pytest.mark.parametrize("url", ["https://example.org/a.vcf.gz", "http://127.0.0.1:9/a.vcf", "ftp://host/a.vcf",
                                 "s3://bucket/a.vcf.gz", "gs://bucket/a.vcf.gz", "data:,##fileformat=VCFv4.2",
                                 "S3+HTTPS://bucket/a.vcf", "file:///etc/passwd", "preload:a.vcf"])
def test_a_url_is_refused_as_a_vcf_path_even_where_its_scheme_is_allowed(url: str) -> None:
    scheme = url_scheme(url)
    assert scheme is not None
    assert refusal(InputPolicy(roots=()).check_file, url).rule == "input.url"
    error = refusal(InputPolicy(roots=(), url_schemes=frozenset({scheme})).check_file, url)
    assert error.rule == "input.url" and "only the reference FASTA may be a URL" in str(error)
    assert refusal(UNCONFINED.check_file, url).rule == "input.url"  # the owner too: local files only


def test_a_refused_url_does_not_show_its_password() -> None:
    error = refusal(InputPolicy(roots=()).check_file, "https://reader:hunter2-pw@example.org/a.vcf")

    assert "hunter2-pw" not in str(error) and "example.org/a.vcf" in str(error)


def test_paths_that_only_look_a_bit_like_urls_are_paths() -> None:
    assert [url_scheme(p) for p in ("/data/a:b.vcf", "./x:y.vcf", "C:/a.vcf", "a.vcf")] == [None] * 4


# -- roots from the settings --------------------------------------------------------------------


def test_without_configured_roots_only_the_inbox_is_readable_not_anything(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VCFSTREAM_INPUT_ROOTS", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    policy = input_policy(load_settings(home=home))

    inbox = home / "incoming"
    assert policy.roots == (inbox,) and stat.S_IMODE(inbox.stat().st_mode) == 0o700
    shutil.copy(REAL / "sample.vcf.gz", inbox / "sample.vcf.gz")
    assert policy.check_file(str(inbox / "sample.vcf.gz")) == inbox / "sample.vcf.gz"
    assert refusal(policy.check_file, str(REAL / "sample.vcf.gz")).rule == "input.outside_roots"
    assert refusal(policy.check_file, str(home / "credentials.json")).rule == "input.outside_roots"


def test_configured_roots_add_to_the_inbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VCFSTREAM_INPUT_ROOTS", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    monkeypatch.setenv("VCFSTREAM_INPUT_URL_SCHEMES", "https, S3")
    policy = input_policy(load_settings(home=tmp_path / "home"))

    assert policy.roots == (tmp_path / "home" / "incoming", tmp_path / "a", tmp_path / "b")
    assert policy.url_schemes == {"https", "s3"}


def test_a_relative_root_is_a_configuration_error_naming_the_setting(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VCFSTREAM_INPUT_ROOTS", "incoming")
    with pytest.raises(ConfigurationError, match="VCFSTREAM_INPUT_ROOTS: 'incoming' is a relative folder"):
        input_policy(load_settings(home=tmp_path))


# -- the owner's exemption ----------------------------------------------------------------------


def test_only_owner_run_reads_outside_the_roots_and_its_task_threads_inherit_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VCFSTREAM_INPUT_ROOTS", raising=False)
    settings = load_settings(home=tmp_path)  # the inbox only
    outside = str(REAL / "sample.vcf.gz")
    assert refusal(input_policy(settings).check_file, outside).rule == "input.outside_roots"
    seen: list[bool] = []
    with owner_run():
        policy = input_policy(settings)
        assert policy.owner and policy.check_file(outside) == Path(outside).resolve()
        context = contextvars.copy_context()  # as Prefect's thread pool submits a task
        thread = threading.Thread(target=context.run, args=(lambda: seen.append(input_policy(settings).owner),))
        thread.start()
        thread.join()
    plain = threading.Thread(target=lambda: seen.append(input_policy(settings).owner))  # a worker's thread
    plain.start()
    plain.join()

    assert seen == [True, False]
    assert not input_policy(settings).owner


def test_no_setting_or_environment_variable_turns_the_exemption_on(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VCFSTREAM_OWNER", "VCFSTREAM_INGEST_OWNER", "VCFSTREAM_OWNER_RUN"):
        monkeypatch.setenv(name, "true")
    settings = load_settings(home=tmp_path)

    assert not input_policy(settings).owner
    assert not any("owner" in name for name in type(settings.ingest).model_fields)


# -- the reference FASTA ------------------------------------------------------------------------


def test_a_reference_without_its_index_is_refused_and_none_is_written_beside_it(folders: tuple[Path, Path]) -> None:
    root, _ = folders
    fasta = write_fasta(root / "ref.fa")
    policy = InputPolicy(roots=(root,))

    error = refusal(policy.check_reference, str(fasta))
    assert error.rule == "reference.index" and "samtools faidx" in str(error)
    assert refusal(Normalizer, "GRCh38", str(fasta)).rule == "reference.index"  # the CLI's validate, readers
    assert sorted(p.name for p in root.iterdir()) == ["ref.fa", "sample.vcf.gz"]

    pysam.faidx(str(fasta))
    assert policy.check_reference(str(fasta)) == str(fasta)
    assert Normalizer("GRCh38", str(fasta)).check_ref("chr1", 2, "C") is None


def test_a_compressed_reference_needs_its_gzi_too(folders: tuple[Path, Path]) -> None:
    root, _ = folders
    fasta = write_fasta(root / "ref.fa")
    pysam.tabix_compress(str(fasta), str(root / "ref.fa.gz"))
    pysam.faidx(str(root / "ref.fa.gz"))
    (root / "ref.fa.gz.gzi").unlink()

    assert refusal(InputPolicy(roots=(root,)).check_reference, str(root / "ref.fa.gz")).rule == "reference.index"


def test_a_reference_outside_the_roots_or_with_its_index_outside_is_refused(folders: tuple[Path, Path]) -> None:
    root, outside = folders
    pysam.faidx(str(write_fasta(outside / "ref.fa")))
    write_fasta(root / "ref.fa")
    (root / "ref.fa.fai").symlink_to(outside / "ref.fa.fai")
    policy = InputPolicy(roots=(root,))

    assert refusal(policy.check_reference, str(outside / "ref.fa")).rule == "input.outside_roots"
    assert refusal(policy.check_reference, str(root / "ref.fa")).rule == "input.outside_roots"


def test_a_reference_url_needs_its_scheme_allowed() -> None:
    url = "https://example.org/GRCh38.fa.gz"

    assert refusal(InputPolicy(roots=()).check_reference, url).rule == "input.url"
    assert refusal(InputPolicy(roots=(), url_schemes=frozenset({"s3"})).check_reference, url).rule == "input.url"
    assert InputPolicy(roots=(), url_schemes=frozenset({"https"})).check_reference(url) == url


# -- a cohort's manifest and folder -------------------------------------------------------------


def test_a_manifest_outside_the_roots_is_not_read(folders: tuple[Path, Path]) -> None:
    root, outside = folders
    (outside / "cohort.txt").write_text(f"{root / 'sample.vcf.gz'}\n")

    error = refusal(cohort_files, str(outside / "cohort.txt"), None, "*", InputPolicy(roots=(root,)))
    assert error.rule == "input.outside_roots" and "the manifest is outside the input roots" in str(error)


def test_a_manifest_lists_files_inside_the_roots_relative_to_itself(folders: tuple[Path, Path]) -> None:
    root, _ = folders
    (root / "batch").mkdir()
    shutil.copy(REAL / "chr22.vcf.gz", root / "batch" / "chr22.vcf.gz")
    (root / "cohort.txt").write_text("# cohort\n\nsample.vcf.gz\nbatch/chr22.vcf.gz  # second\nsample.vcf.gz\n")

    cohort = cohort_files(str(root / "cohort.txt"), None, "*", InputPolicy(roots=(root,)))
    assert cohort.files == [str(root / "sample.vcf.gz"), str(root / "batch" / "chr22.vcf.gz")]
    assert cohort.refused == []


def test_a_secret_used_as_a_manifest_is_refused_by_line_number_and_rule_never_by_its_text(
        folders: tuple[Path, Path]) -> None:
    root, outside = folders
    secret = root / "credentials.env"
    secret.write_bytes(f"# service logins\n{SECRET}\n{outside / 'sample.vcf.gz'}\nhttps://{SECRET}@host/x\n"
                       f"sample.vcf.gz\n{SECRET}\x07bell\n".encode() + b"\xff\xfe" + SECRET.encode() + b"\n")

    cohort = cohort_files(str(secret), None, "*", InputPolicy(roots=(root,)))

    assert cohort.files == [str(root / "sample.vcf.gz")]  # line 5, a real file inside the roots
    assert [(r.where, r.reason) for r in cohort.refused] == [
        (f"{secret}:2", "[input.missing] no such file"),
        (f"{secret}:3", "[input.outside_roots] outside the input roots"),
        (f"{secret}:4", "[input.url] a URL: manifests list local files"),
        (f"{secret}:6", "[manifest.control] holds control characters"),
        (f"{secret}:7", "[manifest.encoding] not UTF-8 text"),
    ]
    shown = repr(cohort.refused)
    assert "pg_password" not in shown and "Zq8" not in shown and str(outside) not in shown


def test_a_file_that_is_no_manifest_at_all_is_refused_whole_without_its_content(folders: tuple[Path, Path]) -> None:
    root, _ = folders
    (root / "key.pem").write_text("".join(f"{SECRET}-{n}\n" for n in range(MAX_REFUSED_LINES + 5)))

    error = refusal(cohort_files, str(root / "key.pem"), None, "*", InputPolicy(roots=(root,)))

    assert error.rule == "manifest.refused" and "line 1 [input.missing]" in str(error)
    assert "pg_password" not in str(error) and "Zq8" not in str(error)


def test_a_folder_outside_the_roots_is_never_listed(folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
                                                    ) -> None:
    root, outside = folders
    listed: list[Path] = []
    real_glob = Path.glob
    monkeypatch.setattr(Path, "glob", lambda self, pattern: listed.append(self) or real_glob(self, pattern))

    error = refusal(cohort_files, None, str(outside), "*", InputPolicy(roots=(root,)))

    assert error.rule == "input.outside_roots" and "the directory is outside the input roots" in str(error)
    assert refusal(cohort_files, None, "/etc", "*", InputPolicy(roots=(root,))).rule == "input.outside_roots"
    assert listed == []


def test_a_pattern_cannot_leave_the_folder_nor_list_a_linked_folder_elsewhere(folders: tuple[Path, Path]) -> None:
    root, outside = folders
    (outside / "private-name.vcf.gz").write_bytes(b"x")
    (root / "elsewhere").symlink_to(outside)
    policy = InputPolicy(roots=(root,))

    assert refusal(cohort_files, None, str(root), "../outside/*", policy).rule == "cohort.glob"
    assert refusal(cohort_files, None, str(root), f"{outside}/*", policy).rule == "cohort.glob"
    cohort = cohort_files(None, str(root), "*.vcf.gz,elsewhere/*.vcf.gz", policy)
    assert cohort.files == [str(root / "sample.vcf.gz")]
    assert [r.reason for r in cohort.refused] == [
        "[input.outside_roots] 2 match(es) in folders outside the input roots (a link?) left out"]
    assert "private-name" not in repr(cohort)


def test_a_manifest_swapped_for_a_pipe_after_its_check_is_refused_not_waited_on(folders: tuple[Path, Path],
                                                                                 monkeypatch: pytest.MonkeyPatch
                                                                                 ) -> None:
    root, _ = folders
    manifest = root / "cohort.txt"
    manifest.write_text("sample.vcf.gz\n")
    policy = InputPolicy(roots=(root,))
    check_file = InputPolicy.check_file

    def swap_after_check(self: InputPolicy, path: str, what: str = "input") -> Path:
        resolved = check_file(self, path, what)
        if what == "manifest":
            manifest.unlink()
            os.mkfifo(manifest)
        return resolved

    monkeypatch.setattr(InputPolicy, "check_file", swap_after_check)
    assert refusal(cohort_files, str(manifest), None, "*", policy).rule == "input.changed"
