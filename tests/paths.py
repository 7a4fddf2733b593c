"""Where the tests find the repository and the shared data (../shared beside the checkout, read
in place, never copied)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REAL = SHARED / "data" / "vcf" / "real"  # real VCF/BCF/gVCF files (1000 Genomes, GIAB) and indexes
SUITE = SHARED / "conformance" / "hts-specs-vcf"  # the VCF specification's own test suite
