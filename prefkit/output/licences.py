"""Licences of a published set: the most restrictive licence among its sources (Hub licence ids), and the Hub's
size categories."""

from __future__ import annotations

#: licence families from least to most restrictive (Hub licence ids); an id not listed ranks as "other"
LICENSE_FAMILIES: list[tuple[str, str]] = [
    ("public domain", "cc0-1.0 pddl unlicense wtfpl"),
    (
        "permissive",
        "mit apache-2.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear isc zlib bsl-1.0 postgresql afl-3.0 "
        "ecl-2.0 ncsa ms-pl cc cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 odc-by cdla-permissive-1.0 "
        "cdla-permissive-2.0 etalab-2.0",
    ),
    (
        "share-alike",
        "cc-by-sa-3.0 cc-by-sa-4.0 odbl cdla-sharing-1.0 gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 lgpl-lr "
        "agpl-3.0 mpl-2.0 epl-1.0 epl-2.0 eupl-1.1 eupl-1.2 gfdl osl-3.0 ofl-1.1 artistic-2.0 lppl-1.3c",
    ),
    (
        "use restrictions",
        "openrail openrail++ bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0 "
        "bigcode-openrail-m llama2 llama3 llama3.1 llama3.2 llama3.3 llama4 gemma apple-ascl apple-amlr "
        "deepfloyd-if-license",
    ),
    (
        "non-commercial",
        "cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 "
        "fair-noncommercial-research-license intel-research h-research c-uda",
    ),
    ("no derivatives", "cc-by-nd-4.0 cc-by-nc-nd-3.0 cc-by-nc-nd-4.0"),
    ("other or unknown", "other unknown"),
]
_LICENSE_RANK = {lic: rank for rank, (_, ids) in enumerate(LICENSE_FAMILIES) for lic in ids.split()}


def license_rank(license: str | None) -> int:
    """How restrictive a Hub licence id is (higher = more); unknown ids and None rank highest."""
    return _LICENSE_RANK.get((license or "unknown").lower(), len(LICENSE_FAMILIES) - 1)


def license_family(license: str | None) -> str:
    return LICENSE_FAMILIES[license_rank(license)][0]


def most_restrictive(licenses: list[str | None]) -> str:
    """The most restrictive of several licence ids ("unknown" when any is unknown or there are none)."""
    known = [lic or "unknown" for lic in licenses] or ["unknown"]
    return max(known, key=license_rank)  # max keeps the first of equal rank


def size_category(n: int) -> str:
    for limit, label in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
        (100_000_000, "10M<n<100M"),
    ):
        if n < limit:
            return label
    return "100M<n<1B"
