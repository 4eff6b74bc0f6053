"""The build machine's YAML input: the shipped example loads, every bad document is named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from certfleet.api.spec import GenerationMethod
from certfleet.buildmachine.documents import MAX_FILE_BYTES, DocumentError, load_documents

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "build-machine" / "certificates.yaml"
CLOUDHOST = {
    "apiVersion": "certfleet.io/v1alpha1",
    "kind": "CloudHost",
    "metadata": {"name": "prod"},
    "spec": {
        "bucket": "certfleet-unit",
        "credentialsSecretRef": {"namespace": "ops", "name": "creds"},
        "encryptionKeySecretRef": {"namespace": "ops", "name": "key"},
    },
}
CERTIFICATE = {
    "apiVersion": "certfleet.io/v1alpha1",
    "kind": "ManagedCertificate",
    "metadata": {"name": "www"},
    "spec": {
        "domain": "www.example.com",
        "cloudhost": "prod",
        "buildIdentifier": "build-1",
        "generationMethod": "AUTOMATIC",
    },
}


def written(tmp_path: Path, *documents: object) -> Path:
    path = tmp_path / "certificates.yaml"
    path.write_text(yaml.safe_dump_all(documents))
    return path


def test_the_example_loads() -> None:
    documents = load_documents([EXAMPLE])
    assert [c.key for c in documents.certificates] == ["default/www", "default/auth"]
    assert documents.certificates[1].spec.method is GenerationMethod.MANUAL
    assert documents.cloudhosts["prod"].bucket == "my-certfleet-bucket"


def test_documents_may_come_in_several_files(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    hosts = written(tmp_path / "a", CLOUDHOST)
    certificates = written(tmp_path, CERTIFICATE)
    assert len(load_documents([hosts, certificates]).certificates) == 1


def bad(spec_domain: str) -> dict[str, object]:
    return {**CERTIFICATE, "spec": {**CERTIFICATE["spec"], "domain": spec_domain}}  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("documents", "message"),
    [
        ((CLOUDHOST, bad("bad domain")), "document 2 (ManagedCertificate www): spec.domain"),
        ((CLOUDHOST, {**CERTIFICATE, "kind": "Secret"}), "kind must be ManagedCertificate"),
        ((CLOUDHOST, {**CERTIFICATE, "apiVersion": "v1"}), "apiVersion must be certfleet.io"),
        ((CLOUDHOST, {**CERTIFICATE, "metadata": {}}), "document 2: metadata.name"),
        ((CLOUDHOST, CERTIFICATE, CERTIFICATE), "default/www is given twice"),
        ((CLOUDHOST, CLOUDHOST, CERTIFICATE), "CloudHost prod is given twice"),
        ((CERTIFICATE,), "CloudHost 'prod' is in none of the files"),
        ((CLOUDHOST,), "no ManagedCertificate"),
        ((CLOUDHOST, ["a", "list"]), "document 2 is not a mapping"),
        (({**CLOUDHOST, "spec": {}}, CERTIFICATE), "CloudHost prod: spec.bucket is required"),
    ],
)
def test_a_bad_document_is_named(
    tmp_path: Path, documents: tuple[object, ...], message: str
) -> None:
    path = written(tmp_path, *documents)
    with pytest.raises(DocumentError) as raised:
        load_documents([path])
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_file_that_is_not_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("kind: CloudHost\nspec: [unclosed\n")
    with pytest.raises(DocumentError, match=r"broken.yaml: not valid YAML at line \d"):
        load_documents([path])


def test_files_are_bounded_and_must_exist(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    with pytest.raises(DocumentError, match="larger than"):
        load_documents([big])
    with pytest.raises(DocumentError, match=r"absent\.yaml: cannot be read"):
        load_documents([tmp_path / "absent.yaml"])
